// The error model: how far a numerically sound float32 kernel may be from the exact value.
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

// One entry of the budget table: a count of roundings (in units of u = 2^-24) or a factor, with
// the reason it has that value. Every constant of the model is here and nowhere else.
struct budget {
  std::string_view name;
  double value;
  std::string_view why;
};

// The budget table (docs/error-model.md explains each entry).
[[nodiscard]] std::span<const budget> budget_table();
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

// Per-element absolute bounds for every output of a reference, at every level.
class error_model {
 public:
  // `ref` and `in` must be the reference and the inputs of the case; `ref` must outlive this.
  error_model(const reference& ref, const bn_inputs& in, data_tier tier);

  // Absolute bound |kernel − exact| for element `index` of output `name` ("dst", "mean", "var",
  // "invstd", "running_mean", "running_var", "diff_src", "diff_gamma", "diff_beta"), for a golden
  // of class finite or overflow (other classes are judged by class, not magnitude). +Inf where
  // the statistics of the channel are not finite.
  [[nodiscard]] double bound(std::string_view name, std::int64_t index, accuracy_level level) const;

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
  };
  [[nodiscard]] const channel_terms& channel(std::int64_t c) const {
    return terms_[static_cast<std::size_t>(c)];
  }

 private:
  [[nodiscard]] double mean_error(const channel_terms& t, double g) const;
  [[nodiscard]] double var_error(const channel_terms& t, double g) const;
  [[nodiscard]] double rsqrt_rel_error(const channel_terms& t, double g) const;

  const reference* ref_;
  bn_inputs in_;
  data_tier tier_;
  double eps_;
  double factor_ = 0;  // weight of the new value in the running update
  std::vector<channel_terms> terms_;
};

}  // namespace bnoracle
