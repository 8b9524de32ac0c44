#include "bnoracle/error_model.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace bnoracle {

namespace {

constexpr double k_u = 0x1p-24;     // unit roundoff of float32 (round to nearest)
constexpr double k_eta = 0x1p-149;  // spacing of float32 subnormals: absolute error of underflow

// The one budget table. Counts are numbers of float32 roundings (units of u) unless the name says
// otherwise; docs/error-model.md derives each.
constexpr std::array<budget, 16> k_budgets{{
    {"mean_division", 2,
     "mu = S/L, or S*(1/L) with a rounded reciprocal: at most two roundings on |mu|"},
    {"var_pointwise", 4,
     "two-pass term fl(fl(x - mu)^2): subtraction and square (3u relative on each positive "
     "term), plus the division by L"},
    {"var_mean_coupling", 2,
     "Welford/Chan updates multiply deviations by an intermediate mean whose error is "
     "g*u*mean|x|: first-order 2*g*u*mean|x|*sigma on the variance"},
    {"rsqrt", 4,
     "1/sqrt(v + eps): eps converted to float, the addition, then sqrt and division (or an rsqrt "
     "of up to 2 ulp, as CUDA's rsqrtf), relative to r"},
    {"fwd_apply", 4,
     "y = (x - mu)*r*gamma + beta: subtraction, two products, one addition, on |gamma*xhat|"},
    {"fwd_scale_shift", 3,
     "y = x*s + t with s = gamma*r, t = beta - mu*s (PyTorch CPU, oneDNN): the products carry "
     "u*|gamma|*r*(|x| + |mu|)"},
    {"fwd_beta", 2, "beta enters one addition in y and one in t: 2u*|beta|"},
    {"running_update", 3,
     "(1 - f)*old + f*new: f rounded to float, two products and one addition, on the terms"},
    {"momentum_conversion", 1,
     "the framework's momentum m is a double: a float32 kernel rounds it (u/2*m absolute) and "
     "forms the other weight as 1 - fl(m) (another u/2 relative for m < 1/2), so each weight is "
     "off by u*max(f, 1 - f) absolute: 4.5u relative on 1 - m at m = 0.9"},
    {"bessel", 1, "L/(L - 1) or 1/(L - 1) rounded once"},
    {"bwd_apply", 5,
     "dx = gamma*r*(dy - m1 - xhat*m2): two subtractions and three products, on "
     "|gamma|*r*(|dy| + |m1| + |xhat*m2|)"},
    {"bwd_dot", 2, "each term dy*xhat of a backward reduction: xhat and the product rounded"},
    {"underflow", 4,
     "absolute errors of roundings below 2^-126, in units of 2^-149: four per output covers the "
     "chain of each formula"},
    {"standard_lambda", 8,
     "probabilistic bound lambda*sqrt(n)*u*sum|x| (Higham & Mary 2019): fails with probability "
     "<= 2*exp(-lambda^2/2) = 2.5e-14 per sum for lambda = 8"},
    {"double_evaluation", 4,
     "properties evaluate xhat = (x - mu)*r, products and sums of kernel outputs in double: "
     "beyond the L - 1 roundings of a recursive sum, at most four double roundings per term; "
     "units of 2^-53 on the sum of |term| (docs/properties.md)"},
    {"bound_slack", 1.0000001,
     "the bound itself is evaluated in double from double approximations of exact quantities: a "
     "relative 1e-7 covers that arithmetic"},
}};

double b(std::string_view name) {
  return budget_value(name);
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

std::span<const budget> budget_table() {
  return k_budgets;
}

double budget_value(std::string_view name) {
  for (const auto& e : k_budgets) {
    if (e.name == name) return e.value;
  }
  throw std::logic_error("error model: no budget named '" + std::string(name) + "'");
}

double summation_factor(accuracy_level level, std::int64_t L) {
  const double n = static_cast<double>(std::max<std::int64_t>(L, 1));
  switch (level) {
    case accuracy_level::strict:
      return std::ceil(std::log2(n)) + 1.0;
    case accuracy_level::standard:
      return std::min(n, b("standard_lambda") * std::sqrt(n));
    case accuracy_level::lenient:
      return n;
  }
  return n;
}

double fold_weight_bound(double w, double gamma, double var, double eps) {
  // r̂ carries ρ = rsqrt·u relative (no reduction); γ·r̂ and W·(γ·r̂) add one rounding each.
  const double r = 1.0 / std::sqrt(var + eps);
  return b("bound_slack") *
         (std::fabs(w * gamma * r) * (b("rsqrt") + 2) * k_u + b("underflow") * k_eta);
}

double fold_bias_bound(double bias, double mu, double gamma, double beta, double var, double eps) {
  // (b − μ) rounded, times γ·r̂ (ρ + 2 roundings), plus β (one rounding on each term).
  const double r = 1.0 / std::sqrt(var + eps);
  const double t = std::fabs((bias - mu) * gamma * r);
  return b("bound_slack") * (k_u * (std::fabs(gamma) * r * (std::fabs(bias) + std::fabs(mu)) +
                                    t * (b("rsqrt") + 3) + b("fwd_beta") * std::fabs(beta)) +
                             b("underflow") * k_eta);
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
  out.mean =
      k_u * ((g + 2) * sum_abs / n + b("mean_division") * std::fabs(mean)) + b("underflow") * k_eta;
  out.var = k_u * (g + b("var_pointwise") + 2) * var + 2 * out.mean * dev_abs / n +
            out.mean * out.mean + b("underflow") * k_eta;
  const double w = var + eps;
  out.invstd = w > 0 ? (rsqrt_perturbation(out.var / w) + b("rsqrt") * k_u) / std::sqrt(w) +
                           b("underflow") * k_eta
                     : std::numeric_limits<double>::infinity();
  const double slack = b("bound_slack");
  out.mean *= slack;
  out.var *= slack;
  out.invstd *= slack;
  return out;
}

error_model::error_model(const reference& ref, const bn_inputs& in, data_tier tier)
    : ref_(&ref), in_(in), tier_(tier), eps_(ref.problem().eps) {
  const geometry& g = ref.geom();
  const bn_mode mode = ref.mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  const bool backward = mode == bn_mode::backward_training || mode == bn_mode::backward_inference;
  const bool has_running = !in.running_mean.empty();
  if (training && has_running && ref.refusal().empty()) {
    factor_ = new_value_factor(ref.conv(), ref.problem().momentum, in.num_batches_tracked + 1)
                  .convert_to<double>();
  }
  terms_.resize(static_cast<std::size_t>(g.c()));
  for (std::int64_t c = 0; c < g.c(); ++c) {
    auto& t = terms_[static_cast<std::size_t>(c)];
    const auto u = static_cast<std::size_t>(c);
    t.L = static_cast<double>(g.per_channel());
    t.gamma = in.gamma.empty() ? 1.0 : static_cast<double>(in.gamma[u]);
    t.beta = in.beta.empty() ? 0.0 : static_cast<double>(in.beta[u]);
    if (has_running) {
      t.old_mean = static_cast<double>(in.running_mean[u]);
      t.old_var = static_cast<double>(in.running_var[u]);
    }
    if (training && (!ref.refusal().empty() || g.per_channel() == 0)) continue;
    t.mu = ref.normalizing_mean(c).to_double();
    t.var = ref.normalizing_var(c).to_double();
    // One pass in double over the channel for the magnitudes the bounds need.
    double sum_abs_x = 0;
    double sum_dy = 0;
    double sum_abs_dy = 0;
    g.for_each_in_channel(c, [&](std::int64_t off, std::int64_t) {
      const double x = static_cast<double>(in.src[off]);
      sum_abs_x += std::fabs(x);
      if (backward) {
        const double dy = static_cast<double>(in.diff_dst[off]);
        sum_dy += dy;
        sum_abs_dy += std::fabs(dy);
      }
    });
    t.w = t.var + eps_;
    // Σdy and Σ|dy| bound diff_beta, which does not depend on the statistics: keep them even for
    // a channel whose statistics are undefined (NaN in src, ε = 0 with zero variance).
    if (backward && t.L > 0) {
      t.mean_abs_dy = sum_abs_dy / t.L;
      t.m1 = sum_dy / t.L;
    }
    // In training the statistics are the batch's, and Σ|x| bounds their rounding. In inference
    // they are the running statistics (inputs): y and dx are element-wise and their bounds need
    // no Σ|x|, so a NaN or Inf elsewhere in the channel (judged by class where it sits) must not
    // lift the bound of the finite elements.
    t.stats_defined =
        std::isfinite(t.mu) && std::isfinite(t.var) && (!training || std::isfinite(sum_abs_x));
    if (t.stats_defined && t.L > 0) t.mean_abs_x = sum_abs_x / t.L;
    t.defined = t.stats_defined && t.w > 0 && std::isfinite(t.gamma) && std::isfinite(t.beta);
    if (!t.defined || t.L == 0) continue;
    t.r = 1.0 / std::sqrt(t.w);
    if (backward) {
      double sum_dy_xhat = 0;
      double sum_abs_dy_xhat = 0;
      double sum_abs_dy_dev = 0;
      g.for_each_in_channel(c, [&](std::int64_t off, std::int64_t) {
        const double dev = static_cast<double>(in.src[off]) - t.mu;
        const double dy = static_cast<double>(in.diff_dst[off]);
        sum_dy_xhat += dy * dev * t.r;
        sum_abs_dy_xhat += std::fabs(dy * dev * t.r);
        sum_abs_dy_dev += std::fabs(dy * dev);
      });
      t.m2 = sum_dy_xhat / t.L;
      t.mean_abs_dy_xhat = sum_abs_dy_xhat / t.L;
      t.mean_abs_dy_dev = sum_abs_dy_dev / t.L;
    }
  }
}

double error_model::mean_error(const channel_terms& t, double g) const {
  return k_u * (g * t.mean_abs_x + b("mean_division") * std::fabs(t.mu)) + b("underflow") * k_eta;
}

double error_model::var_error(const channel_terms& t, double g) const {
  const double dmu = mean_error(t, g);
  const double sigma = std::sqrt(t.var);
  return k_u * ((g + b("var_pointwise")) * t.var +
                b("var_mean_coupling") * g * t.mean_abs_x * sigma) +
         dmu * dmu + b("underflow") * k_eta;
}

double error_model::rsqrt_rel_error(const channel_terms& t, double g) const {
  return rsqrt_perturbation((var_error(t, g) + b("underflow") * k_eta) / t.w) + b("rsqrt") * k_u;
}

double error_model::bound(std::string_view name, std::int64_t index, accuracy_level level) const {
  const double inf = std::numeric_limits<double>::infinity();
  const geometry& geo = ref_->geom();
  const bool per_element = name == "dst" || name == "diff_src";
  std::int64_t c = index;
  double x = 0;
  double dy = 0;
  if (per_element) {
    const std::int64_t S = geo.spatial_size();
    const std::int64_t n = index / S / geo.c();
    c = index / S % geo.c();
    const std::int64_t off = geo.offset(n, c, index % S);
    x = static_cast<double>(in_.src[off]);
    if (in_.diff_dst != nullptr) dy = static_cast<double>(in_.diff_dst[off]);
  }
  const channel_terms& t = terms_[static_cast<std::size_t>(c)];
  const bn_mode mode = ref_->mode();
  const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
  // g of the statistics (Σx, Σ(x − μ)², Σdy): on exact-tier data every sum is exact in any order,
  // and what remains is the incremental rounding of update-based algorithms (Welford), bounded
  // at the strict level; reductions of rounded products (Σdy·x̂) are never exact: level's g.
  const std::int64_t L = ref_->geom().per_channel();
  const double g = tier_ == data_tier::exact ? summation_factor(accuracy_level::strict, L)
                                             : summation_factor(level, L);
  const double g_dot = summation_factor(level, L);
  const double slack = b("bound_slack");
  const double eta = b("underflow") * k_eta;

  // Reductions that do not involve the statistics.
  if (name == "diff_beta") {
    return slack * (k_u * (g * t.L * t.mean_abs_dy + std::fabs(t.m1 * t.L)) + eta);  // Σdy
  }
  // The running statistics need only the batch statistics, not r: they are bounded for ε = 0
  // with a zero variance too. An empty batch has none; the running statistics are then either
  // undefined, judged by class, or — where the convention skips the update (PyTorch) — the old
  // values themselves: a copy, exact.
  const bool running = name == "running_mean" || name == "running_var";
  if (running && training && t.L == 0) return 0.0;
  if (running ? !t.stats_defined : !t.defined) return inf;
  const double ag = std::fabs(t.gamma);
  const double dmu = training ? mean_error(t, g) : 0.0;
  const double rho =
      training ? rsqrt_rel_error(t, g) : b("rsqrt") * k_u + 0.5 * b("underflow") * k_eta / t.w;

  if (name == "mean") return slack * dmu;
  if (name == "var") return slack * var_error(t, g);
  // Past τ >= 1 the kernel's 1/sqrt(v + ε) is not bounded at all: nor is anything made with it.
  const bool uses_r = name != "running_mean" && name != "running_var";
  if (uses_r && !std::isfinite(rho)) return inf;
  if (name == "invstd" || name == "save_stat") return slack * (t.r * rho);
  if (name == "running_mean") {
    const double f = factor_;
    const double F = std::max(f, 1 - f);
    return slack *
           (f * dmu +
            b("running_update") * k_u * (std::fabs((1 - f) * t.old_mean) + std::fabs(f * t.mu)) +
            b("momentum_conversion") * k_u * F * (std::fabs(t.old_mean) + std::fabs(t.mu)) + eta);
  }
  if (name == "running_var") {
    const double f = factor_;
    const bool unbiased = ref_->conv().running_var == variance_estimator::unbiased && t.L > 1;
    const double k = unbiased ? t.L / (t.L - 1) : 1.0;
    const double vu = k * t.var;
    return slack *
           (f * k * var_error(t, g) +
            b("running_update") * k_u * (std::fabs((1 - f) * t.old_var) + std::fabs(f * vu)) +
            b("bessel") * k_u * std::fabs(f * vu) +
            b("momentum_conversion") * k_u * std::max(f, 1 - f) * (std::fabs(t.old_var) + vu) +
            eta);
  }
  if (name == "dst") {
    const double dev = std::fabs(x - t.mu);
    return slack * (ag * (t.r * dmu + dev * t.r * rho) +
                    k_u * (b("fwd_apply") * ag * t.r * dev +
                           b("fwd_scale_shift") * ag * t.r * (std::fabs(x) + std::fabs(t.mu)) +
                           b("fwd_beta") * std::fabs(t.beta)) +
                    eta);
  }
  if (name == "diff_gamma") {
    if (training) {
      return slack * (t.L * (t.mean_abs_dy_xhat * rho + t.r * dmu * t.mean_abs_dy) +
                      k_u * (g_dot + b("bwd_dot")) * t.L * t.mean_abs_dy_xhat + eta);
    }
    // A NaN or Inf among x makes Σdy·(x − μ) undefined (judged by class): no magnitude claim.
    if (!std::isfinite(t.mean_abs_dy_dev)) return inf;
    return slack * (t.L * t.mean_abs_dy_dev * t.r * (rho + k_u * (g_dot + b("bwd_dot") + 1)) + eta);
  }
  if (name == "diff_src") {
    if (!training) return slack * (ag * t.r * std::fabs(dy) * (rho + 2 * k_u) + eta);
    const double xhat = std::fabs(x - t.mu) * t.r;
    const double am1 = std::fabs(t.m1);
    const double am2 = std::fabs(t.m2);
    const double dm1 = k_u * (g * t.mean_abs_dy + am1);
    const double dm2 = t.mean_abs_dy_xhat * rho + t.r * dmu * t.mean_abs_dy +
                       k_u * (g_dot + b("bwd_dot")) * t.mean_abs_dy_xhat + k_u * am2;
    return slack * (ag * t.r *
                        (rho * (std::fabs(dy) + am1 + 2 * xhat * am2) + dm1 + am2 * t.r * dmu +
                         xhat * dm2 + b("bwd_apply") * k_u * (std::fabs(dy) + am1 + xhat * am2)) +
                    eta);
  }
  throw std::out_of_range("error model: no bound for output '" + std::string(name) + "'");
}

}  // namespace bnoracle
