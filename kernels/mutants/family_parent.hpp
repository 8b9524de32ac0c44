// The family parent of the mutation catalog: one correct float32 kernel of layer, RMS, group and
// instance norm, templated on a `family_mutation`, and the one-line deviations that turn it into
// each mutant of the family's sections of MANIFEST.tsv.
//
// The parent (`family_mutation::none`, built as libbnm_family_parent.so) computes what the
// bundled `two_pass` computes for these ops: sequential float32 sums in logical order, a
// two-pass variance (RMS norm: the mean square as Σ x·(x/L)), γ·dy where γ varies inside a group,
// instance norm's running statistics as PyTorch averages its per-instance copies. Validation and
// the ABI glue are the bundled ones (`make_layout`, `guarded_entry`); only the arithmetic is
// written here, because that is where the bugs go. Batch norm is parent.hpp's.
//
// Each mutant (kernels/mutants/<name>.cpp) instantiates this header with its own value. Every
// place a real bug would sit is an `if constexpr (M == family_mutation::xxx)` (through `is`) at
// that line; the mutant's source names the real-world bug (/work/shared/BUGS.md, the
// normalization-family sections) and when it shows.
#pragma once

#include "parent.hpp"  // to_half, to_bf16: narrow formats emulated on the float32 encoding
#include "scheduling.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace bnoracle::kernels::mutants {

enum class family_mutation {
  none,
  // family_variance
  fam_one_pass_variance,
  fam_unbiased_variance,
  fam_eps_outside_sqrt,
  rms_centred,
  rms_eps_dropped,
  rms_overflow_guard_signed,
  // family_low_precision
  fam_sums_in_half,
  fam_count_in_half,
  fam_saved_stats_in_data_type,
  in_running_in_data_type,
  rms_square_in_half,
  fam_dgamma_terms_in_bf16,
  fam_dgamma_accumulated_in_bf16,
  fam_normalized_in_bf16,
  // weight_offset
  offset_missing,
  offset_doubled,
  offset_in_bf16,
  offset_missing_in_backward,
  // family_tails
  masked_lanes_centred,
  masked_lanes_counted,
  gn_group_padding,
  fam_vector_tail_dropped,
  gn_stats_of_first_example,
  // family_strides
  stride_dropped_in_normalize,
  row_index_flattened,
  gn_backward_w_for_hw,
  channels_last_dropped,
  // family_backward
  dgamma_last_row_only,
  dgamma_uncentred_family,
  dx_mean_term_dropped,
  rms_dx_mean_term_added,
  dx_projection_ignores_gamma,
  dx_gamma_of_first_element,
  // instance_running
  in_running_first_instance,
  in_running_biased,
  in_running_batch_stats,
  in_eval_uses_input_stats,
  in_single_spatial_not_refused,
  // determinism
  fam_nondeterministic_sum,
};

template <family_mutation M, class Data = float>
struct family {
  static constexpr bool is(family_mutation m) { return M == m; }
  using D = storage<Data>;

  // The buffers as the bundled template reads them (x[e], dy[e]: the data widened to float; γ/β
  // and the statistics float32, run_widened's copies where they are narrower).
  struct no_policy {};
  using buffers = typename norm<no_policy, Data>::buffers;
  static buffers view(const bnk_buffers_v2& b) { return norm<no_policy, Data>::view(b); }
  // A float rounded to the data type and back: what a kernel that keeps a value in the data
  // type holds (the identity for float32 data).
  static float in_data_type(float v) { return D::load(D::store(v)); }

  static bool has_params(const bnk_problem_v2& p) { return p.op.params != BNK_PARAMS_NONE; }

  // γ as applied to entry j: 1 + w under the weight offset (Gemma), 1 without γ/β.
  static float gamma_of(const bnk_problem_v2& p, const buffers& b, std::int64_t j,
                        bool backward = false) {
    if (!has_params(p)) return 1.0F;
    const float w = b.gamma[j];
    if (p.op.weight_offset == 0) return w;
    if constexpr (is(family_mutation::offset_missing)) return w;
    if constexpr (is(family_mutation::offset_doubled)) return 2.0F + w;
    if constexpr (is(family_mutation::offset_in_bf16)) return to_bf16(1.0F + w);
    if constexpr (is(family_mutation::offset_missing_in_backward)) {
      if (backward) return w;
    }
    return 1.0F + w;
  }
  static float beta_of(const bnk_problem_v2& p, const buffers& b, std::int64_t j) {
    return has_params(p) ? b.beta[j] : 0.0F;
  }

  // Σ term over the group, left to right; `statistic` sums are the forward statistics' (Σx,
  // Σ(x − μ)², Σx²), which the low-precision mutants accumulate in float16.
  template <class Term>
  static float sum(const group_view& v, const Term& term, bool statistic) {
    std::int64_t hi = v.size();
    if constexpr (is(family_mutation::fam_vector_tail_dropped)) {
      if (statistic) hi -= hi % 8;  // the statistics reduce whole 8-lane vectors only
    }
    float s = 0.0F;
    if constexpr (is(family_mutation::fam_nondeterministic_sum)) {
      // Three blocks' partial sums added atomically in the order the blocks finish: here the
      // scheduler decides (scheduling.hpp).
      const std::int64_t cut[4] = {0, hi / 3, 2 * hi / 3, hi};
      const auto first = first_block_to_finish();
      for (int i = 0; i < 3; ++i) {
        const int k = (first + i) % 3;
        float part = 0.0F;
        v.for_range(cut[k], cut[k + 1], [&](element e) { part += term(e); });
        s += part;
      }
      return s;
    }
    v.for_range(0, hi, [&](element e) {
      s += term(e);
      if constexpr (is(family_mutation::fam_sums_in_half)) {
        if (statistic) s = to_half(s);
      }
    });
    return s;
  }

  // Vector kernels process a row in lanes of 16; the masked tail lanes are loaded as 0.
  static std::int64_t padded(std::int64_t L) { return (L + 15) / 16 * 16; }

  struct stats {
    float mean;  // 0 for RMS norm
    float var;   // σ², or the mean square for RMS norm
    float rstd;
    float m2;  // Σ(x − μ)² (the running variance's numerator)
  };

  static bool centred(const bnk_problem_v2& p) {
    if constexpr (is(family_mutation::rms_centred)) return true;
    return p.op.centred != 0;
  }

  static stats stats_of(const bnk_problem_v2& p, const group_view& v, const tensor_in<Data>& x) {
    const std::int64_t L = v.size();
    float Lf = static_cast<float>(L);
    // The element count held in float16, as a kernel that keeps it in the data type does.
    if constexpr (is(family_mutation::fam_count_in_half)) Lf = to_half(Lf);
    stats s{0.0F, 0.0F, 0.0F, 0.0F};
    if (centred(p)) {
      float count = Lf;
      if constexpr (is(family_mutation::masked_lanes_counted))
        count = static_cast<float>(padded(L));
      s.mean = sum(
                   v, [x](element e) { return x[e]; }, true) /
               count;
      const float mean = s.mean;
      if constexpr (is(family_mutation::fam_one_pass_variance)) {
        const float ex2 = sum(
                              v, [x](element e) { return x[e] * x[e]; }, true) /
                          Lf;
        s.m2 = (ex2 - mean * mean) * Lf;
      } else {
        s.m2 = sum(
            v,
            [x, mean](element e) {
              const float d = x[e] - mean;
              return d * d;
            },
            true);
      }
      if constexpr (is(family_mutation::masked_lanes_centred)) {
        // Each masked lane holds 0 and is centred like the rest: (0 − μ)² leaks in.
        s.m2 += static_cast<float>(padded(L) - L) * (mean * mean);
      }
      float divisor = Lf;
      if constexpr (is(family_mutation::fam_unbiased_variance)) divisor = Lf - 1.0F;
      s.var = s.m2 / divisor;
    } else {
      if constexpr (is(family_mutation::rms_overflow_guard_signed)) {
        // The fast path Σx²/L is taken unless the row's largest value could overflow a square;
        // the guard looks at the largest value instead of the largest magnitude, so a row whose
        // huge values are negative squares them directly and overflows.
        float largest = -std::numeric_limits<float>::infinity();
        v.for_range(0, L, [&](element e) { largest = std::max(largest, x[e]); });
        if (largest < 0x1p60F) {
          s.var = sum(
                      v, [x](element e) { return x[e] * x[e]; }, true) /
                  Lf;
          s.m2 = s.var * Lf;
          s.rstd = rstd_of(p, s.var);
          return s;
        }
      }
      s.var = sum(
          v,
          [x, Lf](element e) {
            const float xv = x[e];
            if constexpr (is(family_mutation::rms_square_in_half)) return to_half(xv * xv) / Lf;
            return xv * (xv / Lf);
          },
          true);
      s.m2 = s.var * Lf;
    }
    s.rstd = rstd_of(p, s.var);
    return s;
  }

  static float rstd_of(const bnk_problem_v2& p, float var) {
    const float eps = static_cast<float>(p.eps);
    if constexpr (is(family_mutation::fam_eps_outside_sqrt)) return 1.0F / (std::sqrt(var) + eps);
    if constexpr (is(family_mutation::rms_eps_dropped)) {
      if (p.op.centred == 0) return 1.0F / std::sqrt(var);
    }
    return 1.0F / std::sqrt(var + eps);
  }

  // The layout read as dense channels-first memory, whatever its strides: the view of the
  // stride and channels-last mutants.
  static bool dense_layout(const bnk_problem_v2& p, group_layout& out, rejection& r) {
    bnk_problem_v2 q = p;
    q.shape.layout = BNK_LAYOUT_STRIDED;
    std::int64_t stride = 1;
    for (int d = q.shape.rank - 1; d >= 0; --d) {
      q.shape.strides[d] = stride;
      stride *= q.shape.dims[d];
    }
    return make_layout(q, k_all_layouts, out, r);
  }

  static bool channels_last(const bnk_problem_v2& p) {
    return p.shape.layout == BNK_LAYOUT_NHWC || p.shape.layout == BNK_LAYOUT_NDHWC;
  }

  // PyTorch refuses to train instance norm on one spatial element.
  static bool refuses_single_spatial(const bnk_problem_v2& p, const group_layout& g, rejection& r) {
    if constexpr (is(family_mutation::in_single_spatial_not_refused)) return false;
    if (p.op.kind != BNK_OP_INSTANCE_NORM || g.L != 1 || g.groups == 0) return false;
    reject(r, BNK_REFUSED, "%s", k_single_spatial_refusal);
    return true;
  }

  // Which passes read memory as dense channels-first (`dense`): all of them (group and instance
  // norm ignoring channels-last) or the normalize pass (layer and RMS norm dropping the stride).
  static bool read_layouts(const bnk_problem_v2& p, group_layout& dense, bool& all_dense,
                           bool& normalize_dense, rejection& r) {
    const bool gn_in = p.op.kind == BNK_OP_GROUP_NORM || p.op.kind == BNK_OP_INSTANCE_NORM;
    all_dense = false;
    if constexpr (is(family_mutation::channels_last_dropped)) all_dense = gn_in && channels_last(p);
    normalize_dense = all_dense;
    if constexpr (is(family_mutation::stride_dropped_in_normalize)) normalize_dense = !gn_in;
    return !(all_dense || normalize_dense) || dense_layout(p, dense, r);
  }

  // The view the statistics of group grp are read through.
  static group_view stats_view(const bnk_problem_v2& p, const group_layout& g, std::int64_t grp) {
    const bool gn = p.op.kind == BNK_OP_GROUP_NORM;
    if constexpr (is(family_mutation::gn_stats_of_first_example)) {
      if (gn) return g.group(grp % p.op.groups);  // example 0's group, for every example
    }
    if constexpr (is(family_mutation::gn_group_padding)) {
      // The channel loop of a group runs to the next power of two and reads the next group's
      // channels (clamped to the tensor).
      const std::int64_t cpg = g.channels_per_group;
      std::int64_t pow2 = 1;
      while (pow2 < cpg) pow2 *= 2;
      const std::int64_t first = gn ? (grp % p.op.groups) * cpg : 0;
      const std::int64_t read = std::min(pow2, p.shape.dims[1] - first);
      if (gn && read != cpg && g.axes > 0) {
        const group_view own = g.group(grp);
        std::int64_t ext[group_view::k_axes];
        std::copy(g.ext, g.ext + group_view::k_axes, ext);
        ext[0] = read;
        std::int64_t base = 0;
        own.for_range(0, 1, [&base](element e) { base = e.offset; });
        return {base, ext, g.stride, g.axes, g.L / cpg * read};
      }
    }
    if constexpr (is(family_mutation::row_index_flattened)) {
      // The row index flattened over the leading axes, times the first axis' stride.
      if (p.op.kind == BNK_OP_LAYER_NORM || p.op.kind == BNK_OP_RMS_NORM) {
        return {grp * g.lead_stride[0], g.ext, g.stride, g.axes, g.L};
      }
    }
    return g.group(grp);
  }

  static bnk_status forward_training(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                     const group_layout& g0, rejection& r) {
    const buffers b = view(raw);
    const bool in = p.op.kind == BNK_OP_INSTANCE_NORM;
    const bool track = in && p.track_running != 0;
    if (g0.groups > 0 && g0.L > 0 && (missing(raw.src, "src", r) || missing(raw.dst, "dst", r))) {
      return r.status;
    }
    if (has_params(p) && g0.params > 0 &&
        (missing(raw.gamma, "gamma", r) || missing(raw.beta, "beta", r))) {
      return r.status;
    }
    if (track && (missing(raw.running_mean, "running_mean", r) ||
                  missing(raw.running_var, "running_var", r) ||
                  missing(raw.num_batches_tracked, "num_batches_tracked", r))) {
      return r.status;
    }
    if (refuses_single_spatial(p, g0, r)) return r.status;
    if (track && p.cumulative != 0) {
      reject(r, BNK_UNSUPPORTED, "instance norm has no cumulative average (momentum=None)");
      return r.status;
    }
    group_layout dense;
    bool all_dense = false;
    bool normalize_dense = false;
    if (!read_layouts(p, dense, all_dense, normalize_dense, r)) return r.status;
    const group_layout& g = all_dense ? dense : g0;
    const std::int64_t C = p.shape.dims[1];
    std::vector<float> copies_mean(static_cast<std::size_t>(track ? C : 0), 0.0F);
    std::vector<float> copies_var(copies_mean.size(), 0.0F);
    const float f = static_cast<float>(p.momentum);
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      if (g.L == 0) continue;
      const stats s = stats_of(p, stats_view(p, g, grp), b.x);
      float saved_mean = s.mean;
      float saved_rstd = s.rstd;
      if constexpr (is(family_mutation::fam_saved_stats_in_data_type)) {
        saved_mean = in_data_type(saved_mean);
        saved_rstd = in_data_type(saved_rstd);
      }
      if (b.save_mean != nullptr) b.save_mean[grp] = saved_mean;
      if (b.save_stat != nullptr) b.save_stat[grp] = saved_rstd;
      const group_view out = normalize_dense ? dense.group(grp) : g.group(grp);
      out.for_range(0, g.L, [&](element e) {
        const std::int64_t j = g.param(grp, e.index);
        float xhat = (b.x[e] - s.mean) * s.rstd;
        if constexpr (is(family_mutation::fam_normalized_in_bf16)) xhat = to_bf16(xhat);
        b.y[e.offset] = D::store(xhat * gamma_of(p, b, j) + beta_of(p, b, j));
      });
      if (track) {
        const auto c = static_cast<std::size_t>(grp % C);
        float unbiased = s.m2 / static_cast<float>(g.L - 1);
        if constexpr (is(family_mutation::in_running_biased)) {
          unbiased = s.m2 / static_cast<float>(g.L);
        }
        const bool first = grp < C;
        if (is(family_mutation::in_running_first_instance) && !first) continue;
        float copy_mean = (1.0F - f) * b.running_mean[c] + f * s.mean;
        float copy_var = (1.0F - f) * b.running_var[c] + f * unbiased;
        if constexpr (is(family_mutation::in_running_in_data_type)) {
          copy_mean = in_data_type(copy_mean);
          copy_var = in_data_type(copy_var);
        }
        copies_mean[c] += copy_mean;
        copies_var[c] += copy_var;
      }
    }
    if (track && g.groups > 0 && g.L > 0) {
      const auto copies = static_cast<float>(g.groups / C);
      for (std::int64_t c = 0; c < C; ++c) {
        const auto u = static_cast<std::size_t>(c);
        if constexpr (is(family_mutation::in_running_first_instance)) {
          b.running_mean[c] = copies_mean[u];
          b.running_var[c] = copies_var[u];
        } else if constexpr (is(family_mutation::in_running_batch_stats)) {
          // Batch norm's update: the channel's statistics over every (n, spatial) element.
          float sx = 0.0F;
          for (std::int64_t n = 0; n < g.groups / C; ++n) {
            g.group(n * C + c).for_range(0, g.L, [&](element e) { sx += b.x[e]; });
          }
          const float count = copies * static_cast<float>(g.L);
          const float mean = sx / count;
          float m2 = 0.0F;
          for (std::int64_t n = 0; n < g.groups / C; ++n) {
            g.group(n * C + c).for_range(0, g.L, [&](element e) {
              const float d = b.x[e] - mean;
              m2 += d * d;
            });
          }
          b.running_mean[c] = (1.0F - f) * b.running_mean[c] + f * mean;
          b.running_var[c] = (1.0F - f) * b.running_var[c] + f * (m2 / (count - 1.0F));
        } else {
          b.running_mean[c] = copies_mean[u] / copies;
          b.running_var[c] = copies_var[u] / copies;
        }
      }
    }
    return BNK_OK;  // instance norm does not advance num_batches_tracked (PyTorch)
  }

  // Instance norm with running statistics: (x − μ_run[c])·γ·r + β per instance.
  static bnk_status forward_inference(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                      const group_layout& g, rejection& r) {
    const bool running = p.op.kind == BNK_OP_INSTANCE_NORM && p.op.running_stats != 0;
    if (!running || is(family_mutation::in_eval_uses_input_stats)) {
      bnk_problem_v2 q = p;
      q.track_running = 0;
      return forward_training(q, raw, g, r);
    }
    const buffers b = view(raw);
    if (g.groups == 0 || g.L == 0) return BNK_OK;
    if (missing(raw.src, "src", r) || missing(raw.dst, "dst", r) ||
        missing(raw.running_mean, "running_mean", r) ||
        missing(raw.running_var, "running_var", r)) {
      return r.status;
    }
    if (has_params(p) && (missing(raw.gamma, "gamma", r) || missing(raw.beta, "beta", r))) {
      return r.status;
    }
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const std::int64_t c = g.channel(grp, 0);
      const float scale = gamma_of(p, b, c) * rstd_of(p, b.running_var[c]);
      const float mean = b.running_mean[c];
      const float beta = beta_of(p, b, c);
      g.group(grp).for_range(
          0, g.L, [&](element e) { b.y[e.offset] = D::store((b.x[e] - mean) * scale + beta); });
    }
    return BNK_OK;
  }

  // dx = r·(g − mean(g) − x̂·mean(g·x̂)) with g = γ·dy (no mean(g) without centring);
  // dγ_j = Σ dy·x̂ and dβ_j = Σ dy over the elements of entry j.
  static bnk_status backward_training(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                      const group_layout& g0, rejection& r) {
    const buffers b = view(raw);
    const bool affine = has_params(p) && g0.params > 0;
    if (backward_buffers_missing(raw, g0, affine, r)) return r.status;
    if (refuses_single_spatial(p, g0, r)) return r.status;
    group_layout dense;
    bool all_dense = false;
    bool normalize_dense = false;  // the normalize pass is forward's
    if (!read_layouts(p, dense, all_dense, normalize_dense, r)) return r.status;
    const group_layout& g = all_dense ? dense : g0;
    if (affine) {
      for (std::int64_t j = 0; j < g.params; ++j) b.dgamma[j] = b.dbeta[j] = 0.0F;
    }
    const bool cen = centred(p);
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      if (g.L == 0) continue;
      const group_view v = g.group(grp);
      const stats s = stats_of(p, stats_view(p, g, grp), b.x);
      const float mean = s.mean;
      const float rstd = s.rstd;
      float Lf = static_cast<float>(g.L);
      if constexpr (is(family_mutation::gn_backward_w_for_hw)) {
        // The group's size taken as (C/G)·W, the last extent only, where (C/G)·H·W was meant.
        if (p.op.kind == BNK_OP_GROUP_NORM && p.shape.rank > 2) {
          Lf = static_cast<float>(g.channels_per_group * p.shape.dims[p.shape.rank - 1]);
        }
      }
      const auto gi = [&](element e) {
        std::int64_t j = g.param(grp, e.index);
        if constexpr (is(family_mutation::dx_gamma_of_first_element)) j = g.param(grp, 0);
        return gamma_of(p, b, j, true) * b.dy[e];
      };
      const auto xhat = [&](element e) { return (b.x[e] - mean) * rstd; };
      const float sum_g = sum(v, gi, false);
      float sum_g_xhat = 0.0F;
      if constexpr (is(family_mutation::dx_projection_ignores_gamma)) {
        sum_g_xhat = sum(
            v, [&](element e) { return b.dy[e] * xhat(e); }, false);
      } else {
        sum_g_xhat = sum(
            v, [&](element e) { return gi(e) * xhat(e); }, false);
      }
      bool subtract_mean = cen;
      if constexpr (is(family_mutation::dx_mean_term_dropped)) subtract_mean = false;
      if constexpr (is(family_mutation::rms_dx_mean_term_added)) subtract_mean = true;
      const float mean_g = subtract_mean ? sum_g / Lf : 0.0F;
      const float mean_g_xhat = sum_g_xhat / Lf;
      if constexpr (is(family_mutation::dgamma_last_row_only)) {
        // Each group stores its partial dγ instead of adding to it: the last group's remains.
        if (affine) v.for_range(0, g.L, [&](element e) { b.dgamma[g.param(grp, e.index)] = 0.0F; });
      }
      v.for_range(0, g.L, [&](element e) {
        const float xh = xhat(e);
        b.dx[e.offset] = D::store(rstd * ((gi(e) - mean_g) - xh * mean_g_xhat));
        if (!affine) return;
        const std::int64_t j = g.param(grp, e.index);
        float term = b.dy[e] * xh;
        if constexpr (is(family_mutation::dgamma_uncentred_family)) term = b.dy[e] * b.x[e] * rstd;
        if constexpr (is(family_mutation::fam_dgamma_terms_in_bf16)) term = to_bf16(term);
        b.dgamma[j] += term;
        if constexpr (is(family_mutation::fam_dgamma_accumulated_in_bf16)) {
          b.dgamma[j] = to_bf16(b.dgamma[j]);
        }
        b.dbeta[j] += b.dy[e];
      });
    }
    return BNK_OK;
  }

  // Instance norm with running statistics: dx = γ·r·dy, dγ = r·Σdy·(x − μ_run), dβ = Σdy.
  static bnk_status backward_inference(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                       const group_layout& g, rejection& r) {
    const bool running = p.op.kind == BNK_OP_INSTANCE_NORM && p.op.running_stats != 0;
    if (!running) return backward_training(p, raw, g, r);
    const buffers b = view(raw);
    const bool affine = has_params(p) && g.params > 0;
    if (g.groups == 0 || g.L == 0) return BNK_OK;
    if (missing(raw.src, "src", r) || missing(raw.diff_dst, "diff_dst", r) ||
        missing(raw.diff_src, "diff_src", r) || missing(raw.running_mean, "running_mean", r) ||
        missing(raw.running_var, "running_var", r)) {
      return r.status;
    }
    if (affine && (missing(raw.gamma, "gamma", r) || missing(raw.diff_gamma, "diff_gamma", r) ||
                   missing(raw.diff_beta, "diff_beta", r))) {
      return r.status;
    }
    if (affine) {
      for (std::int64_t j = 0; j < g.params; ++j) b.dgamma[j] = b.dbeta[j] = 0.0F;
    }
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const std::int64_t c = g.channel(grp, 0);
      const float rstd = rstd_of(p, b.running_var[c]);
      const float scale = gamma_of(p, b, c, true) * rstd;
      const float mean = b.running_mean[c];
      const group_view v = g.group(grp);
      v.for_range(0, g.L, [&](element e) { b.dx[e.offset] = D::store(scale * b.dy[e]); });
      if (!affine) continue;
      b.dbeta[c] += sum(
          v, [&](element e) { return b.dy[e]; }, false);
      b.dgamma[c] += sum(
                         v, [&](element e) { return b.dy[e] * (b.x[e] - mean); }, false) *
                     rstd;
    }
    return BNK_OK;
  }
};

// A version-2 entry point of mutation M's mode Mode, for layer, RMS, group and instance norm in
// every data type (validation, the ABI glue and the widening of common/norm_kernel.hpp).
template <family_mutation M, bnk_mode Mode>
int family_entry(const bnk_problem_v2* problem, const bnk_buffers_v2* buffers, char* message,
                 std::size_t message_size) noexcept {
  return guarded_entry(problem, buffers, message, message_size, [&](rejection& r) {
    const bnk_problem_v2& p = *problem;
    if (p.struct_size < sizeof(bnk_problem_v2)) {
      reject(r, BNK_FAILED, "bnk_problem_v2.struct_size %u is too small",
             static_cast<unsigned>(p.struct_size));
      return r.status;
    }
    if (p.op.kind == BNK_OP_BATCH_NORM || p.op.kind < 0 || p.op.kind > BNK_OP_INSTANCE_NORM) {
      reject(r, BNK_UNSUPPORTED, "op %d is not supported by this kernel",
             static_cast<int>(p.op.kind));
      return r.status;
    }
    if (!known_types(p, r)) return r.status;
    group_layout g;
    if (!make_layout(p, k_all_layouts, g, r)) return r.status;
    switch (p.types.data) {
      case BNK_DTYPE_F16:
        return run_widened<family<M, float16_bits>, Mode>(p, *buffers, g, r);
      case BNK_DTYPE_BF16:
        return run_widened<family<M, bfloat16_bits>, Mode>(p, *buffers, g, r);
      default:
        return run_widened<family<M, float>, Mode>(p, *buffers, g, r);
    }
  });
}

inline constexpr std::uint32_t k_family_ops =
    BNK_OP_BIT(BNK_OP_LAYER_NORM) | BNK_OP_BIT(BNK_OP_RMS_NORM) | BNK_OP_BIT(BNK_OP_GROUP_NORM) |
    BNK_OP_BIT(BNK_OP_INSTANCE_NORM);

template <family_mutation M>
constexpr bnk_kernel_v2 family_table(const char* name) {
  return bnk_kernel_v2{
      .abi_version = BNK_ABI_VERSION_2,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel_v2)),
      .name = name,
      .version = "1.0",
      .convention = "pytorch",
      .ops = k_family_ops,
      .layouts = k_all_layouts,
      .data_types = k_all_types,
      .parameter_types = k_all_types,
      .statistic_types = k_all_types,
      .updates_running = 1,
      .supports_cumulative = 0,
      .saves = BNK_SAVES_MEAN_INVSTD,
      .forward_training = &family_entry<M, BNK_FORWARD_TRAINING>,
      .forward_inference = &family_entry<M, BNK_FORWARD_INFERENCE>,
      .backward_training = &family_entry<M, BNK_BACKWARD_TRAINING>,
      .backward_inference = &family_entry<M, BNK_BACKWARD_INFERENCE>,
      .syncbn_merge = nullptr,
      .fold = nullptr,
  };
}

}  // namespace bnoracle::kernels::mutants

// A plugin exporting the family kernel of mutation MUTATION under NAME.
#define BNM_FAMILY_KERNEL(NAME, MUTATION)                                            \
  namespace {                                                                        \
  constexpr bnk_kernel_v2 k_family_table = bnoracle::kernels::mutants::family_table< \
      bnoracle::kernels::mutants::family_mutation::MUTATION>(NAME);                  \
  }                                                                                  \
  BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {                         \
    return &k_family_table;                                                          \
  }
#define BNM_FAMILY_MUTANT(MUTATION) BNM_FAMILY_KERNEL(#MUTATION, MUTATION)
