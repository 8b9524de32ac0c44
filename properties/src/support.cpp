#include "support.hpp"

#include "bnoracle/judge.hpp"
#include "bnoracle/measure.hpp"

#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace bnoracle::property_support {

using rc::detail::CaseResult;

[[noreturn]] void fail(const std::string& why) {
  throw CaseResult(CaseResult::Type::Failure, why);
}
[[noreturn]] void discard(const std::string& why) {
  throw CaseResult(CaseResult::Type::Discard, why);
}

gen::case_options context::cases() const {
  gen::case_options o;
  o.shape.layouts = info.layouts;
  o.shape.max_elements = opt.property_max_elements;
  o.cumulative = info.supports_cumulative;
  return o;
}

std::vector<op_kind> family_ops_of(const kernel_info& info) {
  std::vector<op_kind> ops;
  for (const op_kind k :
       {op_kind::layer_norm, op_kind::rms_norm, op_kind::group_norm, op_kind::instance_norm}) {
    if (info.supports(k)) ops.push_back(k);
  }
  return ops;
}

gen::case_options context::family_cases() const {
  gen::case_options o = cases();
  o.ops = family_ops_of(info);
  if (opt.op) std::erase_if(o.ops, [&](op_kind k) { return k != *opt.op; });  // check --op
  return o;
}

void context::require(bn_mode m) const {
  if (!info.supports(m)) discard("the kernel does not provide " + std::string(to_string(m)));
}

void context::require(bn_mode m, const op_desc& op) const {
  require(m);
  if (!has_mode(op, m)) {
    discard(std::string(to_string(op.kind)) + " has no " + std::string(to_string(m)));
  }
}

bool is_training(bn_mode m) {
  return m == bn_mode::forward_training || m == bn_mode::backward_training;
}
bool is_backward(bn_mode m) {
  return m == bn_mode::backward_training || m == bn_mode::backward_inference;
}

exact_side::exact_side(const property_case& pc, bn_mode mode, bool track)
    : pc_(pc), problem_(pc.problem) {
  problem_.mem_layout = dense_layout(problem_.spatial.size());
  problem_.strides.clear();
  bn_inputs in;
  in.src = pc_.src.data();
  if (is_backward(mode)) in.diff_dst = pc_.diff_dst.data();
  if (pc_.affine) {
    in.gamma = pc_.gamma;
    in.beta = pc_.beta;
  }
  // Running statistics where the op keeps them and the mode reads or updates them.
  if (pc_.problem.op.running_stats && (!is_training(mode) || track)) {
    in.running_mean = pc_.running_mean;
    in.running_var = pc_.running_var;
  }
  in.num_batches_tracked = pc_.num_batches_tracked;
  ref_ = std::make_unique<reference>(problem_, mode, in);
  model_ = std::make_unique<error_model>(*ref_, in, data_tier::general);
}

// Calls the kernel; a fault or a failure fails the case, an unsupported problem discards it.
// With `refusal` non-empty (the convention rejects the problem) a refusal discards it too.
call_result judged(const context& c, const call_request& q, call_result r,
                   const std::string& refusal) {
  const std::string mode(to_string(q.mode));
  if (!r.run.ok() || !r.padding_written.empty()) {
    c.faulted = true;
    fail(mode + ": kernel fault: " + r.describe());
  }
  if (r.status == BNK_UNSUPPORTED) discard(mode + ": " + r.describe());
  if (r.status == BNK_REFUSED && !refusal.empty()) discard(mode + ": refused as required");
  if (r.status != BNK_OK) fail(mode + ": " + r.describe() + " on a valid problem");
  return r;
}
call_result call(const context& c, const call_request& q, const std::string& refusal) {
  return judged(c, q, invoke(c.kernel, q, c.call), refusal);
}

// The backward-training call that follows forward-training result `fwd`.
call_result backward_after(const context& c, const property_case& pc, const call_result& fwd) {
  call_request q = request_of(pc, bn_mode::backward_training, false);
  if (c.info.saves != BNK_SAVES_NONE) {
    q.save_mean = fwd.save_mean;
    q.save_stat = fwd.save_stat;
  }
  return call(c, q);
}

fwd_bwd forward_backward(const context& c, const property_case& pc) {
  c.require(bn_mode::forward_training);
  c.require(bn_mode::backward_training);
  // A problem the convention refuses (instance norm of one spatial element under PyTorch) has no
  // outputs to relate: a kernel's refusal discards the case.
  const std::string refusal = training_refusal(pc.problem);
  fwd_bwd r;
  r.fwd = call(c, request_of(pc, bn_mode::forward_training, false), refusal);
  r.bwd = backward_after(c, pc, r.fwd);
  return r;
}

// forward_backward for one of several views of a problem: a view the kernel answers UNSUPPORTED
// for (oneDNN cannot express a negative stride) is left out (nullopt) instead of discarding the
// whole generated case, so that the views the kernel does take are still compared.
std::optional<fwd_bwd> forward_backward_if_supported(const context& c, const property_case& pc) {
  c.require(bn_mode::forward_training);
  c.require(bn_mode::backward_training);
  const call_request q = request_of(pc, bn_mode::forward_training, false);
  call_result f = invoke(c.kernel, q, c.call);
  if (f.run.ok() && f.padding_written.empty() && f.status == BNK_UNSUPPORTED) return std::nullopt;
  fwd_bwd r;
  // A fault or a failure fails the case; a refusal the convention requires discards it.
  r.fwd = judged(c, q, std::move(f), training_refusal(pc.problem));
  r.bwd = backward_after(c, pc, r.fwd);
  return r;
}

void expect_diff_gamma_close(const context& c, const reduction_map& map, const std::string& suffix,
                             const call_result& a, const call_result& b, const exact_side& ea,
                             const exact_side& eb) {
  const auto lvl = c.opt.level;
  for (std::int64_t j = 0; j < map.params(); ++j) {
    const auto u = static_cast<std::size_t>(j);
    expect_close(c, "diff_gamma[" + map.param_name(j) + "]" + suffix, a.diff_gamma[u],
                 b.diff_gamma[u],
                 ea.bound(output_id::diff_gamma, j, lvl) + eb.bound(output_id::diff_gamma, j, lvl));
  }
}

std::string level_name(const context& c) {
  return std::string(to_string(c.opt.level));
}

// Two kernel outputs whose exact values are equal may differ by the sum of their bounds.
void expect_close(const context& c, const std::string& what, float a, float b, double tol) {
  if (std::isinf(tol)) return;  // the error model makes no claim here (undefined statistics)
  if (std::isnan(tol)) fail("internal error: NaN tolerance for " + what + " (a bug of bnoracle)");
  const double d = std::fabs(static_cast<double>(a) - static_cast<double>(b));
  if (!(d <= tol)) {
    std::ostringstream os;
    os << what << ": " << hex_float(a) << " vs " << hex_float(b) << " differ by " << d
       << ", more than the sum of their error bounds " << tol << " at " << level_name(c);
    fail(os.str());
  }
}

std::string where(const geometry& g, const char* name, std::int64_t i) {
  return element_where(g, name, i, true);
}

// A relation r that is exactly 0 in real arithmetic, missed by at most `tol`.
void expect_zero(const std::string& what, double value, double tol, const std::string& level) {
  if (std::isnan(tol)) fail("internal error: NaN tolerance for " + what + " (a bug of bnoracle)");
  if (!(std::fabs(value) <= tol)) {
    std::ostringstream os;
    os << what << " = " << value << ", should be 0 within " << tol
       << " (sum of the error bounds of its terms at " << level << ")";
    fail(os.str());
  }
}

// Judges one output against the exact reference; fails the case with the worst element.
void judge(const context& c, const exact_side& e, const std::string& label,
           const std::string& shown, output_id id, const std::vector<float>& got) {
  if (got.size() != static_cast<std::size_t>(e.ref().output_size(id))) {
    fail(label + ": " + shown + " has " + std::to_string(got.size()) + " elements");
  }
  const output_result o =
      judge_output(shown, id, id, e.ref(), e.model(), c.opt.level, 1.0,
                   [&got](std::int64_t i) { return got[static_cast<std::size_t>(i)]; });
  if (!o.passed[static_cast<std::size_t>(c.opt.level)]) fail_output(c, label, o);
}

void fail_output(const context& c, const std::string& label, const output_result& o) {
  std::ostringstream os;
  os << label << ": ";
  if (!o.class_failure.empty()) {
    os << o.class_failure;
  } else {
    os << worst_element_text(o, " at " + level_name(c));
  }
  fail(os.str());
}

property_case generate(const context& c, const gen::case_options& o) {
  property_case pc = *gen::property_case_of(o);
  pc.problem.convention = c.convention;
  std::ostringstream os;
  showValue(pc, os);
  c.last_case = os.str();
  return pc;
}

std::pair<double, double> grid_of(const std::vector<float>& x,
                                  const std::vector<std::int64_t>& logical) {
  double q = std::numeric_limits<double>::infinity();
  double max_abs = 0;
  for (const std::int64_t i : logical) {
    const double v = static_cast<double>(x[static_cast<std::size_t>(i)]);
    max_abs = std::max(max_abs, std::fabs(v));
    if (v == 0) continue;
    int e = 0;
    double m = std::frexp(v, &e);  // v = m·2^e, 0.5 <= |m| < 1
    int low = e;
    while (m != std::trunc(m)) {  // find the lowest set bit
      m *= 2;
      --low;
    }
    q = std::min(q, std::ldexp(1.0, low));
  }
  if (std::isinf(q)) q = 1;  // all zero
  return {q, max_abs / q};
}

// Every output of two identical calls, bit for bit.
namespace {

void expect_same_bits(const std::string& mode, const char* name, const std::vector<float>& a,
                      const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!bit_equal(a[i], b[i])) {
      fail(mode + ": " + name + "[" + std::to_string(i) +
           "] changed when the same call was repeated: " + hex_float(a[i]) + " then " +
           hex_float(b[i]));
    }
  }
}

}  // namespace

void expect_same_call(bn_mode m, const call_result& a, const call_result& b) {
  const std::string mode(to_string(m));
  expect_same_bits(mode, "dst", a.dst, b.dst);
  expect_same_bits(mode, "diff_src", a.diff_src, b.diff_src);
  expect_same_bits(mode, "diff_gamma", a.diff_gamma, b.diff_gamma);
  expect_same_bits(mode, "diff_beta", a.diff_beta, b.diff_beta);
  expect_same_bits(mode, "save_mean", a.save_mean, b.save_mean);
  expect_same_bits(mode, "save_stat", a.save_stat, b.save_stat);
  expect_same_bits(mode, "running_mean", a.running_mean, b.running_mean);
  expect_same_bits(mode, "running_var", a.running_var, b.running_var);
}

}  // namespace bnoracle::property_support
