// The exact batch-norm reference.
//
// Statistics are exact (exact sums of float32 values, squares and products), every output is the
// exact real value rounded once to float32 (nearest, ties to even), and the exact value itself is
// available to 250+ bits on demand. Memory beyond inputs and outputs is O(C): per channel a few
// exact sums and a symbolic square-root scale; nothing of arbitrary precision is kept per element.
//
// Semantics (docs/reference.md states them in full):
// - normalization uses the biased batch variance; ε is inside the square root;
// - a NaN or Inf in a channel's src (or diff_dst in backward) makes that channel's batch-coupled
//   outputs `undefined`; other channels are untouched. Element-wise formulas (inference) follow
//   IEEE extended-real rules instead: +Inf in, ±Inf or NaN out for that element only;
// - an exact zero result is +0; the error measurement treats ±0 alike for computed values;
// - ε = 0 with a zero-variance channel: y and dx are `undefined` (0/0), invstd is +Inf;
// - L = 1 and L = 0 follow the convention record (convention.hpp);
// - ε < 0 and a negative running variance are rejected with `invalid_problem`.
#pragma once

#include "bnoracle/convention.hpp"
#include "bnoracle/exact.hpp"
#include "bnoracle/output.hpp"
#include "bnoracle/problem.hpp"
#include "bnoracle/reduction.hpp"
#include "bnoracle/scale.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

// Inputs of every mode; each mode reads only what it needs. Tensors `src` and `diff_dst` are
// read through the problem's strides from logical element 0. Per-channel vectors have C entries.
struct bn_inputs {
  const float* src = nullptr;
  const float* diff_dst = nullptr;      // backward modes
  std::span<const float> gamma;         // empty: not affine (γ = 1)
  std::span<const float> beta;          // empty: not affine (β = 0)
  std::span<const float> running_mean;  // inference: required; training: empty = not tracked
  std::span<const float> running_var;
  std::int64_t num_batches_tracked = 0;  // before this step (cumulative momentum)
};

// The exact value of one output element, kept symbolically. Cheap to copy.
class exact_value {
 public:
  enum class kind : std::uint8_t { rational_value, affine, sum, infinite, undefined, unspecified };

  static exact_value of(rational q);
  static exact_value of(const dyadic& d);
  // a + c·h
  static exact_value affine(dyadic a, dyadic c, std::shared_ptr<const sqrt_scale> h);
  // a + Σ c_k·h_k (scale.hpp's round_sum): one affine value when there is a single term.
  static exact_value sum(dyadic a, std::vector<scaled_term> terms);
  static exact_value infinite(int sign);
  static exact_value undefined();
  static exact_value unspecified();

  [[nodiscard]] kind what() const { return kind_; }
  // Correctly rounded to format `f`: float32 by default, float16 or bfloat16 carried in a float.
  [[nodiscard]] golden round(const float_format& f = k_float32) const;
  // NaN for undefined and unspecified, ±Inf for infinite.
  [[nodiscard]] hp_float hp() const;
  [[nodiscard]] std::string decimal(int digits = 45) const;
  // The nearest double; NaN for undefined and unspecified, ±Inf for infinite.
  [[nodiscard]] double to_double() const;

 private:
  kind kind_ = kind::undefined;
  rational q_;
  dyadic a_;
  dyadic c_;
  std::shared_ptr<const sqrt_scale> h_;
  std::shared_ptr<const std::vector<scaled_term>> terms_;
  int sign_ = 0;
};

// Names of outputs, per mode:
//   forward_training:   dst, mean, var, invstd, running_mean, running_var (the last two when
//                       running statistics are given)
//   forward_inference:  dst
//   backward_training:  diff_src, diff_gamma, diff_beta
//   backward_inference: diff_src, diff_gamma, diff_beta
// Per-element outputs (dst, diff_src) are indexed in canonical logical order (n, c, spatial...);
// per-channel outputs by channel.
class reference {
 public:
  // Runs the exact statistics pass (O(L·C) time, O(C) memory). Throws invalid_problem.
  // The reference keeps the pointers of `inputs` and reads elements again when asked for a
  // per-element output: the input buffers must outlive it and must not change.
  reference(const bn_problem& problem, bn_mode mode, const bn_inputs& inputs);
  ~reference();
  reference(reference&&) noexcept;
  reference& operator=(reference&&) noexcept;
  reference(const reference&) = delete;
  reference& operator=(const reference&) = delete;

  [[nodiscard]] const bn_problem& problem() const;
  [[nodiscard]] const geometry& geom() const;
  // Which elements share a statistic: statistic groups, L, and where each element lives.
  [[nodiscard]] const reduction_map& map() const;
  [[nodiscard]] bn_mode mode() const;
  [[nodiscard]] const convention& conv() const;

  // Non-empty when the convention requires a conforming kernel to refuse this problem (e.g.
  // training with one value per channel under PyTorch). Outputs are then not defined.
  [[nodiscard]] const std::string& refusal() const;
  // num_batches_tracked after this step (training with running statistics; else unchanged).
  [[nodiscard]] std::int64_t num_batches_tracked() const;

  // The outputs this mode produces for this problem, in output_id order.
  [[nodiscard]] std::vector<output_id> outputs() const;
  [[nodiscard]] bool has_output(output_id id) const;
  [[nodiscard]] std::vector<std::string_view> output_names() const;
  // The accessors throw std::out_of_range for an output the mode does not produce; the names are
  // those of the output table (output.hpp).
  [[nodiscard]] std::int64_t output_size(output_id id) const;
  [[nodiscard]] std::int64_t output_size(std::string_view name) const;

  [[nodiscard]] exact_value exact(output_id id, std::int64_t index) const;
  [[nodiscard]] exact_value exact(std::string_view name, std::int64_t index) const;
  [[nodiscard]] golden round(output_id id, std::int64_t index) const;
  [[nodiscard]] golden round(std::string_view name, std::int64_t index) const;
  // The format output `id` is rounded to: its role's data type (problem().types).
  [[nodiscard]] const float_format& format_of_output(output_id id) const;
  // Every element rounded, in index order. Per-element outputs are evaluated by the certified
  // fast path where its error bound decides the rounding and by the exact path elsewhere
  // (fast_path.hpp); both give the same golden (value, class and ulp bit for bit; the residual to
  // its stated accuracy).
  [[nodiscard]] std::vector<golden> goldens(output_id id) const;
  [[nodiscard]] std::vector<golden> goldens(std::string_view name) const;

  // The goldens of one output a range of elements at a time, each range equal to the same range
  // of goldens(id): the judge streams an output through these instead of materializing it whole.
  // fill() may be called from several threads at once, on any golden_ranges of the reference
  // (the exact path, whose per-group caches are not shared safely, is taken under the
  // reference's lock), but not while goldens() runs. Valid while the reference lives.
  class golden_ranges {
   public:
    golden_ranges(golden_ranges&&) noexcept;
    golden_ranges& operator=(golden_ranges&&) noexcept;
    ~golden_ranges();
    [[nodiscard]] std::int64_t size() const;
    // Elements [from, to) into out[0 .. to − from).
    void fill(std::int64_t from, std::int64_t to, std::span<golden> out) const;

   private:
    friend class reference;
    struct state;
    explicit golden_ranges(std::unique_ptr<state> s);
    std::unique_ptr<state> s_;
  };
  [[nodiscard]] golden_ranges goldens_by_range(output_id id) const;

  // How many per-element goldens `goldens` has decided so far by each path.
  struct evaluation_counts {
    std::int64_t certified = 0;  // by the fast path
    std::int64_t exact = 0;      // by the exact path (fallbacks and special values)
  };
  [[nodiscard]] evaluation_counts evaluations() const;
  // Off: every golden comes from the exact path (the independent check of the fast one).
  void set_fast_path(bool on);

  // The statistics that normalize statistic group g (a channel in batch norm) in this mode,
  // exactly: the batch mean and biased variance in training, the running ones in inference.
  // Undefined where they do not exist.
  [[nodiscard]] exact_value normalizing_mean(std::int64_t g) const;
  [[nodiscard]] exact_value normalizing_var(std::int64_t g) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The refusal a convention requires of a training pass (forward or backward) of `problem`, or ""
// when it takes it: what reference::refusal() reports in a training mode, without the exact pass.
// "" too for an unknown convention (the reference throws invalid_problem for it).
[[nodiscard]] std::string training_refusal(const bn_problem& problem);

// ---- Running statistics ---------------------------------------------------------------------

// Exact moments of one channel's batch: count, mean and biased variance (undefined when the
// batch has a non-finite value or is empty).
struct batch_moments {
  std::int64_t count = 0;
  bool finite = true;
  rational mean;
  rational var;  // biased: Σ(x − μ)²/L
};

struct running_result {
  exact_value mean;
  exact_value var;
  std::int64_t num_batches_tracked = 0;
  std::string refusal;
};

// One step of the running-statistic update under `conv`: momentum is the framework's parameter
// (nullopt: cumulative average, factor 1/(num_batches_tracked + 1)). `old_*` is the float32
// state before the step. Throws invalid_problem for a momentum the convention cannot take.
[[nodiscard]] running_result update_running(const convention& conv, std::optional<double> momentum,
                                            float old_mean, float old_var,
                                            std::int64_t num_batches_tracked,
                                            const batch_moments& batch);

// The factor that weighs the new batch statistic, exactly: m or 1 − m by convention, 1/t for the
// cumulative average.
[[nodiscard]] rational new_value_factor(const convention& conv, std::optional<double> momentum,
                                        std::int64_t num_batches_tracked_after);

// ---- SyncBN ---------------------------------------------------------------------------------

// (count, mean, M2) of one shard, M2 = Σ(x − mean)², exact.
struct shard_moments {
  std::int64_t count = 0;
  rational mean;
  rational m2;
};

// Exact moments of data (throws invalid_problem on a non-finite value).
[[nodiscard]] shard_moments moments_of(std::span<const float> values);
// Chan et al.'s pairwise merge, carried out exactly; empty shards contribute nothing.
[[nodiscard]] shard_moments merge(std::span<const shard_moments> shards);

// The float32 statistics a SyncBN kernel exchanges for one channel of one shard.
struct shard_stats_f32 {
  std::int64_t count = 0;
  float mean = 0.0F;
  float var = 0.0F;  // biased variance of the shard
};

struct syncbn_result {
  exact_value mean;
  exact_value var;     // biased, global
  exact_value invstd;  // 1/sqrt(var + ε)
  running_result running;
};

// Merges the shards' float32 statistics of one channel exactly and derives what a SyncBN kernel
// outputs. `eps` and the convention come from `problem`; `old_*` is the running state.
[[nodiscard]] syncbn_result syncbn_merge(const bn_problem& problem,
                                         std::span<const shard_stats_f32> shards, float old_mean,
                                         float old_var, std::int64_t num_batches_tracked);

// ---- Folding into a preceding linear or convolution layer -----------------------------------

struct fold_inputs {
  std::int64_t out_channels = 0;  // O: rows of the weight, channels of the batch norm
  std::int64_t fan_in = 0;        // K: elements per output channel (I·kh·kw...)
  std::span<const float> weight;  // O·K, row-major per output channel
  std::span<const float> bias;    // O, or empty: the layer has no bias (b = 0)
  std::span<const float> gamma, beta, running_mean, running_var;  // O each
  double eps = 1e-5;
};

// W' = W·γ/sqrt(var + ε) and b' = (b − μ)·γ/sqrt(var + ε) + β, exactly, per output channel.
class fold_reference {
 public:
  explicit fold_reference(const fold_inputs& in);  // throws invalid_problem
  [[nodiscard]] exact_value weight(std::int64_t index) const;
  [[nodiscard]] exact_value bias(std::int64_t o) const;
  [[nodiscard]] std::vector<golden> weight_goldens() const;
  [[nodiscard]] std::vector<golden> bias_goldens() const;

 private:
  fold_inputs in_;
  std::vector<std::shared_ptr<const sqrt_scale>> scale_;  // γ/sqrt(var + ε), null if special
};

}  // namespace bnoracle
