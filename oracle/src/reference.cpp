#include "bnoracle/reference.hpp"

#include "bnoracle/fast_path.hpp"
#include "bnoracle/superacc.hpp"

#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>

namespace bnoracle {

// ---- exact_value ----------------------------------------------------------------------------

exact_value exact_value::of(rational q) {
  exact_value v;
  v.kind_ = kind::rational_value;
  v.q_ = std::move(q);
  return v;
}

exact_value exact_value::of(const dyadic& d) {
  return of(to_rational(d));
}

exact_value exact_value::affine(dyadic a, dyadic c, std::shared_ptr<const sqrt_scale> h) {
  exact_value v;
  v.kind_ = kind::affine;
  v.a_ = std::move(a);
  v.c_ = std::move(c);
  v.h_ = std::move(h);
  return v;
}

exact_value exact_value::sum(dyadic a, std::vector<scaled_term> terms) {
  if (terms.empty()) return of(a);
  if (terms.size() == 1) return affine(std::move(a), std::move(terms[0].c), terms[0].h);
  exact_value v;
  v.kind_ = kind::sum;
  v.a_ = std::move(a);
  v.terms_ = std::make_shared<const std::vector<scaled_term>>(std::move(terms));
  return v;
}

exact_value exact_value::infinite(int sign) {
  exact_value v;
  v.kind_ = kind::infinite;
  v.sign_ = sign < 0 ? -1 : 1;
  return v;
}

exact_value exact_value::undefined() {
  return exact_value{};
}

exact_value exact_value::unspecified() {
  exact_value v;
  v.kind_ = kind::unspecified;
  return v;
}

golden exact_value::round(const float_format& f) const {
  switch (kind_) {
    case kind::rational_value:
      return round_to(f, q_);
    case kind::affine:
      return round_affine(a_, c_, *h_, f);
    case kind::sum:
      return round_sum(a_, *terms_, f);
    case kind::infinite:
      return golden::infinity(sign_);
    case kind::undefined:
      return golden::undefined_value();
    case kind::unspecified:
      return golden::unspecified_value();
  }
  return golden::undefined_value();
}

double exact_value::to_double() const {
  return hp().convert_to<double>();
}

hp_float exact_value::hp() const {
  switch (kind_) {
    case kind::rational_value:
      return to_hp(q_);
    case kind::affine:
      return hp_affine(a_, c_, *h_);
    case kind::sum:
      return hp_sum(a_, *terms_);
    case kind::infinite:
      return sign_ < 0 ? -std::numeric_limits<hp_float>::infinity()
                       : std::numeric_limits<hp_float>::infinity();
    case kind::undefined:
    case kind::unspecified:
      return std::numeric_limits<hp_float>::quiet_NaN();
  }
  return std::numeric_limits<hp_float>::quiet_NaN();
}

std::string exact_value::decimal(int digits) const {
  if (kind_ == kind::undefined) return "undefined";
  if (kind_ == kind::unspecified) return "unspecified";
  return to_decimal(hp(), digits);
}

// ---- modes ----------------------------------------------------------------------------------

namespace {

constexpr std::array<std::pair<bn_mode, std::string_view>, 4> k_modes{{
    {bn_mode::forward_training, "forward_training"},
    {bn_mode::forward_inference, "forward_inference"},
    {bn_mode::backward_training, "backward_training"},
    {bn_mode::backward_inference, "backward_inference"},
}};

}  // namespace

std::string_view to_string(bn_mode m) {
  for (const auto& [v, s] : k_modes) {
    if (v == m) return s;
  }
  return "?";
}

std::optional<bn_mode> parse_mode(std::string_view s) {
  for (const auto& [v, name] : k_modes) {
    if (name == s) return v;
  }
  return std::nullopt;
}

// ---- helpers --------------------------------------------------------------------------------

namespace {

bool finite(float v) {
  return std::isfinite(v);
}

// The element-wise formulas when an operand is NaN or Inf, or the scale is infinite: IEEE
// arithmetic in double gives the extended-real result (its only finite outcome here is β itself,
// which is exact), so it classifies the value without a separate table of rules.
exact_value ieee_classified(double v) {
  if (std::isnan(v)) return exact_value::undefined();
  if (std::isinf(v)) return exact_value::infinite(v < 0 ? -1 : 1);
  return exact_value::of(to_dyadic(v));
}

double ieee_rsqrt(float var, double eps) {
  return 1.0 / std::sqrt(static_cast<double>(var) + eps);
}

rational exact_of(double v) {
  return to_rational(v);
}

dyadic dy_int(std::int64_t v) {
  return dyadic{big_int(v), 0};
}

void require_size(std::span<const float> s, std::int64_t want, const char* name, bool optional) {
  if (optional && s.empty()) return;
  if (static_cast<std::int64_t>(s.size()) != want) {
    throw invalid_problem(std::string(name) + ": expected " + std::to_string(want) +
                          " values, got " + std::to_string(s.size()));
  }
}

void require_nonnegative_var(std::span<const float> var, const char* name) {
  for (std::size_t i = 0; i < var.size(); ++i) {
    if (var[i] < 0) {  // NaN compares false: NaN is data (it poisons its channel), not an error
      throw invalid_problem(std::string(name) + "[" + std::to_string(i) +
                            "]: a variance cannot be negative, got " + hex_float(var[i]));
    }
  }
}

}  // namespace

// ---- running statistics ---------------------------------------------------------------------

rational new_value_factor(const convention& conv, std::optional<double> momentum,
                          std::int64_t num_batches_tracked_after) {
  if (!momentum) {
    if (!conv.cumulative) {
      throw invalid_problem("momentum: convention " + std::string(conv.name) +
                            " has no cumulative average (momentum=None)");
    }
    if (num_batches_tracked_after < 1) {
      throw invalid_problem("num_batches_tracked: must be >= 0 before a step");
    }
    return rational(1, num_batches_tracked_after);
  }
  const rational m = exact_of(*momentum);
  return conv.weighs == momentum_weighs::new_value ? m : rational(1) - m;
}

running_result update_running(const convention& conv, std::optional<double> momentum,
                              float old_mean, float old_var, std::int64_t num_batches_tracked,
                              const batch_moments& batch) {
  if (old_var < 0) {
    throw invalid_problem("running_var: a variance cannot be negative, got " + hex_float(old_var));
  }
  if (num_batches_tracked < 0 || num_batches_tracked == std::numeric_limits<std::int64_t>::max()) {
    throw invalid_problem("num_batches_tracked: out of range");
  }
  running_result r;
  r.num_batches_tracked = num_batches_tracked + 1;
  const rational f = new_value_factor(conv, momentum, r.num_batches_tracked);
  if (batch.count == 0) {
    switch (conv.empty_batch) {
      case empty_batch_rule::unchanged:
        r.mean =
            finite(old_mean) ? exact_value::of(to_rational(old_mean)) : exact_value::undefined();
        r.var = finite(old_var) ? exact_value::of(to_rational(old_var)) : exact_value::undefined();
        return r;
      case empty_batch_rule::undefined:
        r.mean = r.var = exact_value::undefined();
        return r;
      case empty_batch_rule::refuse:
        r.refusal = std::string(conv.name) + ": an empty batch is an error";
        return r;
      case empty_batch_rule::unspecified:
        r.mean = r.var = exact_value::unspecified();
        return r;
    }
  }
  if (!batch.finite) {
    r.mean = r.var = exact_value::undefined();
    return r;
  }
  // Each running statistic is a blend of its own old value and the batch's: a non-finite old
  // mean leaves the variance's update alone, and the reverse.
  const rational keep = rational(1) - f;
  r.mean = finite(old_mean) ? exact_value::of(keep * to_rational(old_mean) + f * batch.mean)
                            : exact_value::undefined();
  rational v = batch.var;
  if (conv.running_var == variance_estimator::unbiased) {
    if (batch.count == 1) {
      switch (conv.single_value) {
        case single_value_rule::refuse:
          r.refusal =
              std::string(conv.name) + ": expected more than 1 value per channel when training";
          return r;
        case single_value_rule::undefined:
          r.var = exact_value::undefined();
          return r;
        case single_value_rule::no_correction:
        case single_value_rule::not_applicable:
          break;
      }
    } else {
      v = v * rational(batch.count, batch.count - 1);
    }
  }
  r.var = finite(old_var) ? exact_value::of(keep * to_rational(old_var) + f * v)
                          : exact_value::undefined();
  return r;
}

// ---- SyncBN ---------------------------------------------------------------------------------

shard_moments moments_of(std::span<const float> values) {
  exact_sum s1;
  exact_sum s2;
  for (const float x : values) {
    if (!finite(x)) throw invalid_problem("moments_of: non-finite value");
    s1.add(static_cast<double>(x));
    s2.add_product(x, x);
  }
  shard_moments m;
  m.count = static_cast<std::int64_t>(values.size());
  if (m.count == 0) return m;
  const rational sum = to_rational(s1.value());
  m.mean = sum / m.count;
  m.m2 = to_rational(s2.value()) - sum * sum / m.count;
  return m;
}

shard_moments merge(std::span<const shard_moments> shards) {
  shard_moments acc;
  for (const auto& s : shards) {
    if (s.count < 0) throw invalid_problem("merge: negative count");
    if (s.count == 0) continue;
    if (acc.count == 0) {
      acc = s;
      continue;
    }
    // Chan, Golub and LeVeque's pairwise update, exact in rationals.
    const std::int64_t n = acc.count + s.count;
    const rational delta = s.mean - acc.mean;
    acc.mean += delta * rational(s.count, n);
    acc.m2 += s.m2 + delta * delta * rational(acc.count) * rational(s.count, n);
    acc.count = n;
  }
  return acc;
}

syncbn_result syncbn_merge(const bn_problem& problem, std::span<const shard_stats_f32> shards,
                           float old_mean, float old_var, std::int64_t num_batches_tracked) {
  const convention* conv = find_convention(problem.convention);
  if (conv == nullptr) throw invalid_problem("convention: " + convention_error(problem.convention));
  if (!conv->running_stats) {
    throw invalid_problem("convention: none keeps no running statistics for a merge to update");
  }
  if (!std::isfinite(problem.eps) || problem.eps < 0) {
    throw invalid_problem("eps: must be finite and >= 0");
  }
  std::vector<shard_moments> moments;
  bool finite_all = true;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const auto& s = shards[i];
    if (s.count < 0) {
      throw invalid_problem("shards[" + std::to_string(i) + "].count: must be >= 0");
    }
    if (s.count == 0) continue;
    if (!finite(s.mean) || !finite(s.var)) {
      finite_all = false;
      continue;
    }
    if (s.var < 0) {
      throw invalid_problem("shards[" + std::to_string(i) + "].var: a variance cannot be negative");
    }
    moments.push_back({s.count, to_rational(s.mean), to_rational(s.var) * s.count});
  }
  const shard_moments all = merge(moments);
  std::int64_t total = 0;
  for (const auto& s : shards) total += s.count;
  syncbn_result r;
  batch_moments batch{total, finite_all, rational(0), rational(0)};
  if (total == 0 || !finite_all) {
    r.mean = r.var = r.invstd = exact_value::undefined();
  } else {
    batch.mean = all.mean;
    batch.var = all.m2 / all.count;
    r.mean = exact_value::of(batch.mean);
    r.var = exact_value::of(batch.var);
    const rational w = batch.var + exact_of(problem.eps);
    r.invstd = w.is_zero() ? exact_value::infinite(1)
                           : exact_value::affine(dy_int(0), dy_int(1),
                                                 std::make_shared<sqrt_scale>(rational(1), w));
  }
  r.running =
      update_running(*conv, problem.momentum, old_mean, old_var, num_batches_tracked, batch);
  return r;
}

// ---- folding --------------------------------------------------------------------------------

fold_reference::fold_reference(const fold_inputs& in) : in_(in) {
  if (in.out_channels < 0 || in.fan_in < 0) throw invalid_problem("fold: negative size");
  std::int64_t total = 0;
  if (__builtin_mul_overflow(in.out_channels, in.fan_in, &total) || total > k_max_elements) {
    throw invalid_problem("fold: weight size exceeds the limit of 2^34 elements");
  }
  require_size(in.weight, total, "weight", false);
  require_size(in.bias, in.out_channels, "bias", true);
  require_size(in.gamma, in.out_channels, "gamma", false);
  require_size(in.beta, in.out_channels, "beta", false);
  require_size(in.running_mean, in.out_channels, "running_mean", false);
  require_size(in.running_var, in.out_channels, "running_var", false);
  require_nonnegative_var(in.running_var, "running_var");
  if (!std::isfinite(in.eps) || in.eps < 0) throw invalid_problem("eps: must be finite and >= 0");
  scale_.resize(static_cast<std::size_t>(in.out_channels));
  for (std::int64_t o = 0; o < in.out_channels; ++o) {
    const auto u = static_cast<std::size_t>(o);
    if (!finite(in.gamma[u]) || !finite(in.running_var[u])) continue;
    const rational w = to_rational(in.running_var[u]) + exact_of(in.eps);
    if (w.is_zero()) continue;
    scale_[u] = std::make_shared<sqrt_scale>(to_rational(in.gamma[u]), w);
  }
}

exact_value fold_reference::weight(std::int64_t index) const {
  const std::int64_t o = index / in_.fan_in;
  const auto u = static_cast<std::size_t>(o);
  const float w = in_.weight[static_cast<std::size_t>(index)];
  if (!scale_[u] || !finite(w)) {
    const double r = ieee_rsqrt(in_.running_var[u], in_.eps);
    return ieee_classified(static_cast<double>(w) * (static_cast<double>(in_.gamma[u]) * r));
  }
  return exact_value::affine(dy_int(0), to_dyadic(w), scale_[u]);
}

exact_value fold_reference::bias(std::int64_t o) const {
  const auto u = static_cast<std::size_t>(o);
  const float b = in_.bias.empty() ? 0.0F : in_.bias[u];
  const float mu = in_.running_mean[u];
  const float beta = in_.beta[u];
  if (!scale_[u] || !finite(b) || !finite(mu) || !finite(beta)) {
    const double r = ieee_rsqrt(in_.running_var[u], in_.eps);
    const double t = (static_cast<double>(b) - static_cast<double>(mu)) *
                     (static_cast<double>(in_.gamma[u]) * r);
    return ieee_classified(static_cast<double>(beta) + t);
  }
  return exact_value::affine(to_dyadic(beta), to_dyadic(b) - to_dyadic(mu), scale_[u]);
}

std::vector<golden> fold_reference::weight_goldens() const {
  std::vector<golden> out(in_.weight.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = weight(static_cast<std::int64_t>(i)).round();
  return out;
}

std::vector<golden> fold_reference::bias_goldens() const {
  std::vector<golden> out(static_cast<std::size_t>(in_.out_channels));
  for (std::size_t o = 0; o < out.size(); ++o) out[o] = bias(static_cast<std::int64_t>(o)).round();
  return out;
}

// ---- the reference of every op --------------------------------------------------------------

// Conventions that reject degenerate training batches reject them whatever is tracked: a channel
// of one value (batch norm) or one spatial element (instance norm); an empty batch where the
// convention calls it an error (batch norm).
std::string training_refusal(const bn_problem& problem) {
  const convention* conv = find_convention(problem.convention);
  if (conv == nullptr) return {};
  const geometry geom(problem);
  const reduction_map map(problem.op, geom);
  const std::int64_t L = map.group_size();
  if (problem.op.kind == op_kind::batch_norm) {
    if (L == 1 && conv->single_value == single_value_rule::refuse) {
      return std::string(conv->name) + ": expected more than 1 value per channel when training";
    }
    if (L == 0 && conv->empty_batch == empty_batch_rule::refuse) {
      return std::string(conv->name) + ": an empty batch is an error";
    }
  } else if (problem.op.kind == op_kind::instance_norm && L == 1 && geom.elements() > 0 &&
             conv->single_value == single_value_rule::refuse) {
    return std::string(conv->name) + ": expected more than 1 spatial element when training";
  }
  return {};
}

namespace {

// The exact state of one statistic group.
struct group_state {
  bool x_finite = true;
  bool dy_finite = true;
  bool gamma_finite = true;  // every γ the group's elements use (backward couples them via Σg)
  // Exact sums over the group: Σx and Σx² (training statistics), Σg and Σg·x with g = γ·dy, γ as
  // applied (1 + w with the weight offset); Σdy and Σdy·x when γ is uniform over the group.
  dyadic s1, s2, sg, sgx, sdy, sdyx;
  // The statistics that normalize: the group's own (training) or the running ones (inference).
  bool stats_defined = false;  // finite and, in training, L >= 1
  // RMS norm over data with ±Inf and no NaN: the mean square is +Inf. In the extended reals
  // 1/sqrt(+Inf) = 0 and x̂ = x·0 = 0 for every finite x, which is what a kernel summing x²
  // computes; a kernel whose sum meets Inf − Inf (compensated sums) gets NaN instead. Both are
  // sound, so the group's statistics and the outputs of its finite x are `unspecified`.
  bool stats_infinite = false;
  bool x_nan = false;
  // Inference with a finite running mean and a +Inf running variance: r = 1/sqrt(+Inf + ε) = 0
  // exactly in every float pipeline, so y = β and dx = 0 element-wise (the IEEE path) and each
  // group's term of dγ is Σdy·(x − μ)·0 = 0 where x and dy are finite.
  bool var_infinite = false;
  float run_mean = 0.0F;  // inference only
  float run_var = 1.0F;   // inference only
  rational mean;          // 0 for an op that does not centre
  rational w;             // var + ε (mean square + ε for an op that does not centre)
  std::shared_ptr<const sqrt_scale> h_elem;  // scale of dst / diff_src
  std::shared_ptr<const sqrt_scale> h_stat;  // 1/sqrt(w) (invstd, inference dγ), 1/(L·sqrt(w))
                                             // (training dγ)
  dyadic p1, p2;                             // backward training constants (see diff_src)
};

}  // namespace

// Statistic groups of at least this many elements are summed in exponent bins (superacc.hpp).
constexpr std::int64_t k_binned_sums_from = 256;

struct reference::impl {
  bn_problem problem;
  geometry geom;
  reduction_map map;
  bn_mode mode;
  const convention* conv;
  bn_inputs in;
  std::string refusal;
  std::int64_t nbt_after = 0;
  bool has_running = false;
  bool centred = true;
  // Every element of a group has the same γ/β entry, or there are none. β without γ in an op
  // whose entries vary inside a group is not uniform: β is looked up per element (γ reads as 1).
  bool uniform = true;
  std::vector<group_state> grp;
  std::vector<running_result> running;  // per running entry, after the update
  bool fast_path = true;
  mutable std::atomic<std::int64_t> certified{0};   // per-element goldens of the fast path
  mutable std::atomic<std::int64_t> exact_path{0};  // and of the exact path
  // Taken around the exact path when golden_ranges fill on several threads: its per-group caches
  // (sqrt_scale) are not shared safely. goldens() needs none (each group on one thread).
  mutable std::mutex exact_lock;

  impl(const bn_problem& p, bn_mode m, const bn_inputs& inputs)
      : problem(p),
        geom(p),
        map(p.op, geom),
        mode(m),
        conv(find_convention(p.convention)),
        in(inputs),
        centred(p.op.centred),
        uniform(map.uniform_params() || (inputs.gamma.empty() && inputs.beta.empty())) {
    if (conv == nullptr) throw invalid_problem("convention: " + convention_error(p.convention));
    validate();
    nbt_after = in.num_batches_tracked;
    grp.resize(static_cast<std::size_t>(map.groups()));
    for_each_group_in_parallel(map, geom.elements(), [this](std::int64_t g) { analyze(g); });
    if (has_running) update_running_entries();
  }

  [[nodiscard]] bool training() const {
    return mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  }
  [[nodiscard]] bool backward() const {
    return mode == bn_mode::backward_training || mode == bn_mode::backward_inference;
  }
  [[nodiscard]] bool affine() const {
    return problem.op.params != param_placement::none && !in.gamma.empty();
  }
  [[nodiscard]] op_kind kind() const { return problem.op.kind; }

  // γ of entry j as raw input (1 without γ/β), γ as applied, exactly (1 + w with the weight
  // offset), and β (0 without).
  [[nodiscard]] float gamma_raw(std::int64_t j) const {
    return j < 0 || in.gamma.empty() ? 1.0F : in.gamma[static_cast<std::size_t>(j)];
  }
  [[nodiscard]] dyadic gamma_of(std::int64_t j) const {
    if (j < 0 || in.gamma.empty()) return dy_int(1);
    const dyadic w = to_dyadic(in.gamma[static_cast<std::size_t>(j)]);
    return problem.op.weight_offset ? dy_int(1) + w : w;
  }
  [[nodiscard]] double gamma_double(std::int64_t j) const {
    const double w = static_cast<double>(gamma_raw(j));
    return problem.op.weight_offset && !in.gamma.empty() ? 1.0 + w : w;
  }
  [[nodiscard]] float beta_raw(std::int64_t j) const {
    return j < 0 || in.beta.empty() ? 0.0F : in.beta[static_cast<std::size_t>(j)];
  }
  [[nodiscard]] bool params_finite(std::int64_t j) const {
    return finite(gamma_raw(j)) && finite(beta_raw(j));
  }
  // The γ/β entry of a group whose elements share one (uniform ops).
  [[nodiscard]] std::int64_t group_param(std::int64_t g) const {
    if (problem.op.params == param_placement::none) return -1;
    return kind() == op_kind::batch_norm ? g : g % geom.c();
  }

  // Every input value must be a value of its role's format (a float16 src holds float16
  // values): the exact results are of the values as given.
  void require_formats() const {
    const float_format& data = format_of(problem.types.data);
    const float_format& params = format_of(problem.types.parameters);
    const float_format& stats = format_of(problem.types.statistics);
    // name[i] where i is the index of a parameter or statistic, or the memory offset of src.
    const auto check = [](float v, const float_format& f, const char* name, std::size_t i) {
      if (!representable(f, v)) {
        throw invalid_problem(std::string(name) + "[" + std::to_string(i) + "] = " + hex_float(v) +
                              " is not a " + std::string(f.name) + " value");
      }
    };
    const auto check_all = [&](std::span<const float> s, const float_format& f, const char* name) {
      for (std::size_t i = 0; i < s.size(); ++i) check(s[i], f, name, i);
    };
    check_all(in.gamma, params, "gamma");
    check_all(in.beta, params, "beta");
    check_all(in.running_mean, stats, "running_mean");
    check_all(in.running_var, stats, "running_var");
    if (data.id == format_id::float32) return;
    for (std::int64_t g = 0; g < map.groups(); ++g) {
      map.for_each_in_group(g, [&](std::int64_t off, std::int64_t) {
        const auto u = static_cast<std::size_t>(off);
        if (in.src != nullptr) check(in.src[u], data, "src", u);
        if (backward() && in.diff_dst != nullptr) check(in.diff_dst[u], data, "diff_dst", u);
      });
    }
  }

  void validate() {
    if (!has_mode(problem.op, mode) || (!training() && map.running_size() == 0)) {
      throw invalid_problem(
          "mode: " + std::string(to_string(mode)) + ": " + describe(problem.op) +
          " keeps no running statistics, so it has no inference mode; its passes are "
          "forward_training and backward_training (the statistics of the input)");
    }
    if (geom.elements() > 0 && in.src == nullptr) throw invalid_problem("src: missing");
    if (backward() && geom.elements() > 0 && in.diff_dst == nullptr) {
      throw invalid_problem("diff_dst: missing");
    }
    require_size(in.gamma, map.params(), "gamma", true);
    require_size(in.beta, map.params(), "beta", true);
    if (problem.op.params == param_placement::none && (!in.gamma.empty() || !in.beta.empty())) {
      throw invalid_problem("gamma, beta: " + describe(problem.op) + " has no γ/β");
    }
    const bool need_running = !training();
    require_size(in.running_mean, map.running_size(), "running_mean", !need_running);
    require_size(in.running_var, map.running_size(), "running_var", !need_running);
    if (in.running_mean.empty() != in.running_var.empty()) {
      throw invalid_problem("running_mean, running_var: give both or neither");
    }
    if (!in.running_mean.empty() && map.running_size() == 0) {
      throw invalid_problem("running_mean: " + describe(problem.op) +
                            " keeps no running statistics");
    }
    require_nonnegative_var(in.running_var, "running_var");
    require_formats();
    has_running = mode == bn_mode::forward_training && !in.running_mean.empty();
    if (has_running && !conv->running_stats) {
      throw invalid_problem("running_mean: convention none keeps no running statistics");
    }
    if (has_running && !problem.momentum && kind() == op_kind::instance_norm) {
      throw invalid_problem(
          "momentum: instance norm has no cumulative average (PyTorch's instance_norm takes a "
          "number)");
    }
    if (has_running && !problem.momentum && !conv->cumulative) {
      throw invalid_problem("momentum: convention " + std::string(conv->name) +
                            " has no cumulative average (momentum=None)");
    }
    if (in.num_batches_tracked < 0) throw invalid_problem("num_batches_tracked: must be >= 0");
    if (training()) refusal = training_refusal(problem);
  }

  // The exact sums of statistic group g (Σx, Σx², and in backward Σdy, Σdy·x or Σg, Σg·x) and
  // its finiteness flags, into s.
  template <class Sum, class ProductSum>
  void sum_group(std::int64_t g, group_state& s, bool need_x, bool offset) const {
    Sum s1, sdy;
    ProductSum s2, sdyx;
    exact_sum3 sg, sgx;  // γ varies inside the group: products of three floats
    map.for_each_in_group(g, [&](std::int64_t off, std::int64_t li) {
      const float x = need_x ? in.src[off] : 0.0F;
      if (need_x && !finite(x)) s.x_finite = false;
      if (need_x && std::isnan(x)) s.x_nan = true;
      if (training() && finite(x)) {
        s1.add(x);
        s2.add_product(x, x);
      }
      if (!backward()) return;
      const float dy = in.diff_dst[off];
      if (!finite(dy)) {
        s.dy_finite = false;
        return;
      }
      if (uniform) {
        sdy.add(dy);
        if (finite(x)) sdyx.add_product(dy, x);
        return;
      }
      const float gj = gamma_raw(map.param_of(li));
      if (!finite(gj)) {
        s.gamma_finite = false;
        return;
      }
      // g = γ·dy, or (1 + w)·dy = dy + w·dy with the weight offset.
      if (offset) {
        sg.add(static_cast<double>(dy));
        if (finite(x)) sgx.add_product(dy, x);
      }
      sg.add_product(gj, dy);
      if (finite(x)) sgx.add_product3(gj, dy, x);
    });
    s.s1 = s1.value();
    s.s2 = s2.value();
    if (uniform) {
      s.sdy = sdy.value();
      s.sdyx = sdyx.value();
    } else {
      s.sg = sg.value();
      s.sgx = sgx.value();
    }
  }

  // The exact pass over statistic group g.
  void analyze(std::int64_t g) {
    auto& s = grp[static_cast<std::size_t>(g)];
    const std::int64_t L = map.group_size();
    const rational eps = exact_of(problem.eps);
    const bool need_x = training() || mode == bn_mode::backward_inference;
    const bool offset = problem.op.weight_offset && !in.gamma.empty();
    const std::int64_t ju = uniform ? group_param(g) : -1;
    if (uniform && !finite(gamma_raw(ju))) s.gamma_finite = false;

    // Large groups sum in exponent bins (a few instructions per term), small ones directly in
    // the fixed-point accumulator (the bins' setup would dominate); both are exact.
    if (L >= k_binned_sums_from) {
      sum_group<binned_sum, binned_product_sum>(g, s, need_x, offset);
    } else {
      sum_group<exact_sum, exact_sum>(g, s, need_x, offset);
    }
    if (uniform) {
      const dyadic gu = gamma_of(ju);
      s.sg = gu * s.sdy;
      s.sgx = gu * s.sdyx;
    }

    if (training()) {
      s.stats_defined = L >= 1 && s.x_finite;
      s.stats_infinite = !centred && L >= 1 && !s.x_finite && !s.x_nan;
      if (!s.stats_defined) return;
      const rational S1 = to_rational(s.s1);
      const rational var =
          centred ? (to_rational(s.s2) * L - S1 * S1) / (rational(L) * L) : to_rational(s.s2) / L;
      s.mean = centred ? rational(S1 / L) : rational(0);
      s.w = var + eps;
      if (s.w.is_zero()) return;
      s.h_stat = std::make_shared<sqrt_scale>(
          rational(1, mode == bn_mode::backward_training ? L : 1), s.w);
      if (mode == bn_mode::forward_training) {
        s.h_elem = std::make_shared<sqrt_scale>(rational(1, L), s.w);
        return;
      }
      // diff_src = 1/(L³·wn·sqrt(w)) · [(L·g − Σg)·L²·wn − (L·x − Σx)·J·wd] with g = γ·dy,
      // w = wn/wd and J = L·Σg·x − Σx·Σg (Σx and Σg taken as 0 for an op that does not
      // centre); derivation in docs/reference.md.
      const big_int& wn = mp::numerator(s.w);
      const big_int& wd = mp::denominator(s.w);
      const dyadic J = centred ? dy_int(L) * s.sgx - s.s1 * s.sg : dy_int(L) * s.sgx;
      s.p1 = dyadic{big_int(L) * L * wn, 0};
      s.p2 = J * dyadic{wd, 0};
      s.h_elem =
          std::make_shared<sqrt_scale>(rational(1) / (rational(L) * L * L * rational(wn)), s.w);
      return;
    }
    const auto e = static_cast<std::size_t>(map.running_entry(g));
    s.run_mean = in.running_mean[e];
    s.run_var = in.running_var[e];
    s.stats_defined = finite(s.run_mean) && finite(s.run_var);
    s.var_infinite = finite(s.run_mean) && s.run_var == std::numeric_limits<float>::infinity();
    if (finite(s.run_mean)) s.mean = to_rational(s.run_mean);
    if (!s.stats_defined) return;
    s.w = to_rational(s.run_var) + eps;
    if (s.w.is_zero()) return;
    s.h_elem = std::make_shared<sqrt_scale>(rational(1), s.w);
    s.h_stat = s.h_elem;
  }

  // Batch norm updates entry c with its channel's statistics; instance norm with the mean over
  // the examples of each instance's statistics (PyTorch updates every instance's copy of the
  // running statistics, Bessel-corrected with its own count, then averages the copies).
  void update_running_entries() {
    const std::int64_t R = map.running_size();
    const std::int64_t L = map.group_size();
    const rational eps = exact_of(problem.eps);
    running.resize(static_cast<std::size_t>(R));
    const std::int64_t copies = kind() == op_kind::batch_norm ? 1 : geom.n();
    for (std::int64_t e = 0; e < R; ++e) {
      batch_moments b{copies == 0 ? 0 : L, true, rational(0), rational(0)};
      for (std::int64_t k = 0; k < copies; ++k) {
        const std::int64_t g = kind() == op_kind::batch_norm ? e : k * geom.c() + e;
        const auto& s = grp[static_cast<std::size_t>(g)];
        if (!s.x_finite) b.finite = false;
        if (!s.stats_defined) continue;
        b.mean += s.mean;
        b.var += s.w - eps;
      }
      if (copies > 0) {
        b.mean /= copies;
        b.var /= copies;
      }
      const auto u = static_cast<std::size_t>(e);
      running[u] = update_running(*conv, problem.momentum, in.running_mean[u], in.running_var[u],
                                  in.num_batches_tracked, b);
      // PyTorch's InstanceNorm keeps the counter of _NormBase but never advances it: only
      // batch norm counts its steps.
      nbt_after =
          kind() == op_kind::batch_norm ? running[u].num_batches_tracked : in.num_batches_tracked;
      if (!running[u].refusal.empty() && refusal.empty()) refusal = running[u].refusal;
    }
  }

  [[nodiscard]] bool has_output(output_id id) const {
    switch (mode) {
      case bn_mode::forward_training:
        if (id == output_id::running_mean || id == output_id::running_var) return has_running;
        if (id == output_id::mean) return centred;
        return id == output_id::dst || id == output_id::var || id == output_id::invstd;
      case bn_mode::forward_inference:
        return id == output_id::dst;
      case bn_mode::backward_training:
      case bn_mode::backward_inference:
        if (id == output_id::diff_gamma || id == output_id::diff_beta) return affine();
        return id == output_id::diff_src;
    }
    return false;
  }

  [[nodiscard]] std::int64_t size_of(output_id id) const {
    switch (describe(id).extent) {
      case output_extent::element:
        return geom.elements();
      case output_extent::group:
        return map.groups();
      case output_extent::parameter:
        return map.params();
      case output_extent::running:
        return map.running_size();
    }
    return 0;
  }

  [[nodiscard]] exact_value element(output_id id, std::int64_t i) const {
    if (!refusal.empty()) return exact_value::undefined();
    switch (describe(id).extent) {
      case output_extent::element: {
        const reduction_map::position at = map.locate(i);
        const auto& s = grp[static_cast<std::size_t>(at.group)];
        return id == output_id::dst ? dst(s, at.offset, at.param)
                                    : diff_src(s, at.offset, at.param);
      }
      case output_extent::group:
        return per_group(id, grp[static_cast<std::size_t>(i)]);
      case output_extent::running: {
        const auto& r = running[static_cast<std::size_t>(i)];
        return id == output_id::running_mean ? r.mean : r.var;
      }
      case output_extent::parameter:
        return id == output_id::diff_beta ? diff_beta(i) : diff_gamma(i);
    }
    return exact_value::undefined();
  }

  [[nodiscard]] dyadic centred_x(const group_state& s, float x) const {
    const dyadic Lx = dy_int(map.group_size()) * to_dyadic(x);
    return centred ? Lx - s.s1 : Lx;
  }

  [[nodiscard]] exact_value dst(const group_state& s, std::int64_t off, std::int64_t j) const {
    const float x = in.src[off];
    if (mode == bn_mode::forward_training) {
      if (s.stats_infinite && finite(x) && params_finite(j)) return exact_value::unspecified();
      if (!s.stats_defined || !params_finite(j) || !s.h_elem) return exact_value::undefined();
      // y = β + (L·x − Σx)·γ/(L·sqrt(w))
      return exact_value::affine(to_dyadic(beta_raw(j)), centred_x(s, x) * gamma_of(j), s.h_elem);
    }
    // Inference: y = β + (x − μ_run)·γ/sqrt(var_run + ε), element-wise.
    if (!s.stats_defined || !params_finite(j) || !s.h_elem || !finite(x)) {
      const double r = ieee_rsqrt(s.run_var, problem.eps);
      const double t = (static_cast<double>(x) - static_cast<double>(s.run_mean)) * r;
      return ieee_classified(static_cast<double>(beta_raw(j)) + gamma_double(j) * t);
    }
    return exact_value::affine(to_dyadic(beta_raw(j)),
                               (to_dyadic(x) - to_dyadic(s.run_mean)) * gamma_of(j), s.h_elem);
  }

  [[nodiscard]] exact_value diff_src(const group_state& s, std::int64_t off, std::int64_t j) const {
    const float dy = in.diff_dst[off];
    if (mode == bn_mode::backward_training) {
      if (!s.stats_defined || !s.dy_finite || !s.gamma_finite || !s.h_elem) {
        return exact_value::undefined();
      }
      const dyadic L = dy_int(map.group_size());
      const dyadic Lg = L * gamma_of(j) * to_dyadic(dy);
      const dyadic c = (centred ? Lg - s.sg : Lg) * s.p1 - centred_x(s, in.src[off]) * s.p2;
      return exact_value::affine(dy_int(0), c, s.h_elem);
    }
    // Inference: dx = γ·dy/sqrt(var_run + ε), element-wise.
    if (!s.stats_defined || !finite(gamma_raw(j)) || !s.h_elem || !finite(dy)) {
      const double r = ieee_rsqrt(s.run_var, problem.eps);
      return ieee_classified(gamma_double(j) * (r * static_cast<double>(dy)));
    }
    return exact_value::affine(dy_int(0), gamma_of(j) * to_dyadic(dy), s.h_elem);
  }

  [[nodiscard]] exact_value per_group(output_id id, const group_state& s) const {
    switch (id) {
      case output_id::mean:
        return s.stats_defined ? exact_value::of(s.mean) : exact_value::undefined();
      case output_id::var:
        if (s.stats_infinite) return exact_value::unspecified();
        return s.stats_defined ? exact_value::of(s.w - exact_of(problem.eps))
                               : exact_value::undefined();
      case output_id::invstd:
        if (s.stats_infinite) return exact_value::unspecified();
        if (!s.stats_defined) return exact_value::undefined();
        if (!s.h_stat) return exact_value::infinite(1);
        return exact_value::affine(dy_int(0), dy_int(1), s.h_stat);
      default:
        break;
    }
    return exact_value::undefined();
  }

  // Calls f(group, Σdy, Σdy·x, dy_finite, x_finite) for each statistic group holding elements
  // of entry j, the sums taken over those elements (exactly); the flags say whether all their dy
  // and all their x are finite.
  template <class F>
  void for_each_param_group(std::int64_t j, F&& f) const {
    if (uniform) {
      const std::int64_t copies = kind() == op_kind::batch_norm ? 1 : geom.n();
      for (std::int64_t k = 0; k < copies; ++k) {
        const std::int64_t g = kind() == op_kind::batch_norm ? j : k * geom.c() + j;
        const auto& s = grp[static_cast<std::size_t>(g)];
        f(g, s.sdy, s.sdyx, s.dy_finite, s.x_finite);
      }
      return;
    }
    std::int64_t current = -1;
    exact_sum sdy, sdyx;
    bool ok = true;
    bool x_ok = true;
    const auto flush = [&] {
      if (current >= 0) f(current, sdy.value(), sdyx.value(), ok, x_ok);
      sdy = exact_sum{};
      sdyx = exact_sum{};
      ok = true;
      x_ok = true;
    };
    map.for_each_of_param(j, [&](std::int64_t off, std::int64_t li) {
      const std::int64_t g = li / map.group_size();
      if (g != current) {
        flush();
        current = g;
      }
      const float dy = in.diff_dst[off];
      const float x = in.src[off];
      if (!finite(x)) x_ok = false;
      if (!finite(dy)) {
        ok = false;
        return;
      }
      sdy.add(static_cast<double>(dy));
      if (finite(x)) sdyx.add_product(dy, x);
    });
    flush();
  }

  [[nodiscard]] exact_value diff_beta(std::int64_t j) const {
    dyadic total{big_int(0), 0};
    bool ok = true;
    for_each_param_group(j, [&](std::int64_t, const dyadic& sdy, const dyadic&, bool fin, bool) {
      ok = ok && fin;
      total = total + sdy;
    });
    return ok ? exact_value::of(total) : exact_value::undefined();
  }

  // dγ_j = Σ over the groups k holding entry j of Σ_(j,k) dy·x̂: in training
  // (L·Σdy·x − Σx·Σdy)/(L·sqrt(w_k)), in inference (Σdy·x − μ_run·Σdy)/sqrt(w_k); a sum of
  // scaled square roots when entry j spans several groups.
  [[nodiscard]] exact_value diff_gamma(std::int64_t j) const {
    const bool train = mode == bn_mode::backward_training;
    const std::int64_t L = map.group_size();
    std::vector<scaled_term> terms;
    bool undefined = false;
    bool unspecified = false;
    for_each_param_group(
        j, [&](std::int64_t g, const dyadic& sdy, const dyadic& sdyx, bool fin, bool x_fin) {
          const auto& s = grp[static_cast<std::size_t>(g)];
          // RMS norm over ±Inf: x̂ is 0 or NaN for finite x (see group_state).
          if (s.stats_infinite && fin && x_fin) {
            unspecified = true;
            return;
          }
          if (!fin || !s.x_finite) {
            undefined = true;
            return;
          }
          if (L == 0) return;          // an empty sum
          if (s.var_infinite) return;  // r = 0: a zero term
          if (!s.stats_defined || !s.h_stat) {
            undefined = true;  // Σ dy·0·Inf
            return;
          }
          dyadic c = train ? dy_int(L) * sdyx : sdyx;
          if (train && centred) c = c - s.s1 * sdy;
          if (!train) c = c - to_dyadic(s.run_mean) * sdy;
          if (!c.is_zero()) terms.push_back({std::move(c), s.h_stat});
        });
    if (undefined) return exact_value::undefined();
    if (unspecified) return exact_value::unspecified();
    return exact_value::sum(dy_int(0), std::move(terms));
  }

  // ---- the certified fast path (fast_path.hpp) ----

  // The constants of group s for per-element output `id`, converted once; ok = false leaves
  // every element of the group to the exact path. The conditions are those under which dst()
  // and diff_src() give an affine value for the whole group.
  struct fast_group {
    bool ok = false;
    fast::approx mu;  // the normalizing mean (0 exactly for an op that does not centre)
    fast::approx r;   // 1/sqrt(w)
    fast::approx a;   // Σg/L (backward training, centred)
    fast::approx k;   // J/(L²·w) (backward training)
  };

  [[nodiscard]] fast_group fast_constants(output_id id, const group_state& s) const {
    fast_group fg;
    if (!fast_path || !refusal.empty() || !s.stats_defined || !s.h_elem) return fg;
    const big_int L(map.group_size());
    const auto take = [](std::optional<fast::approx> v, fast::approx& into) {
      if (v) into = *v;
      return v.has_value();
    };
    if (!take(fast::approx_rsqrt(s.w), fg.r)) return fg;
    const bool batch_mean = training() && centred;
    if (batch_mean && !take(fast::approx_of(s.s1.mant, L, s.s1.exp), fg.mu)) return fg;
    if (!training()) fg.mu.v = {static_cast<double>(s.run_mean), 0.0};
    if (id == output_id::diff_src && mode == bn_mode::backward_training) {
      if (!s.dy_finite || !s.gamma_finite) return fg;
      if (centred && !take(fast::approx_of(s.sg.mant, L, s.sg.exp), fg.a)) return fg;
      // k = J/(L²·w) = p2/p1 (analyze: p1 = L²·wn, p2 = J·wd).
      if (!take(fast::approx_of(s.p2.mant, s.p1.mant, s.p2.exp - s.p1.exp), fg.k)) return fg;
    }
    fg.ok = true;
    return fg;
  }

  // The golden of the element at memory offset `off` with γ/β entry j by the fast path, or
  // nullopt for the exact path (an element the exact path treats specially, or one the error
  // bound does not decide). `Id` and `Mode` are the output and the mode, fixed per call of
  // fill_group so that the per-element code has no dispatch.
  template <output_id Id, bn_mode Mode>
  [[nodiscard]] std::optional<golden> fast_element(const fast_group& fg, std::int64_t off,
                                                   std::int64_t j, const float_format& f) const {
    const bool offset = problem.op.weight_offset && !in.gamma.empty();
    const float w = gamma_raw(j);
    if constexpr (Id == output_id::dst) {
      const float x = in.src[off];
      if (!finite(x) || !params_finite(j)) return std::nullopt;
      return fast::normalized_affine(x, fg.mu, fast::applied_gamma(w, offset), fg.r, beta_raw(j),
                                     f);
    } else {
      const float dy = in.diff_dst[off];
      if (!finite(w) || !finite(dy)) return std::nullopt;
      const dw::dword g = fast::gradient_term(w, offset, dy);
      if constexpr (Mode == bn_mode::backward_training) {
        return fast::coupled_gradient(g, in.src[off], fg.a, fg.mu, fg.k, fg.r, f);
      } else {
        return fast::scaled(g, fg.r, f);
      }
    }
  }

  // Every element of statistic group g of per-element output `id`, rounded to f, into out.
  void fill_group(output_id id, std::int64_t g, const float_format& f,
                  std::vector<golden>& out) const {
    const fast_group fg = fast_constants(id, grp[static_cast<std::size_t>(g)]);
    if (!fg.ok) {
      map.for_each_in_group(g, [&](std::int64_t, std::int64_t i) {
        out[static_cast<std::size_t>(i)] = element(id, i).round(f);
      });
      exact_path += map.group_size();
      return;
    }
    with_output_and_mode(id,
                         [&]<output_id Id, bn_mode Mode>() { fill_fast<Id, Mode>(fg, g, f, out); });
  }

  // Calls f.template operator()<Id, Mode>() with per-element output `id` (dst or diff_src) and
  // this mode as template arguments, so that the per-element code has no dispatch.
  template <class F>
  void with_output_and_mode(output_id id, F&& f) const {
    if (id == output_id::dst) {
      if (mode == bn_mode::forward_training) {
        f.template operator()<output_id::dst, bn_mode::forward_training>();
      } else {
        f.template operator()<output_id::dst, bn_mode::forward_inference>();
      }
    } else if (mode == bn_mode::backward_training) {
      f.template operator()<output_id::diff_src, bn_mode::backward_training>();
    } else {
      f.template operator()<output_id::diff_src, bn_mode::backward_inference>();
    }
  }

  // Elements [from, to) of per-element output Id into out, with the fast constants of every
  // group in `table`; the exact path under exact_lock (fill_range may run on several threads).
  template <output_id Id, bn_mode Mode>
  void fill_range(const std::vector<fast_group>& table, std::int64_t from, std::int64_t to,
                  const float_format& f, std::span<golden> out) const {
    std::int64_t by_fast = 0;
    std::int64_t by_exact = 0;
    reduction_map::cursor at(map, from);
    for (std::int64_t i = from; i < to; ++i, at.next()) {
      golden& slot = out[static_cast<std::size_t>(i - from)];
      const fast_group& fg = table[static_cast<std::size_t>(at->group)];
      if (fg.ok) {
        if (const std::optional<golden> v = fast_element<Id, Mode>(fg, at->offset, at->param, f)) {
          slot = *v;
          ++by_fast;
          continue;
        }
      }
      const std::lock_guard<std::mutex> hold(exact_lock);
      slot = element(Id, i).round(f);
      ++by_exact;
    }
    certified += by_fast;
    exact_path += by_exact;
  }

  template <output_id Id, bn_mode Mode>
  void fill_fast(const fast_group& fg, std::int64_t g, const float_format& f,
                 std::vector<golden>& out) const {
    // A group whose elements share one γ/β entry looks it up once.
    const std::int64_t shared = uniform ? group_param(g) : -1;
    std::int64_t by_fast = 0;
    std::int64_t by_exact = 0;
    map.for_each_in_group(g, [&](std::int64_t off, std::int64_t i) {
      auto& slot = out[static_cast<std::size_t>(i)];
      const std::int64_t j = uniform ? shared : map.param_of(i);
      if (const std::optional<golden> v = fast_element<Id, Mode>(fg, off, j, f)) {
        slot = *v;
        ++by_fast;
        return;
      }
      slot = element(Id, i).round(f);
      ++by_exact;
    });
    certified += by_fast;
    exact_path += by_exact;
  }
};

reference::reference(const bn_problem& problem, bn_mode mode, const bn_inputs& inputs)
    : impl_(std::make_unique<impl>(problem, mode, inputs)) {}
reference::~reference() = default;
reference::reference(reference&&) noexcept = default;
reference& reference::operator=(reference&&) noexcept = default;

const bn_problem& reference::problem() const {
  return impl_->problem;
}
const geometry& reference::geom() const {
  return impl_->geom;
}
const reduction_map& reference::map() const {
  return impl_->map;
}
bn_mode reference::mode() const {
  return impl_->mode;
}
const convention& reference::conv() const {
  return *impl_->conv;
}
const std::string& reference::refusal() const {
  return impl_->refusal;
}
std::int64_t reference::num_batches_tracked() const {
  return impl_->nbt_after;
}

std::vector<output_id> reference::outputs() const {
  std::vector<output_id> ids;
  for (const output_desc& d : k_output_table) {
    if (impl_->has_output(d.id)) ids.push_back(d.id);
  }
  return ids;
}

bool reference::has_output(output_id id) const {
  return impl_->has_output(id);
}

std::vector<std::string_view> reference::output_names() const {
  std::vector<std::string_view> names;
  for (const output_id id : outputs()) names.push_back(to_string(id));
  return names;
}

namespace {
output_id require_output(const reference& ref, std::string_view name) {
  const std::optional<output_id> id = parse_output(name);
  if (!id || !ref.has_output(*id)) {
    throw std::out_of_range("reference: no output named '" + std::string(name) + "'");
  }
  return *id;
}
void require_output(const reference& ref, output_id id) {
  if (!ref.has_output(id)) {
    throw std::out_of_range("reference: this mode has no output '" + std::string(to_string(id)) +
                            "'");
  }
}
}  // namespace

std::int64_t reference::output_size(output_id id) const {
  require_output(*this, id);
  return impl_->size_of(id);
}

std::int64_t reference::output_size(std::string_view name) const {
  return output_size(require_output(*this, name));
}

exact_value reference::exact(output_id id, std::int64_t index) const {
  require_output(*this, id);
  if (index < 0 || index >= impl_->size_of(id)) {
    throw std::out_of_range("reference: index out of range for '" + std::string(to_string(id)) +
                            "'");
  }
  return impl_->element(id, index);
}

exact_value reference::exact(std::string_view name, std::int64_t index) const {
  return exact(require_output(*this, name), index);
}

golden reference::round(output_id id, std::int64_t index) const {
  return exact(id, index).round(format_of_output(id));
}

const float_format& reference::format_of_output(output_id id) const {
  return format_of(impl_->problem.types.of(describe(id).role));
}

golden reference::round(std::string_view name, std::int64_t index) const {
  return round(require_output(*this, name), index);
}

exact_value reference::normalizing_mean(std::int64_t c) const {
  if (c < 0 || c >= impl_->map.groups()) throw std::out_of_range("reference: group out of range");
  const auto& s = impl_->grp[static_cast<std::size_t>(c)];
  return s.stats_defined || s.var_infinite ? exact_value::of(s.mean) : exact_value::undefined();
}

exact_value reference::normalizing_var(std::int64_t c) const {
  if (c < 0 || c >= impl_->map.groups()) throw std::out_of_range("reference: group out of range");
  const auto& s = impl_->grp[static_cast<std::size_t>(c)];
  if (s.stats_infinite) return exact_value::infinite(1);
  if (s.stats_defined) return exact_value::of(s.w - exact_of(impl_->problem.eps));
  // Inference reads the running variance on its own, whatever the running mean is.
  const bool inference =
      impl_->mode == bn_mode::forward_inference || impl_->mode == bn_mode::backward_inference;
  if (inference && s.run_var == std::numeric_limits<float>::infinity()) {
    return exact_value::infinite(1);
  }
  if (inference && finite(s.run_var)) return exact_value::of(to_rational(s.run_var));
  return exact_value::undefined();
}

std::vector<golden> reference::goldens(std::string_view name) const {
  return goldens(require_output(*this, name));
}

std::vector<golden> reference::goldens(output_id id) const {
  require_output(*this, id);
  const std::int64_t n = impl_->size_of(id);
  std::vector<golden> out(static_cast<std::size_t>(n));
  const reduction_map& map = impl_->map;
  const float_format& f = format_of_output(id);
  if (!per_element(id)) {
    for (std::int64_t i = 0; i < n; ++i)
      out[static_cast<std::size_t>(i)] = impl_->element(id, i).round(f);
    return out;
  }
  // Statistic groups are independent and each group's scale cache is touched by one thread only,
  // so per-element outputs are computed by group on every core.
  for_each_group_in_parallel(map, n, [&](std::int64_t g) { impl_->fill_group(id, g, f, out); });
  return out;
}

struct reference::golden_ranges::state {
  const reference::impl* im = nullptr;
  output_id id = output_id::dst;
  const float_format* f = nullptr;
  std::int64_t size = 0;
  std::vector<reference::impl::fast_group> table;  // per statistic group (per-element outputs)
};

reference::golden_ranges::golden_ranges(std::unique_ptr<state> s) : s_(std::move(s)) {}
reference::golden_ranges::golden_ranges(golden_ranges&&) noexcept = default;
reference::golden_ranges& reference::golden_ranges::operator=(golden_ranges&&) noexcept = default;
reference::golden_ranges::~golden_ranges() = default;

std::int64_t reference::golden_ranges::size() const {
  return s_->size;
}

void reference::golden_ranges::fill(std::int64_t from, std::int64_t to,
                                    std::span<golden> out) const {
  if (from < 0 || to > s_->size || from > to || out.size() < static_cast<std::size_t>(to - from)) {
    throw std::out_of_range("reference: golden range out of range");
  }
  const impl& im = *s_->im;
  const float_format& f = *s_->f;
  if (from == to) return;
  if (!per_element(s_->id)) {
    const std::lock_guard<std::mutex> hold(im.exact_lock);
    for (std::int64_t i = from; i < to; ++i) {
      out[static_cast<std::size_t>(i - from)] = im.element(s_->id, i).round(f);
    }
    return;
  }
  im.with_output_and_mode(s_->id, [&]<output_id Id, bn_mode Mode>() {
    im.fill_range<Id, Mode>(s_->table, from, to, f, out);
  });
}

reference::golden_ranges reference::goldens_by_range(output_id id) const {
  require_output(*this, id);
  auto s = std::make_unique<golden_ranges::state>();
  s->im = impl_.get();
  s->id = id;
  s->f = &format_of_output(id);
  s->size = impl_->size_of(id);
  if (per_element(id)) {
    const reduction_map& map = impl_->map;
    s->table.resize(static_cast<std::size_t>(map.groups()));
    for_each_group_in_parallel(map, s->size, [&](std::int64_t g) {
      s->table[static_cast<std::size_t>(g)] =
          impl_->fast_constants(id, impl_->grp[static_cast<std::size_t>(g)]);
    });
  }
  return golden_ranges(std::move(s));
}

reference::evaluation_counts reference::evaluations() const {
  return {impl_->certified.load(), impl_->exact_path.load()};
}

void reference::set_fast_path(bool on) {
  impl_->fast_path = on;
}

}  // namespace bnoracle
