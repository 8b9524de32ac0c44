// What every property body needs: the run's context, the exact side of a call (reference and
// error model), kernel calls that fail or discard the case, and the comparisons whose tolerance
// is a sum of error bounds. Shared by the batch-norm properties (properties.cpp) and those of
// the rest of the family (family_properties.cpp); internal to the library.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/generators.hpp"
#include "bnoracle/invoke.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/options.hpp"
#include "bnoracle/properties.hpp"
#include "bnoracle/reference.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace bnoracle::property_support {

[[noreturn]] void fail(const std::string& why);
[[noreturn]] void discard(const std::string& why);

constexpr double k_u53 = 0x1p-53;  // unit roundoff of double

// What the properties need of the run.
struct context {
  bn_kernel& kernel;
  const kernel_info& info;
  const property_options& opt;
  std::string convention;
  call_options call;              // isolation and timeout of every kernel call
  mutable std::string last_case;  // the case being evaluated, shown (for failure reports)
  mutable bool faulted = false;   // the evaluation failed because the kernel faulted

  // Batch-norm cases in the layouts the kernel takes.
  [[nodiscard]] gen::case_options cases() const;
  // Cases of the other ops the kernel declares (layer, RMS, group, instance norm).
  [[nodiscard]] gen::case_options family_cases() const;
  // Discards the case unless the kernel provides mode m.
  void require(bn_mode m) const;
  // Discards the case unless the kernel provides mode m and the case's op has it.
  void require(bn_mode m, const op_desc& op) const;
};

[[nodiscard]] bool is_training(bn_mode m);
[[nodiscard]] bool is_backward(bn_mode m);

// The exact side of one call: the reference and the error model on the case's logical data.
// The reference keeps pointers into the copies held here, so this object never moves.
class exact_side {
 public:
  exact_side(const property_case& pc, bn_mode mode, bool track);
  exact_side(const exact_side&) = delete;
  exact_side& operator=(const exact_side&) = delete;

  [[nodiscard]] const reference& ref() const { return *ref_; }
  [[nodiscard]] const error_model& model() const { return *model_; }
  [[nodiscard]] double bound(output_id id, std::int64_t i, accuracy_level l) const {
    return model_->bound(id, i, l);
  }
  // Exact statistics of statistic group g (a channel in batch norm) in double (NaN where
  // undefined): the mean (0 for RMS norm) and the variance (RMS norm: the mean square).
  [[nodiscard]] double mean(std::int64_t g) const { return ref_->normalizing_mean(g).to_double(); }
  [[nodiscard]] double var(std::int64_t g) const { return ref_->normalizing_var(g).to_double(); }

 private:
  property_case pc_;
  bn_problem problem_;
  std::unique_ptr<reference> ref_;
  std::unique_ptr<error_model> model_;
};

// Calls the kernel; a fault or a failure fails the case, an unsupported problem discards it.
// With `refusal` non-empty (the convention rejects the problem) a refusal discards it too.
call_result judged(const context& c, const call_request& q, call_result r,
                   const std::string& refusal = {});
call_result call(const context& c, const call_request& q, const std::string& refusal = {});

// Forward training (for the saved statistics) then backward training, as a framework does.
struct fwd_bwd {
  call_result fwd, bwd;
};
// The backward-training call that follows forward-training result `fwd`.
call_result backward_after(const context& c, const property_case& pc, const call_result& fwd);
fwd_bwd forward_backward(const context& c, const property_case& pc);
// forward_backward for one of several views of a problem: a view the kernel answers UNSUPPORTED
// for (oneDNN cannot express a negative stride) is left out (nullopt) instead of discarding the
// whole generated case, so that the views the kernel does take are still compared.
std::optional<fwd_bwd> forward_backward_if_supported(const context& c, const property_case& pc);

[[nodiscard]] std::string level_name(const context& c);

// Two kernel outputs whose exact values are equal may differ by the sum of their bounds.
void expect_close(const context& c, const std::string& what, float a, float b, double tol);
// expect_close for every γ entry of diff_gamma of two backward runs with equal exact values
// (labels "diff_gamma[<entry>]" + suffix), each within the sum of its two bounds.
void expect_diff_gamma_close(const context& c, const reduction_map& map, const std::string& suffix,
                             const call_result& a, const call_result& b, const exact_side& ea,
                             const exact_side& eb);
// "dst[n=1,c=2,s=3]" for messages.
[[nodiscard]] std::string where(const geometry& g, const char* name, std::int64_t i);
// A relation r that is exactly 0 in real arithmetic, missed by at most `tol`.
void expect_zero(const std::string& what, double value, double tol, const std::string& level);
// Judges one output against the exact reference; fails the case with the worst element.
void judge(const context& c, const exact_side& e, const std::string& label,
           const std::string& shown, output_id id, const std::vector<float>& got);
// Fails the case with output o's class failure or its worst element, after `label`.
[[noreturn]] void fail_output(const context& c, const std::string& label, const output_result& o);
// Draws a case and remembers it for the failure report.
property_case generate(const context& c, const gen::case_options& o);

// Every output of two identical calls, bit for bit.
void expect_same_call(bn_mode m, const call_result& a, const call_result& b);

// The largest power of two dividing every value of elements `logical` of x, and max |x| in
// units of it (1 and 0 when they are all zero).
[[nodiscard]] std::pair<double, double> grid_of(const std::vector<float>& x,
                                                const std::vector<std::int64_t>& logical);

// The ops other than batch norm that the kernel declares, in a fixed order.
[[nodiscard]] std::vector<op_kind> family_ops_of(const kernel_info& info);

struct property_entry {
  property_info info;
  void (*body)(const context&);
};

// The properties of layer, RMS, group and instance norm (family_properties.cpp), in the order
// `check` runs them, after batch norm's.
[[nodiscard]] std::span<const property_entry> family_property_entries();
// The properties of the fold and the SyncBN merge (operation_properties.cpp), run after batch
// norm's modes and before the family's.
[[nodiscard]] std::span<const property_entry> operation_property_entries();

// Bodies shared by batch norm and the family, generated from the given options.
void prop_reproducibility(const context& c, const gen::case_options& o);
void prop_scale_invariance(const context& c, const gen::case_options& o);
void prop_layout_agreement(const context& c, const gen::case_options& o);

}  // namespace bnoracle::property_support
