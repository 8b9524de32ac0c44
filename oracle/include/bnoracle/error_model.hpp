// The error model: how far a numerically sound float32 kernel may be from the exact value.
// A kernel of float16 or bfloat16 data (or parameters, or statistics) is modelled as a float32
// pipeline on those values (every one of them is a float32 value) whose outputs are rounded once
// more to their formats: that rounding is added on top (docs/error-model.md, "Half precision").
//
// docs/error-model.md derives every term. In short: a sound kernel computes the batch mean with
// a summation error of at most g(L)·u·mean|x|, the variance with the error that mean error and
// its own summation cause (two-pass, Welford, pairwise, blocked and compensated algorithms are
// all covered), 1/sqrt(var + ε) with a few roundings, and then each output with a few more. The
// bound of each output element is the first-order sum of these contributions, in absolute terms
// (never relative to the output, which can cancel to zero). `g(L)` is the accuracy level:
//   strict   g = ⌈log2 L⌉ + 1   pairwise or tree reductions, compensated sums
//   standard g = 8·sqrt(L)      sequential sums under the probabilistic model of rounding
//                               errors (Higham & Mary 2019, λ = 8)
//   lenient  g = L              the deterministic worst case of any summation order
// On exact-tier data every sum of inputs is exact in any order: the statistics then use the
// strict g at every level (sum-based kernels land exactly; update-based ones such as Welford
// keep a log-sized rounding), while reductions of rounded products (Σdy·x̂) keep the level's g.
#pragma once

#include "bnoracle/reference.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace bnoracle {

enum class accuracy_level : std::uint8_t { strict, standard, lenient };
enum class data_tier : std::uint8_t { exact, general };

[[nodiscard]] std::string_view to_string(accuracy_level l);
[[nodiscard]] std::optional<accuracy_level> parse_level(std::string_view s);
[[nodiscard]] std::string_view to_string(data_tier t);

// One entry of the budget table: a count of roundings (in units of u of the format) or a factor,
// with the reason it has that value. Every constant of the model is one of the named budgets
// below and nowhere else.
struct budget {
  std::string_view name;
  double value;
  std::string_view why;
};

// The one budget table of the error model: every constant of the model is one of these named
// objects, each with the reason it has its value (docs/error-model.md derives each). Counts are
// numbers of roundings in the output's format (units of u) unless the name says otherwise.
namespace budgets {
inline constexpr budget mean_division{
    "mean_division", 2,
    "mu = S/L, or S*(1/L) with a rounded reciprocal: at most two roundings on |mu|"};
inline constexpr budget var_pointwise{
    "var_pointwise", 4,
    "two-pass term fl(fl(x - mu)^2): subtraction and square (3u relative on each positive "
    "term), plus the division by L"};
inline constexpr budget var_mean_coupling{
    "var_mean_coupling", 2,
    "Welford/Chan updates multiply deviations by an intermediate mean whose error is "
    "g*u*mean|x|: first-order 2*g*u*mean|x|*sigma on the variance"};
inline constexpr budget rsqrt{
    "rsqrt", 4,
    "1/sqrt(v + eps): eps converted to float, the addition, then sqrt and division (or an rsqrt "
    "of up to 2 ulp, as CUDA's rsqrtf), relative to r"};
inline constexpr budget fwd_apply{
    "fwd_apply", 4,
    "y = (x - mu)*r*gamma + beta: subtraction, two products, one addition, on |gamma*xhat|"};
inline constexpr budget fwd_scale_shift{
    "fwd_scale_shift", 3,
    "y = x*s + t with s = gamma*r, t = beta - mu*s (PyTorch CPU, oneDNN): the products carry "
    "u*|gamma|*r*(|x| + |mu|)"};
inline constexpr budget fwd_beta{"fwd_beta", 2,
                                 "beta enters one addition in y and one in t: 2u*|beta|"};
inline constexpr budget running_update{
    "running_update", 3,
    "(1 - f)*old + f*new: f rounded to float, two products and one addition, on the terms"};
inline constexpr budget momentum_conversion{
    "momentum_conversion", 1,
    "the framework's momentum m is a double: a float32 kernel rounds it (u/2*m absolute) and "
    "forms the other weight as 1 - fl(m) (another u/2 relative for m < 1/2), so each weight is "
    "off by u*max(f, 1 - f) absolute: 4.5u relative on 1 - m at m = 0.9"};
inline constexpr budget bessel{"bessel", 1, "L/(L - 1) or 1/(L - 1) rounded once"};
inline constexpr budget bwd_apply{
    "bwd_apply", 5,
    "dx = gamma*r*(dy - m1 - xhat*m2): two subtractions and three products, on "
    "|gamma|*r*(|dy| + |m1| + |xhat*m2|)"};
inline constexpr budget bwd_dot{
    "bwd_dot", 2, "each term dy*xhat of a backward reduction: xhat and the product rounded"};
inline constexpr budget gamma_product{
    "gamma_product", 1,
    "layer, RMS and group norm: g = gamma*dy rounded once per element before the backward "
    "reductions and dx, where gamma varies inside a statistic group"};
inline constexpr budget copies_average{
    "copies_average", 1,
    "instance norm's running statistics: the N updated copies of a channel are summed (g(N)) "
    "and divided by N once"};
inline constexpr budget underflow{
    "underflow", 4,
    "absolute errors of roundings below 2^-126, in units of 2^-149: four per output covers the "
    "chain of each formula; y and dx carry it through the factors applied after an underflowing "
    "intermediate (r, |gamma|, |x - mean|, xhat, sqrt(L))"};
inline constexpr budget narrow_rounding{
    "narrow_rounding", 1,
    "an output in float16 or bfloat16: the float32 pipeline's result rounded once more, to the "
    "output's format F: u_F*(|exact| + pipeline bound) + eta_F/2 (units of u_F)"};
inline constexpr budget narrow_statistics{
    "narrow_statistics", 1,
    "backward training reads the saved statistics its forward pass rounded to a narrow "
    "statistics format S: u_S relative on the mean and on r, plus eta_S/2 absolute"};
inline constexpr budget cast_before_weight{
    "cast_before_weight", 1,
    "Llama's RMSNorm: x-hat rounded to the data type D before the product with gamma (and, "
    "backward, gamma*dy and each dy*x-hat rounded to D): one rounding of u_D on each"};
inline constexpr budget standard_lambda{
    "standard_lambda", 8,
    "probabilistic bound lambda*sqrt(n)*u*sum|x| (Higham & Mary 2019): fails with probability "
    "<= 2*exp(-lambda^2/2) = 2.5e-14 per sum for lambda = 8"};
inline constexpr budget double_evaluation{
    "double_evaluation", 4,
    "properties evaluate xhat = (x - mu)*r, products and sums of kernel outputs in double: "
    "beyond the L - 1 roundings of a recursive sum, at most four double roundings per term; "
    "units of 2^-53 on the sum of |term| (docs/properties.md)"};
inline constexpr budget bound_slack{
    "bound_slack", 1.0000001,
    "the bound itself is evaluated in double from double approximations of exact quantities: a "
    "relative 1e-7 covers that arithmetic"};
// The diagnosis (docs/diagnosis.md): when a defect model's prediction explains a kernel's value.
inline constexpr budget diagnosis_bound_factor{
    "diagnosis_bound_factor", 2,
    "a kernel with the defect computes the defective formula in float32: its error against the "
    "model is that of a correct pipeline (one bound), doubled for the model's own double "
    "evaluation and the defect's change of the chain"};
inline constexpr budget diagnosis_effect_share{
    "diagnosis_effect_share", 1.0 / 64,
    "plus this share of the defect's effect |model - exact|: the kernel rounds the defective "
    "quantities (a wrong divisor, an eps term) once more than the model"};
inline constexpr budget diagnosis_magnitude_share{
    "diagnosis_magnitude_share", 0.5,
    "order-dependent roundings (float16/bfloat16 sums, one-pass variance) are modelled in one "
    "order: a kernel summing in another lies within half the effect of the model"};
inline constexpr budget diagnosis_magnitude_ratio{
    "diagnosis_magnitude_ratio", 4,
    "and the largest deviation of a failed output within this factor of the model's: the same "
    "narrowing in another order, not a defect of another size"};
inline constexpr budget diagnosis_class_bits{
    "diagnosis_class_bits", 8,
    "where the golden is judged by class (undefined, infinite), model and kernel values agree to "
    "this many bits: no bound exists there, and the class match is the evidence"};
inline constexpr budget diagnosis_listed_share{
    "diagnosis_listed_share", 0.25,
    "a class is listed beside the first when it explains at least this share of what the first "
    "explains"};
}  // namespace budgets

// Every budget, in the order `bnoracle budgets` prints them.
inline constexpr std::array<const budget*, 27> k_budget_table{{
    &budgets::mean_division,
    &budgets::var_pointwise,
    &budgets::var_mean_coupling,
    &budgets::rsqrt,
    &budgets::fwd_apply,
    &budgets::fwd_scale_shift,
    &budgets::fwd_beta,
    &budgets::running_update,
    &budgets::momentum_conversion,
    &budgets::bessel,
    &budgets::bwd_apply,
    &budgets::bwd_dot,
    &budgets::gamma_product,
    &budgets::copies_average,
    &budgets::underflow,
    &budgets::narrow_rounding,
    &budgets::narrow_statistics,
    &budgets::cast_before_weight,
    &budgets::standard_lambda,
    &budgets::double_evaluation,
    &budgets::bound_slack,
    &budgets::diagnosis_bound_factor,
    &budgets::diagnosis_effect_share,
    &budgets::diagnosis_magnitude_share,
    &budgets::diagnosis_magnitude_ratio,
    &budgets::diagnosis_class_bits,
    &budgets::diagnosis_listed_share,
}};

// The budget table (docs/error-model.md explains each entry), and one entry by name (throws
// std::logic_error for an unknown name).
[[nodiscard]] std::span<const budget* const> budget_table();
[[nodiscard]] double budget_value(std::string_view name);

// g(L) of a level: the summation error of L terms in units of u·Σ|term|.
[[nodiscard]] double summation_factor(accuracy_level level, std::int64_t L);

// Bounds of folding into a preceding layer (docs/error-model.md, "Folding"): W' = W·γ·r and
// b' = (b − μ)·γ·r + β with r = 1/sqrt(var + ε) computed in float32.
[[nodiscard]] double fold_weight_bound(double w, double gamma, double var, double eps);
[[nodiscard]] double fold_bias_bound(double b, double mu, double gamma, double beta, double var,
                                     double eps);

// Bounds of a SyncBN merge of K shards of one channel (docs/error-model.md, "SyncBN"): the
// merged mean, biased variance and invstd, given the shards' counts, means and variances.
struct syncbn_bounds {
  double mean = 0, var = 0, invstd = 0;
};
[[nodiscard]] syncbn_bounds syncbn_merge_bounds(std::span<const std::int64_t> counts,
                                                std::span<const double> means,
                                                std::span<const double> vars, double eps,
                                                accuracy_level level);

// Bounds of the running statistics' update new = (1 − f)·old + f·batch (docs/error-model.md,
// "Running statistics"), from the batch's (or a merge's) mean μ and biased variance with their
// own bounds, the new-value factor f and the variance's Bessel factor k (1: none). Forward
// training and the SyncBN merge use the same formulas.
struct running_bounds {
  double mean = 0, var = 0;
};
[[nodiscard]] running_bounds running_update_bounds(double f, double old_mean, double old_var,
                                                   double mu, double var, double mean_bound,
                                                   double var_bound, double k);

// Per-element absolute bounds for every output of a reference, at every level.
class error_model {
 public:
  // `ref` and `in` must be the reference and the inputs of the case; `ref` must outlive this.
  error_model(const reference& ref, const bn_inputs& in, data_tier tier);

  // Absolute bound |kernel − exact| for element `index` of output `id` (any output of a
  // normalization mode; folding's have their own bounds below), for a golden of class finite or
  // overflow (other classes are judged by class, not magnitude). +Inf where the statistics of
  // the channel are not finite.
  [[nodiscard]] double bound(output_id id, std::int64_t index, accuracy_level level) const;
  // The same by the output's name; throws std::out_of_range for a name that is no output.
  [[nodiscard]] double bound(std::string_view name, std::int64_t index, accuracy_level level) const;
  // The bounds of element `index` at every level, indexed by accuracy_level (what the judge
  // needs for each element; the element is located once).
  [[nodiscard]] std::array<double, 3> bounds(output_id id, std::int64_t index) const;
  // The same for elements [from, to), into out[0 .. to − from): a per-element output is walked
  // in index order, with the terms its elements' bounds share computed once per statistic group
  // (the result is bit for bit that of bounds(id, i) for each i).
  void bounds(output_id id, std::int64_t from, std::int64_t to,
              std::span<std::array<double, 3>> out) const;

  // Per-channel quantities the bounds are made of (in double), exposed for reports and tests.
  struct channel_terms {
    double L = 0;
    double mean_abs_x = 0;  // Σ|x|/L
    double mu = 0;          // batch mean (training) or running mean (inference)
    double var = 0;         // biased batch variance or running variance
    double w = 0;           // var + ε
    double r = 0;           // 1/sqrt(w)
    double gamma = 1, beta = 0;
    double mean_abs_dy = 0;            // Σ|dy|/L
    double m1 = 0;                     // Σdy/L
    double m2 = 0;                     // Σdy·x̂/L
    double mean_abs_dy_xhat = 0;       // Σ|dy·x̂|/L
    double mean_abs_dy_dev = 0;        // Σ|dy·(x − μ)|/L
    double old_mean = 0, old_var = 0;  // running state before the step
    bool stats_defined = false;        // finite batch statistics (the running ones need no more)
    bool defined = false;              // finite statistics and w > 0
    bool r_defined = false;            // r known: defined, or in inference a usable variance
  };
  [[nodiscard]] const channel_terms& channel(std::int64_t c) const {
    return terms_[static_cast<std::size_t>(c)];
  }

 private:
  // The float32 pipeline's bound, the extra roundings of the cast-before-weight convention (given
  // the pipeline's bound of the same element), and
  // a double approximation of the exact value (its error far below the pipeline's bound), which
  // bound() combines with the final rounding to the output's format.
  // `located`: the element's position when the caller has it (per-element outputs), else null.
  [[nodiscard]] double bound(output_id id, std::int64_t index, accuracy_level level,
                             const reduction_map::position* located) const;
  [[nodiscard]] double pipeline_bound(output_id id, std::int64_t index, accuracy_level level,
                                      const reduction_map::position* located) const;
  // What the bound of an element of a per-element output (dst, diff_src) reads from the inputs.
  struct element_inputs {
    std::int64_t group = 0;
    double x = 0, dy = 0, gamma = 0, beta = 0;  // γ and β as applied to the element
  };
  [[nodiscard]] element_inputs element_at(const reduction_map::position& at) const;
  struct level_terms;
  // The terms every per-element bound of a statistic group shares at a level (the same
  // expressions the per-element formulas would evaluate, evaluated once).
  struct element_constants {
    const channel_terms* t = nullptr;
    const level_terms* lt = nullptr;
    double r_dmu = 0;  // r·δμ
    // Backward training's dx: |m1|, |m2|, their errors, |m2|·r·δμ, s·r, and the underflow
    // chain's factors 2(1 + s)(1 + r), 1 + √L and r + mean|g|.
    double am1 = 0, am2 = 0, dm1 = 0, dm2 = 0, am2_r_dmu = 0, scale_r = 0;
    double eta_chain = 0, eta_sqrt_l = 0, m2_underflow = 0;
  };
  [[nodiscard]] element_constants element_constants_of(std::int64_t group,
                                                       accuracy_level level) const;
  [[nodiscard]] double element_pipeline_bound(output_id id, const element_inputs& e,
                                              accuracy_level level) const;
  // The pipeline's bounds of an element at the levels lo..hi (indexed by accuracy_level; the
  // others are left +Inf), from the group's constants at those levels.
  [[nodiscard]] std::array<double, 3> element_pipeline_bounds(
      output_id id, const element_inputs& e, const std::array<element_constants, 3>& k,
      std::size_t lo, std::size_t hi) const;
  // The pipeline's bound `b` of an element completed with the cast-before-weight roundings and
  // the rounding to a narrow output format; `estimated` caches |estimate| across levels.
  [[nodiscard]] double finish_bound(output_id id, std::int64_t index, accuracy_level level,
                                    double b, const reduction_map::position* located,
                                    std::optional<double>& estimated) const;
  [[nodiscard]] double cast_bound(output_id id, std::int64_t index, accuracy_level level,
                                  double pipeline) const;
  [[nodiscard]] double estimate(output_id id, std::int64_t index,
                                const reduction_map::position* located) const;
  [[nodiscard]] double stat_factor(accuracy_level level, std::int64_t n) const;
  [[nodiscard]] double rho_of(const channel_terms& t, double g) const;
  [[nodiscard]] double running_mean_bound(const channel_terms& t, double g) const;
  [[nodiscard]] double running_var_bound(const channel_terms& t, double g) const;
  [[nodiscard]] double averaged_running_bound(output_id id, std::int64_t c,
                                              accuracy_level level) const;
  [[nodiscard]] double param_bound(output_id id, std::int64_t j, accuracy_level level) const;
  [[nodiscard]] double gamma_of(std::int64_t j) const;  // γ as applied (1 + w: weight offset)
  [[nodiscard]] double beta_of(std::int64_t j) const;
  [[nodiscard]] double element_gamma(std::int64_t logical) const;  // 1 where γ is uniform
  [[nodiscard]] double mean_error(const channel_terms& t, double g) const;
  [[nodiscard]] double var_error(const channel_terms& t, double g) const;
  [[nodiscard]] double rsqrt_rel_error(const channel_terms& t, double g) const;

  const reference* ref_;
  bn_inputs in_;
  data_tier tier_;
  double eps_;
  double factor_ = 0;  // weight of the new value in the running update
  bool centred_ = true;
  bool uniform_ = true;              // γ is the same over every statistic group (or absent)
  bool training_ = false;            // forward or backward training: batch statistics
  bool cast_before_weight_ = false;  // the op rounds x̂ to the data type before ×γ
  // The format of each output, indexed by output_id.
  std::array<const float_format*, static_cast<std::size_t>(output_id::bias) + 1> output_formats_{};
  // The statistics format backward training reads its saved statistics in, when not float32.
  const float_format* saved_format_ = nullptr;
  std::vector<channel_terms> terms_;
  // Per group and level (indexed by accuracy_level): the summation factors of the statistics
  // (g) and of the dot products (g_dot), the mean's error and r's relative error.
  struct level_terms {
    double g = 0, g_dot = 0, dmu = 0, rho = 0;
  };
  std::vector<std::array<level_terms, 3>> level_terms_;
};

}  // namespace bnoracle
