#include "bnoracle/error_model.hpp"

#include "bnoracle/format.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

namespace bnoracle {

namespace {

constexpr accuracy_level k_levels[3] = {accuracy_level::strict, accuracy_level::standard,
                                        accuracy_level::lenient};

// The format every quantity of a float32 pipeline is rounded to (format.hpp).
constexpr double k_u = k_float32.u();      // unit roundoff (round to nearest)
constexpr double k_eta = k_float32.eta();  // spacing of subnormals: absolute error of underflow

// The value of float format `f` from which rounding to nearest gives ±Inf: 2^(emax+1)·(1 −
// 2^-(p+1)).
double overflow_threshold(const float_format& f) {
  return std::ldexp(1.0 - std::ldexp(1.0, -(f.precision + 1)), f.overflow_exponent());
}

// Relative error of r = 1/sqrt(w) when w carries a relative error of at most tau: the exact
// worst case 1/sqrt(1 − tau) − 1 (tau/2 to first order), and no bound at all once tau >= 1 —
// the kernel's w may then be 0 or negative (a variance lost to cancellation).
double rsqrt_perturbation(double tau) {
  if (!(tau < 1)) return std::numeric_limits<double>::infinity();
  return 1 / std::sqrt(1 - tau) - 1;
}

}  // namespace

std::string_view to_string(accuracy_level l) {
  switch (l) {
    case accuracy_level::strict:
      return "strict";
    case accuracy_level::standard:
      return "standard";
    case accuracy_level::lenient:
      return "lenient";
  }
  return "?";
}

std::optional<accuracy_level> parse_level(std::string_view s) {
  for (const auto l : {accuracy_level::strict, accuracy_level::standard, accuracy_level::lenient}) {
    if (to_string(l) == s) return l;
  }
  return std::nullopt;
}

std::string_view to_string(data_tier t) {
  return t == data_tier::exact ? "exact" : "general";
}

std::span<const budget* const> budget_table() {
  return k_budget_table;
}

double budget_value(std::string_view name) {
  for (const budget* e : k_budget_table) {
    if (e->name == name) return e->value;
  }
  throw std::logic_error("error model: no budget named '" + std::string(name) + "'");
}

double summation_factor(accuracy_level level, std::int64_t L) {
  const double n = static_cast<double>(std::max<std::int64_t>(L, 1));
  switch (level) {
    case accuracy_level::strict:
      return std::ceil(std::log2(n)) + 1.0;
    case accuracy_level::standard:
      return std::min(n, budgets::standard_lambda.value * std::sqrt(n));
    case accuracy_level::lenient:
      return n;
  }
  return n;
}

double fold_weight_bound(double w, double gamma, double var, double eps) {
  // r̂ carries ρ = rsqrt·u relative (no reduction); γ·r̂ and W·(γ·r̂) add one rounding each.
  const double r = 1.0 / std::sqrt(var + eps);
  return budgets::bound_slack.value * (std::fabs(w * gamma * r) * (budgets::rsqrt.value + 2) * k_u +
                                       budgets::underflow.value * k_eta);
}

double fold_bias_bound(double bias, double mu, double gamma, double beta, double var, double eps) {
  // (b − μ) rounded, times γ·r̂ (ρ + 2 roundings), plus β (one rounding on each term).
  const double r = 1.0 / std::sqrt(var + eps);
  const double t = std::fabs((bias - mu) * gamma * r);
  return budgets::bound_slack.value *
         (k_u * (std::fabs(gamma) * r * (std::fabs(bias) + std::fabs(mu)) +
                 t * (budgets::rsqrt.value + 3) + budgets::fwd_beta.value * std::fabs(beta)) +
          budgets::underflow.value * k_eta);
}

syncbn_bounds syncbn_merge_bounds(std::span<const std::int64_t> counts,
                                  std::span<const double> means, std::span<const double> vars,
                                  double eps, accuracy_level level) {
  // mean = Σ nᵢ·mᵢ / n: K products and a K-term sum (g_K), then the division.
  // M2 = Σ (nᵢ·vᵢ + nᵢ·(mᵢ − mean)²): positive terms, each with a few roundings, plus the
  // error of the merged mean, which enters first order through (mᵢ − mean) as in Welford's
  // update (Chan et al.'s pairwise merge is the same algebra).
  double n = 0;
  double sum_abs = 0;
  double mean = 0;
  std::int64_t k = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] <= 0) continue;
    ++k;
    n += static_cast<double>(counts[i]);
    sum_abs += static_cast<double>(counts[i]) * std::fabs(means[i]);
    mean += static_cast<double>(counts[i]) * means[i];
  }
  syncbn_bounds out;
  if (n <= 0) return out;
  mean /= n;
  const double g = summation_factor(level, std::max<std::int64_t>(k, 1));
  double m2 = 0;
  double dev_abs = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] <= 0) continue;
    const double c = static_cast<double>(counts[i]);
    m2 += c * vars[i] + c * (means[i] - mean) * (means[i] - mean);
    dev_abs += c * std::fabs(means[i] - mean);
  }
  const double var = m2 / n;
  out.mean = k_u * ((g + 2) * sum_abs / n + budgets::mean_division.value * std::fabs(mean)) +
             budgets::underflow.value * k_eta;
  out.var = k_u * (g + budgets::var_pointwise.value + 2) * var + 2 * out.mean * dev_abs / n +
            out.mean * out.mean + budgets::underflow.value * k_eta;
  const double w = var + eps;
  out.invstd = w > 0
                   ? (rsqrt_perturbation(out.var / w) + budgets::rsqrt.value * k_u) / std::sqrt(w) +
                         budgets::underflow.value * k_eta
                   : std::numeric_limits<double>::infinity();
  const double slack = budgets::bound_slack.value;
  out.mean *= slack;
  out.var *= slack;
  out.invstd *= slack;
  return out;
}

error_model::error_model(const reference& ref, const bn_inputs& in, data_tier tier)
    : ref_(&ref), in_(in), tier_(tier), eps_(ref.problem().eps) {
  // Backward training reads the statistics its forward pass saved, in the statistics format.
  if (ref.mode() == bn_mode::backward_training &&
      ref.problem().types.statistics != format_id::float32) {
    saved_format_ = &format_of(ref.problem().types.statistics);
  }
  const reduction_map& map = ref.map();
  const op_desc& op = ref.problem().op;
  const bn_mode mode = ref.mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  const bool backward = mode == bn_mode::backward_training || mode == bn_mode::backward_inference;
  const bool has_running = !in.running_mean.empty();
  centred_ = op.centred;
  // β without γ in an op whose entries vary inside a group: β per element, γ reads as 1.
  uniform_ = map.uniform_params() || (in.gamma.empty() && in.beta.empty());
  training_ = training;
  cast_before_weight_ = op.cast_before_weight;
  for (std::size_t i = 0; i < output_formats_.size(); ++i) {
    output_formats_[i] = &ref.format_of_output(static_cast<output_id>(i));
  }
  if (training && has_running && ref.refusal().empty()) {
    factor_ = new_value_factor(ref.conv(), ref.problem().momentum, in.num_batches_tracked + 1)
                  .convert_to<double>();
  }
  // One set of terms per statistic group. Where γ is uniform over a group (batch and instance
  // norm) the backward magnitudes are of dy and γ multiplies the bounds; where it varies (layer,
  // RMS and group norm) they are of g = γ·dy and γ is inside them.
  terms_.resize(static_cast<std::size_t>(map.groups()));
  level_terms_.resize(terms_.size());
  // The terms of group c: the magnitudes the bounds need, from passes in double over its
  // elements.
  const auto group_terms = [&](std::int64_t c) {
    auto& t = terms_[static_cast<std::size_t>(c)];
    t.L = static_cast<double>(map.group_size());
    if (uniform_) {
      const std::int64_t j = op.params == param_placement::none ? -1
                             : op.kind == op_kind::batch_norm   ? c
                                                                : c % map.geom().c();
      t.gamma = gamma_of(j);
      t.beta = beta_of(j);
    }
    if (has_running) {
      const auto e = static_cast<std::size_t>(map.running_entry(c));
      t.old_mean = static_cast<double>(in.running_mean[e]);
      t.old_var = static_cast<double>(in.running_var[e]);
    }
    if (training && (!ref.refusal().empty() || map.group_size() == 0)) return;
    t.mu = ref.normalizing_mean(c).to_double();
    t.var = ref.normalizing_var(c).to_double();
    // One pass in double over the group for the magnitudes the bounds need.
    double sum_abs_x = 0;
    double sum_dy = 0;
    double sum_abs_dy = 0;
    map.for_each_in_group(c, [&](std::int64_t off, std::int64_t li) {
      const double x = static_cast<double>(in.src[off]);
      sum_abs_x += std::fabs(x);
      if (backward) {
        const double dy = static_cast<double>(in.diff_dst[off]) * element_gamma(li);
        sum_dy += dy;
        sum_abs_dy += std::fabs(dy);
      }
    });
    t.w = t.var + eps_;
    // Σdy and Σ|dy| bound diff_beta, which does not depend on the statistics: keep them even for
    // a group whose statistics are undefined (NaN in src, ε = 0 with zero variance).
    if (backward && t.L > 0) {
      t.mean_abs_dy = sum_abs_dy / t.L;
      t.m1 = sum_dy / t.L;
    }
    // In training the statistics are the batch's, and Σ|x| bounds their rounding. In inference
    // they are the running statistics (inputs): y and dx are element-wise and their bounds need
    // no Σ|x|, so a NaN or Inf elsewhere in the group (judged by class where it sits) must not
    // lift the bound of the finite elements.
    // A +Inf running variance (inference) normalizes too: r = 0 exactly, and every bound below
    // reduces to the roundings of what does not involve r.
    const bool var_ok = std::isfinite(t.var) || (!training && t.var > 0);
    t.stats_defined = std::isfinite(t.mu) && var_ok && (!training || std::isfinite(sum_abs_x));
    if (t.stats_defined && t.L > 0) t.mean_abs_x = sum_abs_x / t.L;
    t.defined = t.stats_defined && t.w > 0 && std::isfinite(t.gamma) && std::isfinite(t.beta);
    // Inference's dx = γ·r·dy needs r alone: a NaN or infinite running mean does not touch it.
    t.r_defined = t.defined || (!training && var_ok && t.w > 0 && std::isfinite(t.gamma));
    if (t.r_defined) t.r = 1.0 / std::sqrt(t.w);
    if (!t.defined || t.L == 0) return;
    if (backward) {
      double sum_dy_xhat = 0;
      double sum_abs_dy_xhat = 0;
      double sum_abs_dy_dev = 0;
      map.for_each_in_group(c, [&](std::int64_t off, std::int64_t li) {
        const double dev = static_cast<double>(in.src[off]) - t.mu;
        const double dy = static_cast<double>(in.diff_dst[off]) * element_gamma(li);
        sum_dy_xhat += dy * dev * t.r;
        sum_abs_dy_xhat += std::fabs(dy * dev * t.r);
        sum_abs_dy_dev += std::fabs(dy * dev);
      });
      t.m2 = sum_dy_xhat / t.L;
      t.mean_abs_dy_xhat = sum_abs_dy_xhat / t.L;
      t.mean_abs_dy_dev = sum_abs_dy_dev / t.L;
    }
  };
  // The per-group factors every per-element bound of a group shares, once per level: the same
  // functions of the same terms pipeline_bound would evaluate for each element.
  const std::int64_t L = map.group_size();
  const auto factors = [&](std::int64_t c) {
    const auto u = static_cast<std::size_t>(c);
    for (const accuracy_level l : k_levels) {
      level_terms& lt = level_terms_[u][static_cast<std::size_t>(l)];
      lt.g = stat_factor(l, L);
      lt.g_dot = summation_factor(l, L);
      lt.dmu = training ? mean_error(terms_[u], lt.g) : 0.0;
      lt.rho = rho_of(terms_[u], lt.g);
    }
  };
  // Groups are independent (each writes its own terms, in the order of one thread): on every
  // core.
  for_each_group_in_parallel(map, map.geom().elements(), [&](std::int64_t c) {
    group_terms(c);
    factors(c);
  });
}

double error_model::gamma_of(std::int64_t j) const {
  if (j < 0 || in_.gamma.empty()) return 1.0;
  const double w = static_cast<double>(in_.gamma[static_cast<std::size_t>(j)]);
  return ref_->problem().op.weight_offset ? 1.0 + w : w;
}

double error_model::beta_of(std::int64_t j) const {
  return j < 0 || in_.beta.empty() ? 0.0
                                   : static_cast<double>(in_.beta[static_cast<std::size_t>(j)]);
}

double error_model::element_gamma(std::int64_t logical) const {
  return uniform_ ? 1.0 : gamma_of(ref_->map().param_of(logical));
}

double error_model::mean_error(const channel_terms& t, double g) const {
  if (!centred_) return 0.0;  // RMS norm subtracts no mean
  const double computed =
      k_u * (g * t.mean_abs_x + budgets::mean_division.value * std::fabs(t.mu)) +
      budgets::underflow.value * k_eta;
  if (saved_format_ == nullptr) return computed;
  // A saved mean that may round to ±Inf in the statistics format: no bound (as for r).
  if (std::fabs(t.mu) + computed >= overflow_threshold(*saved_format_)) {
    return std::numeric_limits<double>::infinity();
  }
  // The saved mean, rounded to the statistics format: one more rounding of the computed value.
  return computed +
         budgets::narrow_statistics.value *
             (saved_format_->u() * (std::fabs(t.mu) + computed) + 0.5 * saved_format_->eta());
}

double error_model::var_error(const channel_terms& t, double g) const {
  const double dmu = mean_error(t, g);
  const double sigma = std::sqrt(t.var);
  const double coupling = centred_ ? budgets::var_mean_coupling.value : 0.0;
  return k_u * ((g + budgets::var_pointwise.value) * t.var + coupling * g * t.mean_abs_x * sigma) +
         dmu * dmu + budgets::underflow.value * k_eta;
}

double error_model::rsqrt_rel_error(const channel_terms& t, double g) const {
  return rsqrt_perturbation((var_error(t, g) + budgets::underflow.value * k_eta) / t.w) +
         budgets::rsqrt.value * k_u;
}

double error_model::bound(std::string_view name, std::int64_t index, accuracy_level level) const {
  return bound(output_named(name), index, level);
}

double error_model::stat_factor(accuracy_level level, std::int64_t n) const {
  return tier_ == data_tier::exact ? summation_factor(accuracy_level::strict, n)
                                   : summation_factor(level, n);
}

double error_model::rho_of(const channel_terms& t, double g) const {
  const bn_mode mode = ref_->mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  const double rho =
      training ? rsqrt_rel_error(t, g)
               : budgets::rsqrt.value * k_u + 0.5 * budgets::underflow.value * k_eta / t.w;
  if (saved_format_ == nullptr || !std::isfinite(rho)) return rho;
  // A saved 1/sqrt(v + ε) that may round to +Inf in the statistics format (float16 ends at
  // 65504: a variance below 2^-32) leaves backward nothing finite to read: no bound.
  if (t.r * (1 + rho) >= overflow_threshold(*saved_format_)) {
    return std::numeric_limits<double>::infinity();
  }
  // The saved 1/sqrt(v + ε) rounded to the statistics format: (1 + ρ)(1 + u_S) − 1, plus its
  // underflow relative to r.
  return rho +
         budgets::narrow_statistics.value *
             (saved_format_->u() * (1 + rho) + (t.r > 0 ? 0.5 * saved_format_->eta() / t.r : 0.0));
}

running_bounds running_update_bounds(double f, double old_mean, double old_var, double mu,
                                     double var, double mean_bound, double var_bound, double k) {
  const double F = std::max(f, 1 - f);
  const double vu = k * var;
  running_bounds b;
  b.mean =
      budgets::bound_slack.value *
      (f * mean_bound +
       budgets::running_update.value * k_u * (std::fabs((1 - f) * old_mean) + std::fabs(f * mu)) +
       budgets::momentum_conversion.value * k_u * F * (std::fabs(old_mean) + std::fabs(mu)) +
       budgets::underflow.value * k_eta);
  b.var =
      budgets::bound_slack.value *
      (f * k * var_bound +
       budgets::running_update.value * k_u * (std::fabs((1 - f) * old_var) + std::fabs(f * vu)) +
       budgets::bessel.value * k_u * std::fabs(f * vu) +
       budgets::momentum_conversion.value * k_u * F * (std::fabs(old_var) + vu) +
       budgets::underflow.value * k_eta);
  return b;
}

double error_model::running_mean_bound(const channel_terms& t, double g) const {
  return running_update_bounds(factor_, t.old_mean, 0.0, t.mu, 0.0, mean_error(t, g), 0.0, 1.0)
      .mean;
}

double error_model::running_var_bound(const channel_terms& t, double g) const {
  const bool unbiased = ref_->conv().running_var == variance_estimator::unbiased && t.L > 1;
  const double k = unbiased ? t.L / (t.L - 1) : 1.0;
  return running_update_bounds(factor_, 0.0, t.old_var, 0.0, t.var, 0.0, var_error(t, g), k).var;
}

// Instance norm: entry c is the mean over n of the N updated copies, each bounded as batch
// norm's running statistic of group (n, c), then summed and divided by N.
double error_model::averaged_running_bound(output_id id, std::int64_t c,
                                           accuracy_level level) const {
  const std::int64_t N = ref_->map().geom().n();
  const std::int64_t C = ref_->map().geom().c();
  const std::int64_t L = ref_->map().group_size();
  if (N == 0 || L == 0) return 0.0;  // no update: the old values, copied
  const double g = stat_factor(level, L);
  const double f = factor_;
  double copies = 0;
  double sum_abs = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const channel_terms& t = terms_[static_cast<std::size_t>(n * C + c)];
    if (!t.stats_defined) return std::numeric_limits<double>::infinity();
    if (id == output_id::running_mean) {
      copies += running_mean_bound(t, g);
      sum_abs += std::fabs((1 - f) * t.old_mean) + std::fabs(f * t.mu);
    } else {
      const bool unbiased = ref_->conv().running_var == variance_estimator::unbiased && t.L > 1;
      copies += running_var_bound(t, g);
      sum_abs += std::fabs((1 - f) * t.old_var) +
                 std::fabs(f * t.var * (unbiased ? t.L / (t.L - 1) : 1.0));
    }
  }
  const auto n = static_cast<double>(N);
  return budgets::bound_slack.value *
         (copies / n +
          k_u * (summation_factor(level, N) + budgets::copies_average.value) * sum_abs / n);
}

// dγ and dβ of an op whose entry j spans several statistic groups (layer, RMS, group and
// instance norm): the sum over the M elements of entry j, which a kernel may take in one
// reduction (g(M)) or per group and then across the K groups (g(M/K) + g(K)); each term dy·x̂
// carries the error of its own group's x̂.
double error_model::param_bound(output_id id, std::int64_t j, accuracy_level level) const {
  const reduction_map& map = ref_->map();
  const std::int64_t L = map.group_size();
  const double g = stat_factor(level, L);
  std::int64_t M = 0;
  std::int64_t K = 0;
  std::int64_t current = -1;
  double sum_dy = 0;
  double sum_abs_dy = 0;
  double sum_abs_dy_xhat = 0;
  double stat_term = 0;        // Σ |dy|·(|x̂|·ρ_k + r_k·δμ_k)
  double underflow_terms = 1;  // 1 + Σ (1 + r_k + |dy|): the terms' underflow, as for batch norm
  bool undefined = false;
  map.for_each_of_param(j, [&](std::int64_t off, std::int64_t li) {
    const std::int64_t k = map.locate(li).group;
    if (k != current) {
      ++K;
      current = k;
    }
    ++M;
    const double dy = static_cast<double>(in_.diff_dst[off]);
    sum_dy += dy;
    sum_abs_dy += std::fabs(dy);
    if (id != output_id::diff_gamma) return;
    const channel_terms& t = terms_[static_cast<std::size_t>(k)];
    // Past τ >= 1 the kernel's 1/sqrt(v + ε) of group k is not bounded at all (rho is +Inf):
    // nor is a sum with a term made with it, even a term whose x̂ is 0.
    const double rho = t.defined ? rho_of(t, g) : 0.0;
    if (!t.defined || !std::isfinite(rho)) {
      undefined = true;
      return;
    }
    const bn_mode mode = ref_->mode();
    const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
    const double xhat = std::fabs(static_cast<double>(in_.src[off]) - t.mu) * t.r;
    // A non-finite term (x or dy): dγ_j is judged by class (and r = 0 would make it NaN here).
    if (!std::isfinite(xhat) || !std::isfinite(dy)) {
      undefined = true;
      return;
    }
    const double dmu = training ? mean_error(t, g) : 0.0;
    // With narrow saved statistics the product of their two perturbations, r·δμ·ρ, is not
    // negligible (see second_order below).
    const double cross = saved_format_ != nullptr ? t.r * dmu * rho : 0.0;
    stat_term += std::fabs(dy) * (xhat * rho + t.r * dmu + cross);
    sum_abs_dy_xhat += std::fabs(dy) * xhat;
    underflow_terms += 1 + t.r + std::fabs(dy);
  });
  const double slack = budgets::bound_slack.value;
  const double eta = budgets::underflow.value * k_eta;
  const std::int64_t per_group = K > 0 ? M / K : 0;
  const auto two_level = [&](double (*factor)(accuracy_level, std::int64_t), accuracy_level lv) {
    return std::max(factor(lv, M), factor(lv, per_group) + factor(lv, K));
  };
  if (id == output_id::diff_beta) {
    const accuracy_level lv = tier_ == data_tier::exact ? accuracy_level::strict : level;
    return slack * (k_u * (two_level(summation_factor, lv) * sum_abs_dy + std::fabs(sum_dy)) + eta);
  }
  if (undefined) return std::numeric_limits<double>::infinity();
  const bn_mode mode = ref_->mode();
  const double inference_product = mode == bn_mode::backward_inference ? 1.0 : 0.0;
  return slack *
         (stat_term +
          k_u * (two_level(summation_factor, level) + budgets::bwd_dot.value + inference_product) *
              sum_abs_dy_xhat +
          eta * underflow_terms);
}

error_model::element_inputs error_model::element_at(const reduction_map::position& at) const {
  element_inputs e;
  e.group = at.group;
  e.x = static_cast<double>(in_.src[at.offset]);
  if (in_.diff_dst != nullptr) e.dy = static_cast<double>(in_.diff_dst[at.offset]);
  // γ and β of the element: the group's where they are uniform over it.
  const channel_terms& t = terms_[static_cast<std::size_t>(at.group)];
  e.gamma = uniform_ ? t.gamma : gamma_of(at.param);
  e.beta = uniform_ ? t.beta : beta_of(at.param);
  return e;
}

double error_model::pipeline_bound(output_id id, std::int64_t index, accuracy_level level,
                                   const reduction_map::position* located) const {
  if (per_element(id)) {
    return element_pipeline_bound(
        id, element_at(located != nullptr ? *located : ref_->map().locate(index)), level);
  }
  const double inf = std::numeric_limits<double>::infinity();
  const output_extent extent = describe(id).extent;
  if (ref_->problem().op.kind != op_kind::batch_norm) {
    if (extent == output_extent::parameter) return param_bound(id, index, level);
    if (extent == output_extent::running) return averaged_running_bound(id, index, level);
  }
  const std::int64_t c = index;
  const channel_terms& t = terms_[static_cast<std::size_t>(c)];
  const bn_mode mode = ref_->mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  // g of the statistics (Σx, Σ(x − μ)², Σdy): on exact-tier data every sum is exact in any order,
  // and what remains is the incremental rounding of update-based algorithms (Welford), bounded
  // at the strict level; reductions of rounded products (Σdy·x̂) are never exact: level's g.
  const level_terms& lt =
      level_terms_[static_cast<std::size_t>(c)][static_cast<std::size_t>(level)];
  const double g = lt.g;
  const double g_dot = lt.g_dot;
  const double slack = budgets::bound_slack.value;
  const double eta = budgets::underflow.value * k_eta;

  // Reductions that do not involve the statistics.
  if (id == output_id::diff_beta) {
    return slack * (k_u * (g * t.L * t.mean_abs_dy + std::fabs(t.m1 * t.L)) + eta);  // Σdy
  }
  // The running statistics need only the batch statistics, not r: they are bounded for ε = 0
  // with a zero variance too. An empty batch has none; the running statistics are then either
  // undefined, judged by class, or — where the convention skips the update (PyTorch) — the old
  // values themselves: a copy, exact.
  const bool running = id == output_id::running_mean || id == output_id::running_var;
  if (running && training && t.L == 0) return 0.0;
  if (running ? !t.stats_defined : !t.defined) return inf;
  const double dmu = lt.dmu;
  const double rho = lt.rho;

  if (id == output_id::mean) return slack * dmu;
  if (id == output_id::var) return slack * var_error(t, g);
  // Past τ >= 1 the kernel's 1/sqrt(v + ε) is not bounded at all: nor is anything made with it.
  if (!running && !std::isfinite(rho)) return inf;
  if (id == output_id::invstd) return slack * (t.r * rho);
  if (id == output_id::running_mean) return running_mean_bound(t, g);
  if (id == output_id::running_var) return running_var_bound(t, g);
  if (id == output_id::diff_gamma) {
    // Each term dy·x̂ may underflow (η), or be formed from dy·(x − μ) that underflows before ×r
    // (η·r) or from x̂ that underflows before ×dy (η·|dy|).
    const double eta_dg = eta * (1 + t.L * (1 + t.r + t.mean_abs_dy));
    if (training) {
      const double cross = saved_format_ != nullptr ? t.r * dmu * rho * t.mean_abs_dy : 0.0;
      return slack * (t.L * (t.mean_abs_dy_xhat * rho + t.r * dmu * t.mean_abs_dy + cross) +
                      k_u * (g_dot + budgets::bwd_dot.value) * t.L * t.mean_abs_dy_xhat + eta_dg);
    }
    // A NaN or Inf among x makes Σdy·(x − μ) undefined (judged by class): no magnitude claim.
    if (!std::isfinite(t.mean_abs_dy_dev)) return inf;
    return slack *
           (t.L * t.mean_abs_dy_dev * t.r * (rho + k_u * (g_dot + budgets::bwd_dot.value + 1)) +
            eta_dg);
  }
  throw std::out_of_range("error model: no bound for output '" + std::string(to_string(id)) + "'");
}

error_model::element_constants error_model::element_constants_of(std::int64_t group,
                                                                 accuracy_level level) const {
  const channel_terms& t = terms_[static_cast<std::size_t>(group)];
  const level_terms& lt =
      level_terms_[static_cast<std::size_t>(group)][static_cast<std::size_t>(level)];
  element_constants k;
  k.t = &t;
  k.lt = &lt;
  k.r_dmu = t.r * lt.dmu;
  // Backward training's dx (below): where γ varies inside the group the terms are of g = γ·dy
  // (γ is inside them, and each product γ·dy is one more rounding); without centring there is
  // no mean(g) to subtract.
  // No γ (β alone): no product γ·dy to round.
  const double gp = uniform_ || in_.gamma.empty() ? 0.0 : budgets::gamma_product.value;
  const double scale = uniform_ ? std::fabs(t.gamma) : 1.0;
  k.am1 = centred_ ? std::fabs(t.m1) : 0.0;
  k.am2 = std::fabs(t.m2);
  k.dm1 = centred_ ? k_u * ((lt.g + gp) * t.mean_abs_dy + k.am1) : 0.0;
  k.dm2 = t.mean_abs_dy_xhat * lt.rho + t.r * lt.dmu * t.mean_abs_dy +
          k_u * (lt.g_dot + budgets::bwd_dot.value + gp) * t.mean_abs_dy_xhat + k_u * k.am2;
  k.am2_r_dmu = k.am2 * t.r * lt.dmu;
  k.scale_r = scale * t.r;
  k.eta_chain = 2 * (1 + scale) * (1 + t.r);
  k.eta_sqrt_l = 1 + std::sqrt(t.L);
  k.m2_underflow = t.r + t.mean_abs_dy;
  return k;
}

double error_model::element_pipeline_bound(output_id id, const element_inputs& e,
                                           accuracy_level level) const {
  // Only this level's constants, and only this level evaluated.
  const auto l = static_cast<std::size_t>(level);
  std::array<element_constants, 3> k{};
  k[l] = element_constants_of(e.group, level);
  return element_pipeline_bounds(id, e, k, l, l)[l];
}

std::array<double, 3> error_model::element_pipeline_bounds(
    output_id id, const element_inputs& e, const std::array<element_constants, 3>& k,
    std::size_t lo, std::size_t hi) const {
  const double inf = std::numeric_limits<double>::infinity();
  std::array<double, 3> b{inf, inf, inf};
  // The terms that do not depend on the level are the same in every level's constants.
  const element_constants& k0 = k[lo];
  const channel_terms& t = *k0.t;
  const double x = e.x;
  const double dy = e.dy;
  const double gamma = e.gamma;
  const double beta = e.beta;
  const bool training = training_;
  const double slack = budgets::bound_slack.value;
  const double eta = budgets::underflow.value * k_eta;
  // Inference's dx is γ·r·dy: it needs neither the running mean nor β.
  const bool dx_of_r = id == output_id::diff_src && !training;
  if (dx_of_r ? !t.r_defined : !t.defined) return b;
  if (!std::isfinite(gamma) || (!dx_of_r && !std::isfinite(beta))) return b;
  const double ag = std::fabs(gamma);
  // With r = 0 a non-finite x or dy would make the products below NaN: an element whose value
  // depends on one (y on x; dx on dy, and in training on x) is non-finite or undefined, and
  // judged by class.
  const bool x_enters = id == output_id::dst || (id == output_id::diff_src && training);
  if ((x_enters && !std::isfinite(x)) || (id == output_id::diff_src && !std::isfinite(dy))) {
    return b;
  }
  // Past τ >= 1 the kernel's 1/sqrt(v + ε) is not bounded at all: nor is anything made with it
  // (ρ of that level is +Inf, and so is the bound).
  const auto each_level = [&](auto&& f) {
    for (std::size_t l = lo; l <= hi; ++l) {
      if (std::isfinite(k[l].lt->rho)) b[l] = f(k[l], k[l].lt->rho, k[l].lt->dmu);
    }
  };
  if (id == output_id::dst) {
    const double dev = std::fabs(x - t.mu);
    // An intermediate that underflows ((x − μ), x̂ = (x − μ)·r, r·γ) carries its absolute error
    // η through the factors applied after it: r, |γ|, both, or |x − μ|.
    const double eta_y = eta * ((1 + ag) * (1 + t.r) + dev);
    const double roundings =
        k_u * (budgets::fwd_apply.value * ag * t.r * dev +
               budgets::fwd_scale_shift.value * ag * t.r * (std::fabs(x) + std::fabs(t.mu)) +
               budgets::fwd_beta.value * std::fabs(beta));
    each_level([&](const element_constants& kl, double rho, double /*dmu*/) {
      return slack * (ag * (kl.r_dmu + dev * t.r * rho) + roundings + eta_y);
    });
    return b;
  }
  if (id == output_id::diff_src) {
    if (!training) {
      // γ·r that underflows carries η·|dy|.
      const double eta_dx = eta * ((1 + ag) * (1 + t.r) + std::fabs(dy));
      each_level([&](const element_constants& /*kl*/, double rho, double /*dmu*/) {
        return slack * (ag * t.r * std::fabs(dy) * (rho + 2 * k_u) + eta_dx);
      });
      return b;
    }
    // dx = s·r·(g − m1 − x̂·m2), s = |γ| with g = dy where γ is uniform over the group, s = 1 with
    // g = γ·dy where it varies (element_constants_of gives the group's terms: m1, m2 and their
    // errors δm1, δm2).
    const double dyv = uniform_ ? std::fabs(dy) : std::fabs(gamma * dy);
    const double xhat = std::fabs(x - t.mu) * t.r;
    const double am1 = k0.am1;
    const double am2 = k0.am2;
    // An underflowing intermediate (γ·dy, dy·x̂_j, their means, x̂·m2) carries its absolute error
    // η through the factors after it: x̂_j (|x̂_j| <= √L, as Σx̂² <= L), x̂, r, γ, or some of them.
    // m2 = mean(g·x̂) also takes η·r from each dy·(x − μ) formed before its ×r, and η·|g| from
    // each x̂ formed before its ×g; x̂ by m2, and γ·r by the bracket (docs/error-model.md).
    const double eta_dx =
        eta * (1 + k0.eta_chain * (1 + xhat) * k0.eta_sqrt_l +
               k0.scale_r * (xhat * k0.m2_underflow + am2) + dyv + am1 + xhat * am2);
    // ρ's share of the bracket and the roundings of its operations.
    const double perturbed = dyv + am1 + 2 * xhat * am2;
    const double roundings = budgets::bwd_apply.value * k_u * (dyv + am1 + xhat * am2);
    each_level([&](const element_constants& kl, double rho, double dmu) {
      const double dm1 = kl.dm1;
      const double dm2 = kl.dm2;
      // The bound is first order in the perturbations of r (ρ), of x̂_j (δx̂) and of m2 (δm2).
      // In float32 their products are O(u²), far inside bound_slack; saved statistics narrowed
      // to float16 or bfloat16 make r·δμ as large as a few percent, and the products count: ρ
      // times every first-order term of the bracket, and δx̂·δm2.
      double second_order = 0;
      if (saved_format_ != nullptr) {
        const double dxhat = xhat * rho + t.r * dmu;
        second_order = rho * (dm1 + kl.am2_r_dmu + xhat * dm2 + dxhat * dm2) + dxhat * dm2;
      }
      return slack * (kl.scale_r * (rho * perturbed + dm1 + kl.am2_r_dmu + xhat * dm2 +
                                    second_order + roundings) +
                      eta_dx);
    });
    return b;
  }
  throw std::out_of_range("error model: no bound for output '" + std::string(to_string(id)) + "'");
}

std::array<double, 3> error_model::bounds(output_id id, std::int64_t index) const {
  std::array<double, 3> b{};
  if (!per_element(id)) {
    for (const accuracy_level l : k_levels) {
      b[static_cast<std::size_t>(l)] = bound(id, index, l, nullptr);
    }
    return b;
  }
  // A range of one element: one look-up of its position and inputs serves the three levels.
  bounds(id, index, index + 1, std::span(&b, 1));
  return b;
}

void error_model::bounds(output_id id, std::int64_t from, std::int64_t to,
                         std::span<std::array<double, 3>> out) const {
  if (!per_element(id)) {
    for (std::int64_t i = from; i < to; ++i)
      out[static_cast<std::size_t>(i - from)] = bounds(id, i);
    return;
  }
  if (from >= to) return;
  reduction_map::cursor at(ref_->map(), from);
  std::int64_t group = -1;
  std::array<element_constants, 3> k{};
  // A float32 output without the cast-before-weight roundings is the pipeline's bound itself.
  const bool pipeline_only =
      !cast_before_weight_ &&
      output_formats_[static_cast<std::size_t>(id)]->id == format_id::float32;
  for (std::int64_t i = from; i < to; ++i, at.next()) {
    const element_inputs e = element_at(*at);
    if (e.group != group) {
      group = e.group;
      for (const accuracy_level l : k_levels) {
        k[static_cast<std::size_t>(l)] = element_constants_of(group, l);
      }
    }
    std::array<double, 3>& b = out[static_cast<std::size_t>(i - from)];
    b = element_pipeline_bounds(id, e, k, 0, 2);
    if (pipeline_only) continue;
    std::optional<double> estimated;
    for (const accuracy_level l : k_levels) {
      const auto li = static_cast<std::size_t>(l);
      b[li] = finish_bound(id, i, l, b[li], &*at, estimated);
    }
  }
}

double error_model::bound(output_id id, std::int64_t index, accuracy_level level) const {
  return bound(id, index, level, nullptr);
}

double error_model::bound(output_id id, std::int64_t index, accuracy_level level,
                          const reduction_map::position* located) const {
  std::optional<double> estimated;
  return finish_bound(id, index, level, pipeline_bound(id, index, level, located), located,
                      estimated);
}

double error_model::finish_bound(output_id id, std::int64_t index, accuracy_level level, double b,
                                 const reduction_map::position* located,
                                 std::optional<double>& estimated) const {
  if (!std::isfinite(b)) return b;
  if (cast_before_weight_) b += cast_bound(id, index, level, b);
  const float_format& f = *output_formats_[static_cast<std::size_t>(id)];
  // A float32 output is the pipeline's own; a bound of 0 is an exact copy of an input of the
  // same format (running statistics an empty batch leaves unchanged).
  if (f.id == format_id::float32 || b == 0) return b;
  if (!estimated) estimated = std::fabs(estimate(id, index, located));
  const double y = *estimated;
  if (!std::isfinite(y)) return std::numeric_limits<double>::infinity();
  // The float32 result lies within b of the exact value, whose approximation y is off by far
  // less than b (it is a double evaluation of the same quantities): |result| <= y + 2b.
  const double reach = y + 2 * b;
  // Where the float32 result may fall on either side of the format's overflow threshold, both
  // ±Inf and the largest finite value are what a sound pipeline gives: no claim on magnitude.
  const double threshold = overflow_threshold(f);
  if (reach >= threshold && y - 2 * b < threshold) return std::numeric_limits<double>::infinity();
  return budgets::bound_slack.value *
         (b + budgets::narrow_rounding.value * (f.u() * reach + 0.5 * f.eta()));
}

// Llama's RMSNorm (op.cast_before_weight): y = fl_D(γ·fl_D(x̂)), and backward through the same
// two steps: g = fl_D(γ·dy) enters the float32 backward of x̂ = x·r, and dγ sums fl_D(dy·fl_D(x̂)).
// Each rounding to the data type D adds u_D relative (η_D/2 absolute below its normal range).
double error_model::cast_bound(output_id id, std::int64_t index, accuracy_level level,
                               double pipeline) const {
  const float_format& d = format_of(ref_->problem().types.data);
  const double uD = budgets::cast_before_weight.value * d.u();
  const double hD = budgets::cast_before_weight.value * 0.5 * d.eta();
  const reduction_map& map = ref_->map();
  const bn_mode mode = ref_->mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  if (id == output_id::dst) {
    const reduction_map::position at = map.locate(index);
    const channel_terms& t = terms_[static_cast<std::size_t>(at.group)];
    const double gamma = uniform_ ? t.gamma : gamma_of(at.param);
    const double xhat = std::fabs(static_cast<double>(in_.src[at.offset]) - t.mu) * t.r;
    // fl_D(x̂₃₂) is off x̂ by u_D·(|x̂| + δx̂) + η_D/2, and γ multiplies that. With β, the
    // product γ·fl_D(x̂) is itself rounded to D before β is added: one more u_D·|γ·x̂| + η_D/2.
    const double product = in_.beta.empty() ? 0.0 : uD * std::fabs(gamma) * xhat + hD;
    return uD * (std::fabs(gamma) * xhat + pipeline) + std::fabs(gamma) * hD + product;
  }
  if (id == output_id::diff_src) {
    const reduction_map::position at = map.locate(index);
    const channel_terms& t = terms_[static_cast<std::size_t>(at.group)];
    const double gamma = uniform_ ? t.gamma : gamma_of(at.param);
    const double dy = std::fabs(static_cast<double>(in_.diff_dst[at.offset]));
    // g = γ·dy rounded to D: δg <= u_D·|g| + η_D/2 per element; dx = r·(g − c·mean(g) −
    // x̂·mean(g·x̂)) carries it through each term (mean|x̂| <= 1 as mean x̂² <= 1).
    const double scale = uniform_ ? std::fabs(t.gamma) : 1.0;
    if (!training) return t.r * (uD * std::fabs(gamma) * dy + hD);
    const double c = centred_ ? 1.0 : 0.0;
    const double xhat = std::fabs(static_cast<double>(in_.src[at.offset]) - t.mu) * t.r;
    const double g_abs = std::fabs(gamma) * dy;
    return t.r * (uD * (g_abs + scale * (c * t.mean_abs_dy + xhat * t.mean_abs_dy_xhat)) +
                  hD * (1 + c + xhat));
  }
  if (id != output_id::diff_gamma) return 0.0;
  // Each term dy·fl_D(x̂) rounded to D: 2u_D·|dy·x̂| + u_D·|dy|·δx̂ + η_D (two roundings that may
  // underflow), summed over the elements of entry `index`.
  const std::int64_t L = map.group_size();
  const double g = stat_factor(level, L);
  double sum = 0;
  map.for_each_of_param(index, [&](std::int64_t off, std::int64_t li) {
    const channel_terms& t = terms_[static_cast<std::size_t>(map.locate(li).group)];
    const double dy = std::fabs(static_cast<double>(in_.diff_dst[off]));
    const double xhat = std::fabs(static_cast<double>(in_.src[off]) - t.mu) * t.r;
    const double dxhat = xhat * rho_of(t, g) + t.r * (training ? mean_error(t, g) : 0.0);
    sum += dy * (uD * (2 * xhat + dxhat) + 2 * hD) + hD;
  });
  return sum;
}

// A double evaluation of the exact value from the model's own quantities. Its error is a few
// units of 2^-53 on the magnitudes the pipeline bound charges u = 2^-24 on, so it stays far
// inside that bound; bound() uses it only for the size of the final rounding.
double error_model::estimate(output_id id, std::int64_t index,
                             const reduction_map::position* located) const {
  const reduction_map& map = ref_->map();
  const bn_mode mode = ref_->mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  const bool batch_norm = ref_->problem().op.kind == op_kind::batch_norm;
  if (per_element(id)) {
    const reduction_map::position at = located != nullptr ? *located : map.locate(index);
    const channel_terms& t = terms_[static_cast<std::size_t>(at.group)];
    const double gamma = uniform_ ? t.gamma : gamma_of(at.param);
    const double x = static_cast<double>(in_.src[at.offset]);
    const double xhat = t.r == 0 ? 0.0 : (x - t.mu) * t.r;
    if (id == output_id::dst) {
      return gamma * xhat + (uniform_ ? t.beta : beta_of(at.param));
    }
    const double dy = static_cast<double>(in_.diff_dst[at.offset]);
    if (!training) return gamma * t.r * dy;
    // dx = s·r·(g − mean(g) − x̂·mean(g·x̂)) with g = dy (s = γ) where γ is uniform over the
    // group, g = γ·dy (s = 1) where it varies; no mean(g) without centring.
    const double scale = uniform_ ? gamma : 1.0;
    const double gv = uniform_ ? dy : gamma * dy;
    return scale * t.r * (gv - (centred_ ? t.m1 : 0.0) - xhat * t.m2);
  }
  switch (id) {
    case output_id::mean:
      return terms_[static_cast<std::size_t>(index)].mu;
    case output_id::var:
      return terms_[static_cast<std::size_t>(index)].var;
    case output_id::invstd:
      return terms_[static_cast<std::size_t>(index)].r;
    default:
      break;
  }
  const double f = factor_;
  const auto running = [&](const channel_terms& t) {
    const bool unbiased = ref_->conv().running_var == variance_estimator::unbiased && t.L > 1;
    return id == output_id::running_mean
               ? (1 - f) * t.old_mean + f * t.mu
               : (1 - f) * t.old_var + f * t.var * (unbiased ? t.L / (t.L - 1) : 1.0);
  };
  if (id == output_id::running_mean || id == output_id::running_var) {
    if (batch_norm) return running(terms_[static_cast<std::size_t>(index)]);
    // Instance norm: the mean over n of each instance's updated copy.
    const std::int64_t N = map.geom().n();
    const std::int64_t C = map.geom().c();
    double sum = 0;
    for (std::int64_t n = 0; n < N; ++n)
      sum += running(terms_[static_cast<std::size_t>(n * C + index)]);
    return N > 0 ? sum / static_cast<double>(N) : 0.0;
  }
  if (batch_norm) {
    const channel_terms& t = terms_[static_cast<std::size_t>(index)];
    return id == output_id::diff_beta ? t.m1 * t.L : t.m2 * t.L;
  }
  // dγ_j = Σ dy·x̂ and dβ_j = Σ dy over the elements of entry j, each x̂ of its own group.
  double sum = 0;
  map.for_each_of_param(index, [&](std::int64_t off, std::int64_t li) {
    const double dy = static_cast<double>(in_.diff_dst[off]);
    if (id == output_id::diff_beta) {
      sum += dy;
      return;
    }
    const channel_terms& t = terms_[static_cast<std::size_t>(map.locate(li).group)];
    sum += dy * (static_cast<double>(in_.src[off]) - t.mu) * t.r;
  });
  return sum;
}

}  // namespace bnoracle
