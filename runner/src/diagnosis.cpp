#include "bnoracle/diagnosis.hpp"

#include "bnoracle/convention.hpp"
#include "bnoracle/format.hpp"
#include "bnoracle/reduction.hpp"
#include "bnoracle/runner.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

namespace bnoracle {

namespace {

constexpr std::array<defect_class, 20> k_classes{{
    {"variance_estimator", "the biased and unbiased variance estimators swapped"},
    {"element_count", "a mean or variance divided by the wrong element count"},
    {"momentum", "the running average weighed wrongly (momentum or cumulative counter)"},
    {"running_update", "the running statistics not updated as the convention says"},
    {"epsilon", "ε in the wrong place (outside the square root, a floor, ignored, dropped)"},
    {"one_pass_variance", "a one-pass variance E[x²] − E[x]² that cancels"},
    {"narrowed_precision", "a value or an accumulator narrowed to float16 or bfloat16"},
    {"tail", "a dropped or double-counted tail of a vectorized or blocked loop"},
    {"layout", "strides or the memory layout ignored"},
    {"reduction_scope", "statistics over the wrong elements (instance, example or channel mix-up)"},
    {"train_eval", "training and inference confused"},
    {"backward_formula", "a term of the backward pass wrong or missing"},
    {"weight_offset", "the (1 + w) weight offset applied wrongly"},
    {"degenerate_batch", "a degenerate batch (one value, no value) handled against the convention"},
    {"non_finite", "NaN or Inf propagated wrongly"},
    {"overflow", "an intermediate overflows or underflows where the result would not"},
    {"wrong_op", "another member of the family computed (layer norm in place of RMS norm)"},
    {"syncbn_merge", "the SyncBN merge of shard statistics wrong"},
    {"folding", "batch norm folded into the preceding layer wrongly"},
    {"nondeterminism", "results that change from run to run (reduction order)"},
}};

// ---- The defect model ---------------------------------------------------------------------------

enum class count_rule : std::uint8_t {
  exact,
  batch_extent,
  padded16,
  float16,
  backward_last_extent
};
enum class var_rule : std::uint8_t {
  two_pass,
  unbiased,
  one_pass,
  one_pass_clamped,
  sums_in_half,
  squares_in_half,
  squares_flushed,
  masked_lanes_centred,
  centred_rms,
};
enum class eps_rule : std::uint8_t { inside, outside_sqrt, floor, default_1e5, dropped };
enum class running_rule : std::uint8_t {
  normal,
  not_updated,
  momentum_swapped,
  estimator_swapped,
  bessel_of_batch_extent,
  includes_eps,
  narrowed,
  cumulative_before_increment,
  counter_per_channel,
  first_instance,
  batch_stats,
  empty_nan,
};
enum class scope_rule : std::uint8_t { group, instance, first_example, carried_sum, skip_nan };
enum class read_rule : std::uint8_t { strided, dense, dy_dense, normalize_dense, stats_nc_dense };
enum class backward_rule : std::uint8_t {
  normal,
  drop_stats,
  drop_mean,
  projection_with_dy,
  first_gamma,
  mean_term_added,
  invstd_as_var,
  offset_missing,
  sums_in_bf16,
  odd_tail_dropped,
};
enum class dgamma_rule : std::uint8_t {
  normal,
  uncentred,
  uncentred_dx_too,
  last_row,
  terms_bf16,
  accumulated_bf16,
};
enum class weight_rule : std::uint8_t { normal, offset_missing, offset_doubled, offset_bf16 };

struct knobs {
  count_rule count = count_rule::exact;
  bool count_in_var = true;  // the count rule divides the variance too (not only the mean)
  var_rule var = var_rule::two_pass;
  eps_rule eps = eps_rule::inside;
  running_rule running = running_rule::normal;
  bool running_includes_eps_after_bessel = false;
  scope_rule scope = scope_rule::group;
  read_rule read = read_rule::strided;
  backward_rule backward = backward_rule::normal;
  dgamma_rule dgamma = dgamma_rule::normal;
  weight_rule weight = weight_rule::normal;
  int tail_drop = 0;    // the statistics skip the last L mod k elements of a group
  int tail_double = 0;  // the last full k-vector counted twice when L mod k != 0
  bool eval_batch_stats = false;
  bool backward_eval_training = false;  // backward inference: the training gradient
  bool xhat_narrowed = false;           // x̂ rounded to bfloat16 before γ
  bool saved_narrowed = false;          // saved statistics rounded to the data type (float16)
  bool zero_variance_nan = false;
  bool nan_poisons_all = false;
};

struct hypothesis {
  std::string_view cls;
  std::string_view evidence;
  knobs k;
  bool approximate = false;
};

double narrow(const float_format& f, double v) {
  return static_cast<double>(round_to_format(f, static_cast<float>(v)));
}

// The format a narrowed statistic takes: the data type's when it is narrow, else float16.
const float_format& narrow_format(const bn_problem& p) {
  return p.types.data == format_id::float32 ? k_float16 : format_of(p.types.data);
}

// Sum of `v` accumulated in format f, in order, rounded after every addition.
double sum_in(const float_format& f, const std::vector<double>& v) {
  double acc = 0;
  for (const double t : v) acc = narrow(f, acc + t);
  return acc;
}

struct group_stats {
  double mean = 0, var = 0, r = 0, count = 0;
  double running_var = 0;  // the variance the running update takes (before its correction)
  bool finite = true;
};

// The model of one call with a defect: every output in double, or empty where the model does not
// predict it.
struct prediction {
  std::array<std::optional<std::vector<double>>, k_output_table.size()> out;
  std::optional<std::int64_t> num_batches_tracked;
  std::vector<double>& at(output_id id, std::size_t n) {
    auto& o = out[static_cast<std::size_t>(id)];
    if (!o) o.emplace(n, 0.0);
    return *o;
  }
};

class defect_model {
 public:
  defect_model(const reference& ref, const bn_inputs& in, bool affine)
      : ref_(ref), in_(in), affine_(affine), map_(ref.map()), geo_(ref.geom()), p_(ref.problem()) {
    // Where every element lives, once for all the hypotheses.
    const std::int64_t E = geo_.elements();
    off_.resize(static_cast<std::size_t>(E));
    grp_.resize(static_cast<std::size_t>(E));
    par_.resize(static_cast<std::size_t>(E));
    for (std::int64_t i = 0; i < E; ++i) {
      const reduction_map::position at = map_.locate(i);
      off_[static_cast<std::size_t>(i)] = at.offset;
      grp_[static_cast<std::size_t>(i)] = at.group;
      par_[static_cast<std::size_t>(i)] = map_.param_of(i);
    }
    const std::int64_t L = map_.group_size();
    members_.resize(static_cast<std::size_t>(map_.groups() * L));
    for (std::int64_t g = 0; g < map_.groups(); ++g) {
      for (std::int64_t j = 0; j < L; ++j)
        members_[static_cast<std::size_t>(g * L + j)] = map_.member(g, j);
    }
  }

  // Whether the hypothesis can change anything in this call: one that cannot would predict the
  // correct outputs, which never explain a failure, so it is not evaluated.
  [[nodiscard]] bool applies(const knobs& k) const {
    const bn_mode m = ref_.mode();
    const bool forward_training = m == bn_mode::forward_training;
    const bool backward = m == bn_mode::backward_training || m == bn_mode::backward_inference;
    const bool running = forward_training && !in_.running_mean.empty();
    if (k.running != running_rule::normal && !running) return false;
    if ((k.backward != backward_rule::normal || k.dgamma != dgamma_rule::normal) && !backward) {
      return false;
    }
    if (k.count == count_rule::backward_last_extent && m != bn_mode::backward_training)
      return false;
    if (k.eval_batch_stats && m != bn_mode::forward_inference) return false;
    if (k.backward_eval_training && m != bn_mode::backward_inference) return false;
    if (k.weight != weight_rule::normal && !p_.op.weight_offset) return false;
    if ((k.xhat_narrowed || k.nan_poisons_all || k.zero_variance_nan) && backward) return false;
    if (k.saved_narrowed && (m == bn_mode::forward_inference || m == bn_mode::backward_inference)) {
      return false;
    }
    if (k.read == read_rule::dy_dense && !backward) return false;
    if (k.read != read_rule::strided) {
      // Reading dense NCHW changes nothing where every element already sits at its logical index.
      bool dense = true;
      for (std::size_t i = 0; i < off_.size() && dense; ++i) {
        dense = off_[i] == static_cast<std::int64_t>(i);
      }
      if (dense) return false;
    }
    return true;
  }

  // nullopt: the hypothesis does not apply to this problem.
  [[nodiscard]] std::optional<prediction> predict(const knobs& k) const {
    const std::int64_t E = geo_.elements();
    const std::int64_t G = map_.groups();
    const std::int64_t L = map_.group_size();
    const bn_mode m = ref_.mode();
    const bool backward = m == bn_mode::backward_training || m == bn_mode::backward_inference;
    const bool bn = p_.op.kind == op_kind::batch_norm;
    const bool centred = p_.op.centred;
    if (E == 0 && k.running != running_rule::empty_nan) return std::nullopt;
    if (k.scope == scope_rule::first_example && (bn || geo_.n() < 2)) return std::nullopt;
    if (k.backward == backward_rule::offset_missing &&
        (!p_.op.weight_offset || !affine_ || in_.gamma.empty())) {
      return std::nullopt;
    }
    const bool group_sums =  // dγ and dβ from the per-group sums (batch norm's backward defects)
        k.backward == backward_rule::sums_in_bf16 || k.backward == backward_rule::odd_tail_dropped;
    if (group_sums && !bn) return std::nullopt;

    // Inputs, read as the hypothesis reads them.
    const bool dense_all = k.read == read_rule::dense || k.read == read_rule::normalize_dense;
    if ((k.read != read_rule::strided) && (geo_.min_offset() < 0 || geo_.max_offset() + 1 < E)) {
      return std::nullopt;
    }
    // A read at an offset that holds no element (the padding of a strided view) gets what the
    // kernel's buffer holds there: invoke() marks padding with a NaN.
    std::vector<bool> holds;
    if (k.read != read_rule::strided) {
      holds.assign(static_cast<std::size_t>(geo_.max_offset() + 1), false);
      for (std::int64_t i = 0; i < E; ++i)
        holds[static_cast<std::size_t>(off_[static_cast<std::size_t>(i)])] = true;
    }
    auto read = [&holds](const float* base, std::int64_t off) {
      if (!holds.empty() && !holds[static_cast<std::size_t>(off)]) return std::nan("");
      return static_cast<double>(base[off]);
    };
    std::vector<double> x(static_cast<std::size_t>(E)), dy;
    std::vector<double> xs;  // what the statistics read
    for (std::int64_t i = 0; i < E; ++i) {
      const std::int64_t off = off_[static_cast<std::size_t>(i)];
      x[static_cast<std::size_t>(i)] = read(in_.src, k.read == read_rule::dense ? i : off);
    }
    if (k.read == read_rule::normalize_dense || k.read == read_rule::stats_nc_dense) xs = x;
    if (k.read == read_rule::normalize_dense) {
      for (std::int64_t i = 0; i < E; ++i) x[static_cast<std::size_t>(i)] = read(in_.src, i);
    }
    if (k.read == read_rule::stats_nc_dense) {
      if (geo_.spatial_size() != 1) return std::nullopt;
      for (std::int64_t i = 0; i < E; ++i) {
        const auto at = geo_.coordinates_of(i);
        const std::int64_t off = at.n * geo_.strides()[0] + at.c;
        if (off < geo_.min_offset() || off > geo_.max_offset()) return std::nullopt;
        xs[static_cast<std::size_t>(i)] = read(in_.src, off);
      }
    }
    const std::vector<double>& xstat = xs.empty() ? x : xs;
    if (backward) {
      dy.resize(static_cast<std::size_t>(E));
      for (std::int64_t i = 0; i < E; ++i) {
        const std::int64_t off = off_[static_cast<std::size_t>(i)];
        const bool dense = dense_all || k.read == read_rule::dy_dense;
        dy[static_cast<std::size_t>(i)] = read(in_.diff_dst, dense ? i : off);
      }
    }

    auto gamma_fwd = [&](std::int64_t i) -> double {
      if (!affine_ || in_.gamma.empty()) return 1.0;
      const double w = static_cast<double>(
          in_.gamma[static_cast<std::size_t>(par_[static_cast<std::size_t>(i)])]);
      if (!p_.op.weight_offset) return w;
      switch (k.weight) {
        case weight_rule::offset_missing:
          return w;
        case weight_rule::offset_doubled:
          return 2.0 + w;
        case weight_rule::offset_bf16:
          return narrow(k_bfloat16, 1.0 + w);
        case weight_rule::normal:
          break;
      }
      return 1.0 + w;
    };
    auto gamma_bwd = [&](std::int64_t i) -> double {
      if (k.backward == backward_rule::offset_missing) {
        return static_cast<double>(
            in_.gamma[static_cast<std::size_t>(par_[static_cast<std::size_t>(i)])]);
      }
      if (k.backward == backward_rule::first_gamma)
        return gamma_fwd(member(grp_[static_cast<std::size_t>(i)], 0));
      return gamma_fwd(i);
    };
    auto beta = [&](std::int64_t i) -> double {
      if (!affine_ || in_.beta.empty()) return 0.0;
      return static_cast<double>(
          in_.beta[static_cast<std::size_t>(par_[static_cast<std::size_t>(i)])]);
    };

    // Statistics of every group.
    std::vector<group_stats> st(static_cast<std::size_t>(G));
    double carried = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      std::vector<double> v;
      v.reserve(static_cast<std::size_t>(L));
      for (std::int64_t j = 0; j < L; ++j)
        v.push_back(xstat[static_cast<std::size_t>(member(g, j))]);
      st[static_cast<std::size_t>(g)] = stats_of(v, k, &carried);
    }
    // A found-non-finite flag shared by the call: every output element NaN, the statistics kept.
    const bool poisoned =
        k.nan_poisons_all && m == bn_mode::forward_training &&
        std::any_of(st.begin(), st.end(), [](const group_stats& s) { return !s.finite; });
    // What forward training saves, and what backward training reads back.
    std::vector<group_stats> saved = st;
    if (k.saved_narrowed) {
      const float_format& f = narrow_format(p_);
      for (auto& s : saved) {
        s.mean = narrow(f, s.mean);
        s.var = narrow(f, s.var);
        s.r = narrow(f, s.r);
      }
    }

    // The statistics that normalize element i.
    auto norm_stats = [&](std::int64_t i) -> group_stats {
      const std::int64_t g = grp_[static_cast<std::size_t>(i)];
      switch (k.scope) {
        case scope_rule::instance: {
          // Batch norm normalizing each (n, c) by its spatial positions.
          const std::int64_t S = geo_.spatial_size();
          const std::int64_t u = i / S;
          std::vector<double> v(x.begin() + u * S, x.begin() + (u + 1) * S);
          knobs plain;
          plain.eps = k.eps;
          return stats_of(v, plain, nullptr);
        }
        case scope_rule::first_example: {
          const std::int64_t per_example = G / std::max<std::int64_t>(1, geo_.n());
          return st[static_cast<std::size_t>(g % per_example)];
        }
        default:
          return st[static_cast<std::size_t>(g)];
      }
    };

    prediction out;
    auto inference_stats = [&](std::int64_t i) -> group_stats {
      const std::int64_t g = grp_[static_cast<std::size_t>(i)];
      if (k.eval_batch_stats) return st[static_cast<std::size_t>(g)];
      const auto e = static_cast<std::size_t>(map_.running_entry(g));
      group_stats s;
      s.mean = centred ? static_cast<double>(in_.running_mean[e]) : 0.0;
      s.var = static_cast<double>(in_.running_var[e]);
      s.r = invstd(s.var, k);
      return s;
    };

    if (m == bn_mode::forward_training || m == bn_mode::forward_inference) {
      if (k.scope == scope_rule::instance && !bn) return std::nullopt;
      auto& y = out.at(output_id::dst, static_cast<std::size_t>(E));
      for (std::int64_t i = 0; i < E; ++i) {
        const group_stats s = m == bn_mode::forward_training ? norm_stats(i) : inference_stats(i);
        double xhat = (x[static_cast<std::size_t>(i)] - s.mean) * s.r;
        if (k.zero_variance_nan && s.var == 0) xhat = std::nan("");
        if (k.xhat_narrowed) xhat = narrow(k_bfloat16, xhat);
        y[static_cast<std::size_t>(i)] = poisoned ? std::nan("") : gamma_fwd(i) * xhat + beta(i);
      }
      if (k.read == read_rule::dense || k.read == read_rule::normalize_dense) relayout(y);
    }
    if (m == bn_mode::forward_training) {
      auto& mean = out.at(output_id::mean, static_cast<std::size_t>(G));
      auto& var = out.at(output_id::var, static_cast<std::size_t>(G));
      auto& r = out.at(output_id::invstd, static_cast<std::size_t>(G));
      for (std::int64_t g = 0; g < G; ++g) {
        const group_stats& s = saved[static_cast<std::size_t>(g)];
        mean[static_cast<std::size_t>(g)] = s.mean;
        var[static_cast<std::size_t>(g)] = s.var;
        r[static_cast<std::size_t>(g)] = s.r;
      }
      if (!in_.running_mean.empty()) {
        if (!predict_running(k, st, out)) return std::nullopt;
      }
    }
    if (backward) {
      const bool eval = m == bn_mode::backward_inference && !k.backward_eval_training;
      auto& dx = out.at(output_id::diff_src, static_cast<std::size_t>(E));
      const auto P = static_cast<std::size_t>(map_.params());
      std::vector<std::vector<double>> dgamma_terms(P);
      std::vector<double> group_dgamma(static_cast<std::size_t>(G)),
          group_dbeta(static_cast<std::size_t>(G));
      for (std::int64_t g = 0; g < G; ++g) {
        group_stats s = eval                                   ? inference_stats(member(g, 0))
                        : k.scope == scope_rule::first_example ? norm_stats(member(g, 0))
                                                               : saved[static_cast<std::size_t>(g)];
        if (k.backward == backward_rule::invstd_as_var) s.r = 1.0 / std::sqrt(s.r + p_.eps);
        double count = static_cast<double>(L);
        if (k.count == count_rule::backward_last_extent) {
          if (p_.op.kind != op_kind::group_norm || geo_.spatial().size() < 2) return std::nullopt;
          count = static_cast<double>(L / geo_.spatial_size() * geo_.spatial().back());
        }
        std::int64_t used = L;
        if (k.backward == backward_rule::odd_tail_dropped) used = L - L % 2;
        std::vector<double> dys, dyx;
        double sum_g = 0, sum_gx = 0, sum_dyx = 0;
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t i = member(g, j);
          const double d = dy[static_cast<std::size_t>(i)];
          const double xhat = (x[static_cast<std::size_t>(i)] - s.mean) * s.r;
          const double gi = gamma_bwd(i) * d;
          if (j < used) {
            sum_g += gi;
            sum_gx += gi * xhat;
            sum_dyx += d * xhat;
            dys.push_back(d);
            dyx.push_back(d * (x[static_cast<std::size_t>(i)] - s.mean));
          }
          const auto pj = static_cast<std::size_t>(par_[static_cast<std::size_t>(i)]);
          if (P > 0) {
            const double term =
                k.dgamma == dgamma_rule::uncentred || k.dgamma == dgamma_rule::uncentred_dx_too
                    ? d * x[static_cast<std::size_t>(i)] * s.r
                    : d * xhat;
            dgamma_terms[pj].push_back(
                k.dgamma == dgamma_rule::terms_bf16 ? narrow(k_bfloat16, term) : term);
          }
        }
        if (group_sums) {
          double sdy = 0, sdyx = 0;
          if (k.backward == backward_rule::sums_in_bf16) {
            sdy = sum_in(k_bfloat16, dys);
            sdyx = sum_in(k_bfloat16, dyx);
          } else {
            for (const double t : dys) sdy += t;
            for (const double t : dyx) sdyx += t;
          }
          const double gam = gamma_bwd(member(g, 0));
          sum_g = gam * sdy;
          sum_gx = gam * s.r * sdyx;
          group_dgamma[static_cast<std::size_t>(g)] = s.r * sdyx;
          group_dbeta[static_cast<std::size_t>(g)] = sdy;
        }
        if (k.dgamma == dgamma_rule::uncentred_dx_too) {
          if (!map_.uniform_params()) return std::nullopt;
          double su = 0;
          for (std::int64_t j = 0; j < used; ++j) {
            const std::int64_t i = member(g, j);
            su += dy[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(i)] * s.r;
          }
          sum_gx = gamma_bwd(member(g, 0)) * su;
        }
        const double mean_g = sum_g / count;
        const double proj =
            (k.backward == backward_rule::projection_with_dy ? sum_dyx : sum_gx) / count;
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t i = member(g, j);
          const double d = dy[static_cast<std::size_t>(i)];
          const double gi = gamma_bwd(i) * d;
          const double xhat = (x[static_cast<std::size_t>(i)] - s.mean) * s.r;
          double v = 0;
          if (eval || k.backward == backward_rule::drop_stats) {
            v = s.r * gi;
          } else {
            const bool mean_term = centred ? k.backward != backward_rule::drop_mean
                                           : k.backward == backward_rule::mean_term_added;
            v = s.r * (gi - (mean_term ? mean_g : 0.0) - xhat * proj);
          }
          dx[static_cast<std::size_t>(i)] = v;
        }
      }
      if (k.read == read_rule::dense) relayout(dx);
      if (affine_ && P > 0) {
        auto& dg = out.at(output_id::diff_gamma, P);
        auto& db = out.at(output_id::diff_beta, P);
        for (std::size_t pj = 0; pj < P; ++pj) {
          const std::vector<double>& t = dgamma_terms[pj];
          double sum = 0;
          if (k.dgamma == dgamma_rule::accumulated_bf16) {
            sum = sum_in(k_bfloat16, t);
          } else if (k.dgamma == dgamma_rule::last_row) {
            // Only the last statistic group's contribution to this entry.
            const std::size_t per =
                t.size() / static_cast<std::size_t>(std::max<std::int64_t>(1, groups_per_param()));
            for (std::size_t q = t.size() - per; q < t.size(); ++q) sum += t[q];
          } else {
            for (const double v : t) sum += v;
          }
          dg[pj] = sum;
        }
        for (std::int64_t i = 0; i < E; ++i) {
          db[static_cast<std::size_t>(par_[static_cast<std::size_t>(i)])] +=
              dy[static_cast<std::size_t>(i)];
        }
        if (group_sums) {
          dg = group_dgamma;
          db = group_dbeta;
        }
      }
    }
    return out;
  }

 private:
  // How many statistic groups share one γ/β entry.
  [[nodiscard]] std::int64_t groups_per_param() const {
    if (map_.op().kind == op_kind::batch_norm) return 1;
    if (map_.op().params == param_placement::per_normalized_element) return map_.groups();
    return geo_.n();  // group and instance norm: one group per example
  }

  [[nodiscard]] double invstd(double var, const knobs& k) const {
    switch (k.eps) {
      case eps_rule::outside_sqrt:
        return 1.0 / (std::sqrt(var) + p_.eps);
      case eps_rule::floor:
        return 1.0 / std::sqrt(std::max(var, p_.eps));
      case eps_rule::default_1e5:
        return 1.0 / std::sqrt(var + 1e-5);
      case eps_rule::dropped:
        return 1.0 / std::sqrt(var);
      case eps_rule::inside:
        break;
    }
    return 1.0 / std::sqrt(var + p_.eps);
  }

  // The statistics of one group's values, with the hypothesis's defects. `carry` (the Σx of the
  // previous group, updated) for the accumulator that is never reset.
  [[nodiscard]] group_stats stats_of(std::vector<double> v, const knobs& k, double* carry) const {
    group_stats s;
    const auto L = static_cast<std::int64_t>(v.size());
    const bool centred = p_.op.centred || k.var == var_rule::centred_rms;
    for (const double t : v) {
      if (!std::isfinite(t)) s.finite = false;
    }
    // Which elements the sums see.
    std::vector<double> seen = v;
    if (k.tail_drop > 0) seen.resize(static_cast<std::size_t>(L - L % k.tail_drop));
    if (k.tail_double > 0 && L % k.tail_double != 0 && L > k.tail_double) {
      const std::int64_t start = (L / k.tail_double - 1) * k.tail_double;
      for (std::int64_t j = start; j < start + k.tail_double; ++j)
        seen.push_back(v[static_cast<std::size_t>(j)]);
    }
    double n = static_cast<double>(v.size());
    switch (k.count) {
      case count_rule::batch_extent:
        n = static_cast<double>(geo_.n());
        break;
      case count_rule::padded16:
        n = static_cast<double>((L + 15) / 16 * 16);
        break;
      case count_rule::float16:
        n = narrow(k_float16, n);
        break;
      default:
        break;
    }
    const double n_var = k.count_in_var ? n : static_cast<double>(v.size());
    s.count = n;
    // skip_nan: a NaN term of a sum is skipped as a padding lane would be (the count stays L).
    const bool skip_nan = k.scope == scope_rule::skip_nan;
    double s1 = 0;
    for (const double t : seen) s1 += skip_nan && std::isnan(t) ? 0.0 : t;
    if (k.scope == scope_rule::carried_sum && carry != nullptr) {
      s1 += *carry;
      *carry = s1;
    }
    if (k.var == var_rule::sums_in_half) s1 = sum_in(k_float16, seen);
    s.mean = centred ? s1 / n : 0.0;
    double m2 = 0;
    switch (k.var) {
      case var_rule::one_pass:
      case var_rule::one_pass_clamped: {
        float a = 0, b = 0;
        for (const double t : seen) {
          const auto f = static_cast<float>(t);
          a += f;
          b += f * f;
        }
        const float mu = a / static_cast<float>(n);
        float var = b / static_cast<float>(n) - mu * mu;
        if (k.var == var_rule::one_pass_clamped) var = std::max(var, 0.0F);
        s.mean = centred ? static_cast<double>(mu) : 0.0;
        s.var = s.running_var = static_cast<double>(var);
        s.r = invstd(s.var, k);
        return s;
      }
      case var_rule::sums_in_half: {
        std::vector<double> sq;
        for (const double t : seen) sq.push_back((t - s.mean) * (t - s.mean));
        m2 = sum_in(k_float16, sq);
        break;
      }
      case var_rule::squares_in_half:
        for (const double t : seen) m2 += narrow(k_float16, t * t);
        break;
      case var_rule::squares_flushed:
        for (const double t : seen) {
          const auto d = static_cast<float>(t - s.mean);
          const float q = d * d;
          m2 += q < std::numeric_limits<float>::min() ? 0.0 : static_cast<double>(q);
        }
        break;
      default:
        for (const double t : seen) {
          const double q = (t - s.mean) * (t - s.mean);
          m2 += skip_nan && std::isnan(q) ? 0.0 : q;
        }
        break;
    }
    if (k.var == var_rule::masked_lanes_centred && centred) {
      m2 += static_cast<double>((L + 15) / 16 * 16 - L) * s.mean * s.mean;
    }
    s.var = k.var == var_rule::unbiased ? m2 / (n_var - 1) : m2 / n_var;
    s.running_var = m2 / n_var;
    s.r = invstd(s.var, k);
    return s;
  }

  // The running statistics after the update.
  bool predict_running(const knobs& k, const std::vector<group_stats>& st, prediction& out) const {
    const auto C = static_cast<std::size_t>(map_.running_size());
    auto& rm = out.at(output_id::running_mean, C);
    auto& rv = out.at(output_id::running_var, C);
    const convention& conv = ref_.conv();
    const std::int64_t t = in_.num_batches_tracked;
    out.num_batches_tracked =
        t + (k.running == running_rule::counter_per_channel ? static_cast<std::int64_t>(C) : 1);
    const bool unbiased = (conv.running_var == variance_estimator::unbiased) !=
                          (k.running == running_rule::estimator_swapped);
    const std::int64_t G = map_.groups();
    const std::int64_t L = map_.group_size();
    for (std::size_t c = 0; c < C; ++c) {
      double f = 0;
      if (p_.momentum) {
        f = conv.weighs == momentum_weighs::new_value ? *p_.momentum : 1.0 - *p_.momentum;
        if (k.running == running_rule::momentum_swapped) f = 1.0 - f;
      } else {
        std::int64_t after = t + 1;
        if (k.running == running_rule::cumulative_before_increment)
          after = std::max<std::int64_t>(t, 1);
        if (k.running == running_rule::counter_per_channel)
          after = t + static_cast<std::int64_t>(c) + 1;
        f = 1.0 / static_cast<double>(after);
      }
      const double old_m = static_cast<double>(in_.running_mean[c]);
      const double old_v = static_cast<double>(in_.running_var[c]);
      if (k.running == running_rule::not_updated) {
        rm[c] = old_m;
        rv[c] = old_v;
        continue;
      }
      if (L == 0 || G == 0) {
        if (k.running != running_rule::empty_nan) return false;
        rm[c] = rv[c] = std::nan("");
        continue;
      }
      // The batch's mean and (corrected) variance for entry c.
      double bm = 0, bv = 0;
      auto corrected = [&](double var, double count) {
        double v = var;
        if (k.running == running_rule::includes_eps && !k.running_includes_eps_after_bessel)
          v += p_.eps;
        if (unbiased) {
          const double factor =
              k.running == running_rule::bessel_of_batch_extent
                  ? static_cast<double>(geo_.n()) / static_cast<double>(geo_.n() - 1)
                  : count / (count - 1);
          v *= factor;
        }
        if (k.running == running_rule::includes_eps && k.running_includes_eps_after_bessel)
          v += p_.eps;
        return v;
      };
      if (p_.op.kind == op_kind::batch_norm) {
        const group_stats& s = st[c];
        bm = s.mean;
        bv = corrected(s.running_var, s.count);
      } else if (k.running == running_rule::batch_stats) {
        std::vector<double> v;
        geo_.for_each_in_channel(static_cast<std::int64_t>(c), [&](std::int64_t off, std::int64_t) {
          v.push_back(static_cast<double>(in_.src[off]));
        });
        knobs plain;
        const group_stats s = stats_of(v, plain, nullptr);
        bm = s.mean;
        bv = corrected(s.running_var, static_cast<double>(v.size()));
      } else {
        // Each instance updates a copy of the running statistics; the copies are averaged.
        const std::int64_t N = geo_.n();
        const std::int64_t instances = k.running == running_rule::first_instance ? 1 : N;
        double mean_of_copies = 0, var_of_copies = 0;
        for (std::int64_t n = 0; n < instances; ++n) {
          const group_stats& s = st[static_cast<std::size_t>(n * static_cast<std::int64_t>(C)) + c];
          double cm = (1 - f) * old_m + f * s.mean;
          double cv = (1 - f) * old_v + f * corrected(s.running_var, static_cast<double>(L));
          if (k.running == running_rule::narrowed) {
            cm = narrow(narrow_format(p_), cm);
            cv = narrow(narrow_format(p_), cv);
          }
          mean_of_copies += cm / static_cast<double>(instances);
          var_of_copies += cv / static_cast<double>(instances);
        }
        rm[c] = mean_of_copies;
        rv[c] = var_of_copies;
        continue;
      }
      rm[c] = (1 - f) * old_m + f * bm;
      rv[c] = (1 - f) * old_v + f * bv;
      if (k.running == running_rule::narrowed) {
        const float_format& fm = narrow_format(p_);
        rm[c] = narrow(fm, rm[c]);
        rv[c] = narrow(fm, rv[c]);
      }
    }
    return true;
  }

  // A kernel that reads and writes dense NCHW memory: what lands at the memory offset of logical
  // element j is its value for the dense element of that offset.
  void relayout(std::vector<double>& v) const {
    const std::vector<double> dense = v;
    const auto E = static_cast<std::int64_t>(v.size());
    for (std::int64_t j = 0; j < E; ++j) {
      const std::int64_t off = off_[static_cast<std::size_t>(j)];
      v[static_cast<std::size_t>(j)] =
          off >= 0 && off < E ? dense[static_cast<std::size_t>(off)] : std::nan("");
    }
  }

  // The logical index of the j-th element of statistic group g.
  [[nodiscard]] std::int64_t member(std::int64_t g, std::int64_t j) const {
    return members_[static_cast<std::size_t>(g * map_.group_size() + j)];
  }

  std::vector<std::int64_t> off_, grp_, par_, members_;
  const reference& ref_;
  const bn_inputs& in_;
  bool affine_;
  const reduction_map& map_;
  const geometry& geo_;
  const bn_problem& p_;
};

// ---- The hypotheses -----------------------------------------------------------------------------

std::vector<hypothesis> make_hypotheses() {
  std::vector<hypothesis> h;
  auto add = [&h](std::string_view cls, std::string_view evidence, auto set,
                  bool approximate = false) {
    knobs k;
    set(k);
    h.push_back({cls, evidence, k, approximate});
  };
  add("variance_estimator", "the output is normalized with the unbiased variance M2/(L − 1)",
      [](knobs& k) { k.var = var_rule::unbiased; });
  add("variance_estimator",
      "the running variance takes the other estimator (biased M2/L and unbiased M2/(L − 1) "
      "swapped)",
      [](knobs& k) { k.running = running_rule::estimator_swapped; });
  add("element_count", "the mean and variance are divided by N, the batch extent, not L",
      [](knobs& k) { k.count = count_rule::batch_extent; });
  add("element_count", "the running variance's Bessel factor is N/(N − 1), the batch extent",
      [](knobs& k) { k.running = running_rule::bessel_of_batch_extent; });
  add("tail",
      "the mean is divided by the row length padded to a multiple of 16 (masked lanes counted)",
      [](knobs& k) {
        k.count = count_rule::padded16;
        k.count_in_var = false;
      });
  add("element_count", "the element count is held in float16 before the mean and variance divide",
      [](knobs& k) { k.count = count_rule::float16; });
  add("element_count", "the backward pass's group size is (C/G)·W, the last extent only",
      [](knobs& k) { k.count = count_rule::backward_last_extent; });
  add("momentum", "the momentum weighs the old value: the new batch gets 1 − m",
      [](knobs& k) { k.running = running_rule::momentum_swapped; });
  add("momentum",
      "the cumulative average weighs the batch 1/max(t − 1, 1): the counter before its increment",
      [](knobs& k) { k.running = running_rule::cumulative_before_increment; });
  add("momentum", "num_batches_tracked counts the batch once per channel",
      [](knobs& k) { k.running = running_rule::counter_per_channel; });
  add("running_update", "the running statistics are returned unchanged: never updated",
      [](knobs& k) { k.running = running_rule::not_updated; });
  add("running_update", "the running variance takes var + ε",
      [](knobs& k) { k.running = running_rule::includes_eps; });
  add("running_update", "the running variance takes the corrected variance + ε", [](knobs& k) {
    k.running = running_rule::includes_eps;
    k.running_includes_eps_after_bessel = true;
  });
  add("running_update", "instance norm's running statistics come from the first example only",
      [](knobs& k) { k.running = running_rule::first_instance; });
  add("running_update",
      "instance norm's running statistics are the channel's statistics over (n, spatial)",
      [](knobs& k) { k.running = running_rule::batch_stats; });
  add("epsilon", "invstd = 1/(sqrt(var) + ε): ε outside the square root",
      [](knobs& k) { k.eps = eps_rule::outside_sqrt; });
  add("epsilon", "invstd = 1/sqrt(max(var, ε)): ε as a floor",
      [](knobs& k) { k.eps = eps_rule::floor; });
  add("epsilon", "ε is 1e-5 whatever the problem says",
      [](knobs& k) { k.eps = eps_rule::default_1e5; });
  add("epsilon", "ε is left out: invstd = 1/sqrt(var)",
      [](knobs& k) { k.eps = eps_rule::dropped; });
  add(
      "one_pass_variance", "the variance is E[x²] − E[x]² in float32",
      [](knobs& k) { k.var = var_rule::one_pass; }, true);
  add(
      "one_pass_variance", "the variance is max(E[x²] − E[x]², 0) in float32",
      [](knobs& k) { k.var = var_rule::one_pass_clamped; }, true);
  add(
      "narrowed_precision", "the forward sums Σx and Σ(x − μ)² accumulate in float16",
      [](knobs& k) { k.var = var_rule::sums_in_half; }, true);
  add(
      "narrowed_precision", "the squares x² are computed in float16",
      [](knobs& k) { k.var = var_rule::squares_in_half; }, true);
  add("narrowed_precision", "the saved statistics are rounded to float16 (or the data type)",
      [](knobs& k) { k.saved_narrowed = true; });
  add("narrowed_precision", "the running statistics are rounded to float16 (or the data type)",
      [](knobs& k) { k.running = running_rule::narrowed; });
  add("narrowed_precision", "x̂ is rounded to bfloat16 before γ multiplies it",
      [](knobs& k) { k.xhat_narrowed = true; });
  add(
      "narrowed_precision", "the backward sums Σdy and Σdy·(x − μ) accumulate in bfloat16",
      [](knobs& k) { k.backward = backward_rule::sums_in_bf16; }, true);
  add(
      "narrowed_precision", "each term dy·x̂ of dγ is rounded to bfloat16",
      [](knobs& k) { k.dgamma = dgamma_rule::terms_bf16; }, true);
  add(
      "narrowed_precision", "dγ accumulates in bfloat16",
      [](knobs& k) { k.dgamma = dgamma_rule::accumulated_bf16; }, true);
  add("weight_offset", "1 + w is rounded to bfloat16",
      [](knobs& k) { k.weight = weight_rule::offset_bf16; });
  add("weight_offset", "the weight is applied as w, not 1 + w",
      [](knobs& k) { k.weight = weight_rule::offset_missing; });
  add("weight_offset", "the weight is applied as 2 + w: the offset twice",
      [](knobs& k) { k.weight = weight_rule::offset_doubled; });
  add("weight_offset", "the backward pass scales dy by w instead of 1 + w",
      [](knobs& k) { k.backward = backward_rule::offset_missing; });
  for (const int v : {2, 4, 8, 16, 32, 64, 128, 256}) {
    static const std::array<std::string, 9> texts = [] {
      std::array<std::string, 9> t;
      for (int i = 1; i <= 8; ++i) {
        t[static_cast<std::size_t>(i)] = "the statistics skip the last L mod " +
                                         std::to_string(1 << i) +
                                         " elements (a loop over whole vectors or blocks)";
      }
      return t;
    }();
    add("tail", texts[static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(v)))],
        [v](knobs& k) { k.tail_drop = v; });
  }
  for (const int v : {4, 8, 16}) {
    static const std::array<std::string, 5> texts = [] {
      std::array<std::string, 5> t;
      for (int i = 2; i <= 4; ++i) {
        t[static_cast<std::size_t>(i)] =
            "the last full " + std::to_string(1 << i) +
            "-element vector is counted twice when L is not a multiple of " +
            std::to_string(1 << i);
      }
      return t;
    }();
    add("tail", texts[static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(v)))],
        [v](knobs& k) { k.tail_double = v; });
  }
  add("tail", "the masked tail lanes (a row padded to 16) are centred into the variance",
      [](knobs& k) { k.var = var_rule::masked_lanes_centred; });
  add("tail", "the backward sums drop the last element when L is odd (unrolled by 2)",
      [](knobs& k) { k.backward = backward_rule::odd_tail_dropped; });
  add("layout", "the tensors are read and written as dense NCHW whatever the layout",
      [](knobs& k) { k.read = read_rule::dense; });
  add("layout", "diff_dst is read as dense NCHW whatever the layout",
      [](knobs& k) { k.read = read_rule::dy_dense; });
  add("layout", "the normalize pass reads and writes dense rows, ignoring the strides",
      [](knobs& k) { k.read = read_rule::normalize_dense; });
  add("layout", "the statistics of a spatial-size-1 input are read with channel stride 1",
      [](knobs& k) { k.read = read_rule::stats_nc_dense; });
  add("reduction_scope", "each (n, c) is normalized by its own spatial statistics: instance norm",
      [](knobs& k) { k.scope = scope_rule::instance; });
  add("reduction_scope", "every example is normalized with the first example's statistics",
      [](knobs& k) { k.scope = scope_rule::first_example; });
  add("reduction_scope", "the Σx accumulator carries over from the previous group",
      [](knobs& k) { k.scope = scope_rule::carried_sum; });
  add("wrong_op", "RMS norm subtracts the mean: layer norm in its place",
      [](knobs& k) { k.var = var_rule::centred_rms; });
  add("train_eval", "forward inference normalizes with the batch statistics",
      [](knobs& k) { k.eval_batch_stats = true; });
  add("train_eval",
      "backward inference computes the training gradient through the batch statistics",
      [](knobs& k) { k.backward_eval_training = true; });
  add("backward_formula", "dx = γ·r·dy: the paths through μ and σ dropped",
      [](knobs& k) { k.backward = backward_rule::drop_stats; });
  add("backward_formula", "dx without the mean(γ·dy) term",
      [](knobs& k) { k.backward = backward_rule::drop_mean; });
  add("backward_formula", "RMS norm's dx subtracts mean(γ·dy): layer norm's backward",
      [](knobs& k) { k.backward = backward_rule::mean_term_added; });
  add("backward_formula", "dx's projection mean(g·x̂) uses dy instead of g = γ·dy",
      [](knobs& k) { k.backward = backward_rule::projection_with_dy; });
  add("backward_formula", "the backward pass applies the group's first γ to every element",
      [](knobs& k) { k.backward = backward_rule::first_gamma; });
  add("backward_formula", "the saved invstd is read as the variance: r = 1/sqrt(invstd + ε)",
      [](knobs& k) { k.backward = backward_rule::invstd_as_var; });
  add("backward_formula", "dγ = Σdy·x·r: x not centred",
      [](knobs& k) { k.dgamma = dgamma_rule::uncentred; });
  add("backward_formula", "dγ = Σdy·x·r: x not centred, and dx's projection inherits it",
      [](knobs& k) { k.dgamma = dgamma_rule::uncentred_dx_too; });
  add("backward_formula", "dγ keeps only the last group's contribution: stored, not added",
      [](knobs& k) { k.dgamma = dgamma_rule::last_row; });
  add("degenerate_batch", "an empty batch turns the running statistics into NaN",
      [](knobs& k) { k.running = running_rule::empty_nan; });
  add("non_finite", "a constant group gives NaN: x̂ = (x − μ)/sqrt(var) divides 0 by 0",
      [](knobs& k) { k.zero_variance_nan = true; });
  add("non_finite", "a non-finite value in one group turns every group's output to NaN",
      [](knobs& k) { k.nan_poisons_all = true; });
  add("non_finite", "NaN terms are skipped in the statistics",
      [](knobs& k) { k.scope = scope_rule::skip_nan; });
  add("overflow", "squares (x − μ)² below FLT_MIN are flushed to 0",
      [](knobs& k) { k.var = var_rule::squares_flushed; });
  return h;
}

const std::vector<hypothesis>& hypotheses() {
  static const std::vector<hypothesis> h = make_hypotheses();
  return h;
}

// Whether a predicted value explains a returned one: the same class (NaN, ±Inf), or within twice
// the bound plus a share of the defect's own effect |predicted − exact|.
bool explains(double predicted, float got, double exact, double bound, bool approximate) {
  if (std::isnan(got) || std::isnan(predicted)) return std::isnan(got) && std::isnan(predicted);
  if (std::isinf(got)) {
    return (got > 0) == (predicted > 0) &&
           std::abs(predicted) >= static_cast<double>(std::numeric_limits<float>::max());
  }
  if (std::isinf(predicted)) return false;
  const double effect = std::isfinite(exact) ? std::abs(predicted - exact) : 0.0;
  const double share = approximate ? budgets::diagnosis_magnitude_share.value
                                   : budgets::diagnosis_effect_share.value;
  return std::abs(static_cast<double>(got) - predicted) <=
         budgets::diagnosis_bound_factor.value * bound + share * effect;
}

// How a hypothesis's prediction of one output compares with what the kernel returned.
enum class output_fit : std::uint8_t {
  mismatch,      // some element is not explained
  no_deviation,  // every element is explained, but the model itself is within the bounds
  explained,     // every element explained, and the model lies outside a bound somewhere
};

// `exact(i)` is the exact value (NaN for an undefined golden), `bound(i)` the lenient bound
// (NaN or Inf: no claim, the element is skipped), `skip(i)` an unspecified golden.
template <class Exact, class Bound, class Skip>
output_fit fit_output(const std::vector<double>& predicted, const std::vector<float>& got,
                      Exact&& exact_at, Bound&& bound_at, Skip&& skip, bool approximate,
                      bool failed) {
  double max_effect = 0, max_error = 0;
  bool deviates = false;
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    if (skip(i)) continue;
    const double exact = exact_at(i);
    const float g = got[i];
    const double v = predicted[i];
    if (!std::isfinite(exact)) {
      // A golden judged by its class (undefined: NaN; ±Inf): the prediction must have the
      // kernel's class, and where both are finite, its value to a few bits.
      if (std::isnan(v) != std::isnan(g) || std::isinf(v) != std::isinf(g))
        return output_fit::mismatch;
      if (std::isfinite(v) &&
          std::abs(static_cast<double>(g) - v) >
              std::ldexp(std::max(std::abs(v), std::abs(static_cast<double>(g))),
                         -static_cast<int>(budgets::diagnosis_class_bits.value))) {
        return output_fit::mismatch;
      }
      if (!(std::isnan(v) && std::isnan(exact)) && v != exact) deviates = true;
      continue;
    }
    const double bound = bound_at(i);
    if (std::isinf(bound) || std::isnan(bound)) continue;
    if (!explains(v, g, exact, bound, approximate)) return output_fit::mismatch;
    if (std::isnan(v) != std::isnan(exact) || std::isinf(v) != std::isinf(exact) ||
        std::abs(v - exact) > bound) {
      deviates = true;
    }
    if (std::isfinite(exact) && std::isfinite(v))
      max_effect = std::max(max_effect, std::abs(v - exact));
    if (std::isfinite(exact) && std::isfinite(g)) {
      max_error = std::max(max_error, std::abs(static_cast<double>(g) - exact));
    }
  }
  // A magnitude match must also match the size of the deviation, not only lie within it.
  if (approximate && failed && max_error > 0 &&
      !(max_effect >= max_error / budgets::diagnosis_magnitude_ratio.value &&
        max_effect <= max_error * budgets::diagnosis_magnitude_ratio.value)) {
    return output_fit::mismatch;
  }
  return deviates ? output_fit::explained : output_fit::no_deviation;
}

// The hypotheses of the fold and the SyncBN merge: each predicts the operation's outputs by name.
struct operation_hypothesis {
  std::string_view cls;
  std::string_view evidence;
  int variant;
  bool approximate = false;
};

enum fold_variant : int {
  fold_correct,
  fold_ignores_bias,
  fold_bias_unscaled,
  fold_no_eps,
  fold_no_bias_drops_mean,
  fold_eps_outside,
  fold_eps_floor
};
enum syncbn_variant : int {
  sync_correct,
  sync_equal_counts,
  sync_no_between,
  sync_shard_bessel,
  sync_one_pass,
  sync_eps_outside,
  sync_eps_floor,
  sync_momentum_swapped,
  sync_running_not_updated,
  sync_cumulative_before_increment
};

std::vector<float> input_of(const fixture& f, const std::string& name) {
  const auto it = f.inputs.find(name);
  return it == f.inputs.end() ? std::vector<float>{} : it->second;
}

std::map<std::string, std::vector<double>> predict_fold(const fixture& f, int v) {
  const std::int64_t O = f.problem.n, K = f.problem.c;
  const std::vector<float> w = input_of(f, "weight"), b = input_of(f, "bias"),
                           gamma = input_of(f, "gamma"), beta = input_of(f, "beta"),
                           rm = input_of(f, "running_mean"), rv = input_of(f, "running_var");
  std::map<std::string, std::vector<double>> out;
  auto& wo = out["weight"];
  auto& bo = out["bias"];
  if (static_cast<std::int64_t>(w.size()) != O * K ||
      static_cast<std::int64_t>(gamma.size()) != O || beta.size() != gamma.size() ||
      rm.size() != gamma.size() || rv.size() != gamma.size()) {
    return {};
  }
  const double eps = f.problem.eps;
  for (std::int64_t o = 0; o < O; ++o) {
    const auto u = static_cast<std::size_t>(o);
    const double var = static_cast<double>(rv[u]);
    double r = 1.0 / std::sqrt(var + eps);
    if (v == fold_no_eps) r = 1.0 / std::sqrt(var);
    if (v == fold_eps_outside) r = 1.0 / (std::sqrt(var) + eps);
    if (v == fold_eps_floor) r = 1.0 / std::sqrt(std::max(var, eps));
    const double sc = static_cast<double>(gamma[u]) * r;
    for (std::int64_t k = 0; k < K; ++k) {
      wo.push_back(static_cast<double>(w[static_cast<std::size_t>(o * K + k)]) * sc);
    }
    const double mu = static_cast<double>(rm[u]);
    const double bias = b.empty() ? 0.0 : static_cast<double>(b[u]);
    double bb = (bias - mu) * sc + static_cast<double>(beta[u]);
    if (v == fold_ignores_bias) bb = static_cast<double>(beta[u]) - mu * sc;
    if (v == fold_bias_unscaled) bb = bias + static_cast<double>(beta[u]) - mu * sc;
    if (v == fold_no_bias_drops_mean && b.empty()) bb = static_cast<double>(beta[u]);
    bo.push_back(bb);
  }
  return out;
}

std::map<std::string, std::vector<double>> predict_syncbn(const fixture& f, int v) {
  const std::int64_t C = f.problem.c;
  const auto K = static_cast<std::int64_t>(f.counts.size());
  const std::vector<float> sm = input_of(f, "shard_mean"), sv = input_of(f, "shard_var"),
                           rm = input_of(f, "running_mean"), rv = input_of(f, "running_var");
  if (K == 0 || static_cast<std::int64_t>(sm.size()) != K * C || sv.size() != sm.size()) return {};
  std::map<std::string, std::vector<double>> out;
  const convention* conv = find_convention(f.problem.convention);
  double n = 0;
  for (const std::int64_t c : f.counts) n += static_cast<double>(c);
  for (std::int64_t c = 0; c < C; ++c) {
    double mean = 0, m2 = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const auto u = static_cast<std::size_t>(k * C + c);
      const double nk = static_cast<double>(f.counts[static_cast<std::size_t>(k)]);
      mean += v == sync_equal_counts ? static_cast<double>(sm[u]) / static_cast<double>(K)
                                     : nk * static_cast<double>(sm[u]) / n;
    }
    if (v == sync_one_pass) {
      float sq = 0;
      for (std::int64_t k = 0; k < K; ++k) {
        const auto u = static_cast<std::size_t>(k * C + c);
        const auto nk = static_cast<float>(f.counts[static_cast<std::size_t>(k)]);
        sq += nk * (sv[u] + sm[u] * sm[u]);
      }
      const auto mf = static_cast<float>(mean);
      m2 = static_cast<double>(sq - static_cast<float>(n) * (mf * mf));
      mean = static_cast<double>(mf);
    } else {
      for (std::int64_t k = 0; k < K; ++k) {
        const auto u = static_cast<std::size_t>(k * C + c);
        const double nk = static_cast<double>(f.counts[static_cast<std::size_t>(k)]);
        const double d = static_cast<double>(sm[u]) - mean;
        m2 += nk * static_cast<double>(sv[u]) + (v == sync_no_between ? 0.0 : nk * d * d);
      }
    }
    const double var = m2 / n;
    double r = 1.0 / std::sqrt(var + f.problem.eps);
    if (v == sync_eps_outside) r = 1.0 / (std::sqrt(var) + f.problem.eps);
    if (v == sync_eps_floor) r = 1.0 / std::sqrt(std::max(var, f.problem.eps));
    out["mean"].push_back(mean);
    out["var"].push_back(var);
    out["invstd"].push_back(r);
    if (!f.track_running || conv == nullptr || rm.size() != static_cast<std::size_t>(C)) continue;
    const auto u = static_cast<std::size_t>(c);
    double factor = 0;
    if (f.problem.momentum) {
      factor = conv->weighs == momentum_weighs::new_value ? *f.problem.momentum
                                                          : 1.0 - *f.problem.momentum;
      if (v == sync_momentum_swapped) factor = 1.0 - factor;
    } else {
      factor = 1.0 / static_cast<double>(v == sync_cumulative_before_increment
                                             ? std::max<std::int64_t>(f.num_batches_tracked, 1)
                                             : f.num_batches_tracked + 1);
    }
    if (v == sync_running_not_updated) factor = 0;
    double batch_var = var;
    if (conv->running_var == variance_estimator::unbiased) {
      batch_var = m2 / (v == sync_shard_bessel ? n - static_cast<double>(K) : n - 1);
    }
    out["running_mean"].push_back((1 - factor) * static_cast<double>(rm[u]) + factor * mean);
    out["running_var"].push_back((1 - factor) * static_cast<double>(rv[u]) + factor * batch_var);
  }
  return out;
}

}  // namespace

std::vector<explanation> explain_operation(const fixture& f, const results& got,
                                           const std::vector<output_result>& judged,
                                           accuracy_level gate) {
  static const std::vector<operation_hypothesis> fold{
      {"folding", "the fold drops the layer's bias: b' = β − μ·s", fold_ignores_bias},
      {"folding", "the fold adds the layer's bias unscaled: b' = b + β − μ·s", fold_bias_unscaled},
      {"folding", "the fold leaves ε out: s = γ/sqrt(var)", fold_no_eps},
      {"folding", "a fold without a layer bias writes b' = β, dropping −μ·s",
       fold_no_bias_drops_mean},
      {"epsilon", "the fold takes ε outside the square root: s = γ/(sqrt(var) + ε)",
       fold_eps_outside},
      {"epsilon", "the fold takes ε as a floor: s = γ/sqrt(max(var, ε))", fold_eps_floor},
  };
  static const std::vector<operation_hypothesis> syncbn{
      {"syncbn_merge", "the merged mean averages the shard means without their counts",
       sync_equal_counts},
      {"syncbn_merge", "the merged variance forgets the spread of the shard means",
       sync_no_between},
      {"syncbn_merge", "the merged running variance is made unbiased with n − K",
       sync_shard_bessel},
      {"syncbn_merge", "the merge rebuilds Σx² and cancels: M2 = Σx² − n·mean² in float32",
       sync_one_pass, true},
      {"epsilon", "the merge takes ε outside the square root", sync_eps_outside},
      {"epsilon", "the merge takes ε as a floor", sync_eps_floor},
      {"momentum", "the merge's running update weighs the old value with the momentum",
       sync_momentum_swapped},
      {"running_update", "the merge leaves the running statistics unchanged",
       sync_running_not_updated},
      {"momentum",
       "the cumulative average weighs the batch 1/max(t − 1, 1): the counter before its increment",
       sync_cumulative_before_increment},
  };
  std::vector<explanation> out;
  const auto lvl = static_cast<std::size_t>(gate);
  if (std::all_of(judged.begin(), judged.end(),
                  [lvl](const output_result& o) { return o.passed[lvl]; })) {
    return out;
  }
  const bool is_fold = f.kind == "fold";
  if (!is_fold && f.kind != "syncbn_merge") return out;
  for (const operation_hypothesis& h : is_fold ? fold : syncbn) {
    const auto predicted = is_fold ? predict_fold(f, h.variant) : predict_syncbn(f, h.variant);
    if (predicted.empty()) continue;
    bool ok = true, explains_a_failure = false;
    for (const output_result& o : judged) {
      const bool failed = !o.passed[lvl];
      const auto p = predicted.find(o.name);
      const auto g = got.outputs.find(o.name);
      const auto e = std::find_if(f.expected.begin(), f.expected.end(),
                                  [&o](const fixture_output& x) { return x.name == o.name; });
      if (p == predicted.end() || g == got.outputs.end() || e == f.expected.end() ||
          p->second.size() != g->second.size() || e->values.size() != g->second.size()) {
        if (failed) ok = false;
        continue;
      }
      const output_fit fit = fit_output(
          p->second, g->second, [&e](std::size_t i) { return static_cast<double>(e->values[i]); },
          [&e](std::size_t i) { return e->bound[2].empty() ? 0.0 : e->bound[2][i]; },
          [&e](std::size_t i) { return e->classes[i] == golden_class::unspecified; }, h.approximate,
          failed);
      if (fit == output_fit::mismatch || (failed && fit == output_fit::no_deviation)) {
        ok = false;
        break;
      }
      if (failed) explains_a_failure = true;
    }
    if (ok && explains_a_failure)
      out.push_back({std::string(h.cls), std::string(h.evidence), h.approximate});
  }
  return out;
}

std::span<const defect_class> defect_classes() {
  return k_classes;
}

const defect_class* find_defect_class(std::string_view id) {
  for (const defect_class& c : k_classes) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

std::vector<explanation> explain_call(const reference& ref, const error_model& model,
                                      const bn_inputs& in, bool affine,
                                      const std::vector<output_result>& judged,
                                      std::span<const returned_output> returned,
                                      std::int64_t num_batches_tracked, accuracy_level gate) {
  std::vector<explanation> out;
  const auto lvl = static_cast<std::size_t>(gate);
  const bool any_failed = std::any_of(judged.begin(), judged.end(),
                                      [lvl](const output_result& o) { return !o.passed[lvl]; });
  if (!any_failed || ref.geom().elements() > k_diagnosis_max_elements) return out;
  const defect_model dm(ref, in, affine);
  // Each output's exact values and bounds, computed once for every hypothesis: correct rounding
  // and the bound are the costly part of a comparison.
  struct reference_values {
    std::vector<double> exact, bound;
    std::vector<char> unspecified;
  };
  std::map<output_id, reference_values> cache;
  const auto values_of = [&](output_id id, std::size_t n) -> const reference_values& {
    auto [it, fresh] = cache.try_emplace(id);
    if (fresh) {
      reference_values& v = it->second;
      v.exact.resize(n);
      v.bound.resize(n);
      v.unspecified.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const golden g = ref.round(id, static_cast<std::int64_t>(i));
        // ±Inf for an infinite or overflowing golden, NaN for an undefined one.
        v.exact[i] = static_cast<double>(g.value);
        v.unspecified[i] = g.cls == golden_class::unspecified ? 1 : 0;
        v.bound[i] = v.unspecified[i] != 0
                         ? 0.0
                         : model.bound(id, static_cast<std::int64_t>(i), accuracy_level::lenient);
      }
    }
    return it->second;
  };
  // Failed outputs first: most hypotheses are ruled out there.
  std::vector<const output_result*> order;
  for (const output_result& o : judged) {
    if (!o.passed[lvl]) order.push_back(&o);
  }
  for (const output_result& o : judged) {
    if (o.passed[lvl]) order.push_back(&o);
  }
  for (const hypothesis& h : hypotheses()) {
    if (!dm.applies(h.k)) continue;
    std::optional<prediction> pr;
    try {
      pr = dm.predict(h.k);
    } catch (const std::exception&) {
      continue;
    }
    if (!pr) continue;
    bool ok = true;
    bool explains_a_failure = false;
    for (const output_result* op : order) {
      const output_result& o = *op;
      const bool failed = !o.passed[lvl];
      if (o.name == "num_batches_tracked") {
        if (!pr->num_batches_tracked || *pr->num_batches_tracked != num_batches_tracked) {
          ok = false;
          break;
        }
        explains_a_failure = true;
        continue;
      }
      const auto r = std::find_if(returned.begin(), returned.end(),
                                  [&o](const returned_output& x) { return x.name == o.name; });
      if (r == returned.end()) continue;
      const auto& predicted = pr->out[static_cast<std::size_t>(r->id)];
      if (!predicted || predicted->size() != r->values->size()) {
        if (failed) ok = false;
        continue;
      }
      const reference_values& rv = values_of(r->id, predicted->size());
      const output_fit fit = fit_output(
          *predicted, *r->values, [&rv](std::size_t i) { return rv.exact[i]; },
          [&rv](std::size_t i) { return rv.bound[i]; },
          [&rv](std::size_t i) { return rv.unspecified[i] != 0; }, h.approximate, failed);
      // A failed output the hypothesis predicts right cannot be why it failed.
      if (fit == output_fit::mismatch || (failed && fit == output_fit::no_deviation)) {
        ok = false;
        break;
      }
      if (failed) explains_a_failure = true;
    }
    if (ok && explains_a_failure) {
      out.push_back({std::string(h.cls), std::string(h.evidence), h.approximate});
    }
  }
  return out;
}

std::vector<explanation> explain_fault(bn_mode mode, const std::string& fault) {
  if (mode == bn_mode::forward_inference &&
      fault.find("wrote to input running_") != std::string::npos) {
    return {{"train_eval",
             "forward inference writes the running statistics, its read-only inputs: the "
             "training update run in eval",
             false}};
  }
  return {};
}

std::vector<explanation> explain_property(std::string_view property) {
  if (property == "reproducibility" || property == "family_reproducibility") {
    return {{"nondeterminism", "the same call gives different bits from run to run", false}};
  }
  if (property == "rms_norm_sign_symmetry") {
    return {{"overflow", "negating the input changes RMS norm's result: a path taken on the sign",
             false}};
  }
  return {};
}

std::vector<diagnosis> diagnose(const run_summary& s) {
  struct tally {
    std::int64_t exact = 0, any = 0;
    std::map<std::string, std::int64_t> evidence;
    std::string example;
  };
  std::map<std::string, tally> by_class;
  std::int64_t failed = 0;
  // A property names a class from its name alone; where catalog results failed too, their
  // outputs are the better evidence, and a property may fail as a side effect of their defect
  // (a kernel that reads outside its rows is not reproducible either).
  const bool outputs_failed =
      std::any_of(s.results.begin(), s.results.end(), [](const case_result& r) {
        return r.op != "property" && (r.result == verdict::fail || r.result == verdict::fault);
      });
  for (const case_result& r : s.results) {
    if (r.result != verdict::fail && r.result != verdict::fault) continue;
    ++failed;
    if (outputs_failed && r.op == "property") continue;
    std::map<std::string, bool> classes;  // class → explained exactly
    for (const explanation& e : r.explained_by) {
      classes[e.cls] = classes[e.cls] || !e.approximate;
      ++by_class[e.cls].evidence[e.evidence];
    }
    for (const auto& [cls, exact] : classes) {
      tally& t = by_class[cls];
      ++t.any;
      if (exact) ++t.exact;
      if (t.example.empty()) {
        t.example = r.case_name + " " + (r.op.empty() ? std::string(to_string(r.mode)) : r.op);
      }
    }
  }
  std::vector<diagnosis> out;
  for (const auto& [cls, t] : by_class) {
    diagnosis d;
    d.cls = cls;
    const defect_class* c = find_defect_class(cls);
    d.title = c != nullptr ? std::string(c->title) : cls;
    d.explained = t.any;
    d.failed = failed;
    d.approximate = t.exact == 0;
    std::vector<std::pair<std::int64_t, std::string>> ev;
    for (const auto& [text, n] : t.evidence) ev.emplace_back(n, text);
    std::stable_sort(ev.begin(), ev.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& e : ev) d.evidence.push_back(e.second);
    d.example = t.example;
    out.push_back(std::move(d));
  }
  const auto key = [&by_class](const diagnosis& d) {
    const tally& t = by_class.at(d.cls);
    return std::pair{t.any, t.exact};
  };
  std::stable_sort(out.begin(), out.end(),
                   [&key](const diagnosis& a, const diagnosis& b) { return key(a) > key(b); });
  if (!out.empty()) {
    const std::int64_t first = out.front().explained;
    std::erase_if(out, [first](const diagnosis& d) {
      return static_cast<double>(d.explained) <
             budgets::diagnosis_listed_share.value * static_cast<double>(first);
    });
  }
  return out;
}

std::vector<std::string> diagnosis_lines(const std::vector<diagnosis>& d) {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const diagnosis& x = d[i];
    std::string line = (i == 0 ? "most likely: " : "also consistent: ") + x.title + " [" + x.cls +
                       "] — explains " + std::to_string(x.explained) + " of " +
                       std::to_string(x.failed) + " failed results";
    if (x.approximate) line += " in magnitude only";
    if (!x.evidence.empty()) line += ": " + x.evidence.front();
    if (!x.example.empty()) line += " (e.g. " + x.example + ")";
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace bnoracle
