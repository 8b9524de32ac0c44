// The parent of the mutation catalog: one correct float32 batch-norm kernel, templated on a
// `mutation`, and the one-line deviations that turn it into each mutant.
//
// The parent (`mutation::none`, built as libbnm_parent.so) is the bundled `two_pass` kernel
// written out with its mutation points: sequential float32 sums in logical order, two-pass
// variance, PyTorch's running statistics (momentum and momentum = None), all four modes, every
// layout through the generic strides of common/norm_kernel.hpp, saved mean and invstd, the SyncBN
// merge and the fold. It gives the same bits as `two_pass`. Validation and the ABI glue are the
// bundled ones (`make_geometry`, `entry`, `op_entry`, `make_table`); only the arithmetic is
// written here, because that is where the bugs go.
//
// Each mutant (kernels/mutants/<name>.cpp, listed in MANIFEST.tsv) instantiates this header with
// its own `mutation` value. Every place a real bug would sit is an `if constexpr (M ==
// mutation::xxx)` at that line, so the deviation reads as one line beside the correct code; the
// mutant's source names the real-world bug (/work/shared/BUGS.md) and when it shows.
#pragma once

#include "common/norm_kernel.hpp"
#include "scheduling.hpp"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace bnoracle::kernels::mutants {

// One value per mutant, grouped by the sections of MANIFEST.tsv. `none` is the parent.
enum class mutation {
  none,
  // variance
  one_pass_variance,
  one_pass_variance_clamped,
  mean_count_per_batch,
  // overflow
  late_rstd,
  inference_scale_shift,
  squares_underflow_flushed,
  // low_precision
  sums_in_half,
  backward_sums_in_bf16,
  saved_stats_in_half,
  running_update_in_half,
  // running_stats
  biased_running_var,
  running_var_includes_eps,
  running_not_updated,
  running_updated_in_eval,
  unbiased_factor_per_batch,
  cumulative_count_before_increment,
  counter_per_channel,
  unbiased_normalization,
  // degenerate
  single_value_not_refused,
  empty_batch_nan_running,
  spatial1_special_path,
  // conventions
  momentum_swapped,
  eps_outside_sqrt,
  rsqrt_max_var_eps,
  eps_default_ignored,
  // train_eval
  eval_uses_batch_stats,
  instance_norm,
  // backward
  backward_drops_stats,
  invstd_read_as_var,
  dgamma_uncentered,
  backward_odd_size,
  eval_backward_uses_batch_stats,
  // layouts
  ignores_strides,
  dy_read_dense,
  nhwc_channel_block,
  spatial1_dense_assumed,
  // vector_tails
  vector_tail_dropped,
  block_remainder_dropped,
  tail_double_counted,
  misaligned_head_double_counted,
  // syncbn
  syncbn_equal_counts,
  syncbn_no_between_term,
  syncbn_running_per_shard_bessel,
  syncbn_one_pass_merge,
  // folding
  fold_ignores_bias,
  fold_bias_unscaled,
  fold_no_eps,
  fold_no_bias_drops_mean,
  // determinism
  nondeterministic_sum,
  // nan
  nan_poisons_all_channels,
  zero_variance_nan,
  accumulator_not_reset,
  nan_masked_as_padding,
  // Test material outside the catalog (tests/mutants: not in MANIFEST.tsv, not in the kill
  // matrix): deviations that tests need and no shipped bug imitates.
  off_by_one_percent,
};

// ---- Narrow formats, emulated on the float32 encoding (no _Float16 or __bf16) ---------------

// v rounded to drop its `drop` lowest encoding bits, ties to even. On the encoding of a finite
// float a carry out of the fraction bumps the exponent, which is exactly the rounding up to the
// next binade (or to infinity).
inline float clear_low_bits(float v, int drop) {
  auto u = std::bit_cast<std::uint32_t>(v);
  const std::uint32_t lsb = (u >> drop) & 1U;
  u += (1U << (drop - 1)) - 1U + lsb;
  u &= ~((1U << drop) - 1U);
  return std::bit_cast<float>(u);
}

// The nearest bfloat16 (8 significant bits, float32's exponent range).
inline float to_bf16(float v) {
  return std::isnan(v) ? v : clear_low_bits(v, 16);
}

// The nearest IEEE binary16: 11 significant bits, subnormals below 2^-14 in steps of 2^-24,
// overflow to ±Inf from 65520 on.
inline float to_half(float v) {
  if (!std::isfinite(v)) return v;
  if (std::fabs(v) < 0x1p-14F) return std::nearbyint(v * 0x1p24F) * 0x1p-24F;  // exact scalings
  const float h = clear_low_bits(v, 13);
  return std::fabs(h) > 65504.0F ? std::copysign(std::numeric_limits<float>::infinity(), v) : h;
}

// ---- Problem-level helpers --------------------------------------------------------------------

// ε as the kernel uses it.
template <mutation M>
float eps_of(double eps) {
  if constexpr (M == mutation::eps_default_ignored) {
    return 1e-5F;  // the framework default, whatever the model asked for
  } else {
    return static_cast<float>(eps);
  }
}

// 1/sqrt(v + ε): the one place every mode, the merge and the fold take it from.
template <mutation M>
float rstd(float v, float eps) {
  if constexpr (M == mutation::eps_outside_sqrt) {
    return 1.0F / (std::sqrt(v) + eps);
  } else if constexpr (M == mutation::rsqrt_max_var_eps) {
    return 1.0F / std::sqrt(std::max(v, eps));
  } else {
    return inv_std(v, eps);
  }
}

// The weight of the new batch in the running average; t is num_batches_tracked after the
// increment.
template <mutation M>
float new_weight(std::int32_t cumulative, double momentum, std::int64_t t) {
  if (cumulative != 0) {
    if constexpr (M == mutation::cumulative_count_before_increment) {
      return 1.0F / static_cast<float>(std::max<std::int64_t>(t - 1, 1));  // guarded, not fixed
    } else {
      return 1.0F / static_cast<float>(t);
    }
  }
  if constexpr (M == mutation::momentum_swapped) {
    return 1.0F - static_cast<float>(momentum);
  } else {
    return static_cast<float>(momentum);
  }
}

// A channel's batch statistics: mean, the biased variance and the unbiased one.
struct stats {
  float mean;
  float var;
  float unbiased;
};

// running ← (1 − f)·running + f·batch, with the batch's unbiased variance (PyTorch).
// `batch_extent` is N, the batch dimension alone.
template <mutation M>
void update_running(float& running_mean, float& running_var, float f, const stats& st,
                    std::int64_t batch_extent, float eps) {
  float batch_var = st.unbiased;
  if constexpr (M == mutation::biased_running_var) batch_var = st.var;
  if constexpr (M == mutation::unbiased_factor_per_batch) {
    const auto n = static_cast<float>(batch_extent);
    batch_var = st.var * (n / (n - 1.0F));
  }
  if constexpr (M == mutation::running_var_includes_eps) batch_var = st.unbiased + eps;
  float new_mean = (1.0F - f) * running_mean + f * st.mean;
  float new_var = (1.0F - f) * running_var + f * batch_var;
  if constexpr (M == mutation::running_update_in_half) {
    new_mean = to_half(new_mean);
    new_var = to_half(new_var);
  }
  if constexpr (M == mutation::running_not_updated) return;
  running_mean = new_mean;
  running_var = new_var;
}

// The geometry of dense NCHW strides (channels-first, row-major) for the problem's extents.
inline geometry dense_nchw(const bnk_problem& p) {
  bnk_problem dense = p;
  std::int64_t stride = 1;
  for (int d = p.shape.rank; d-- > 0;) {
    dense.shape.strides[d] = stride;
    stride *= p.shape.dims[d];
  }
  geometry g;
  rejection ignored;
  (void)make_geometry(dense, k_all_layouts, g, ignored);  // the same extents passed already
  return g;
}

// The geometry the kernel reads and writes the tensors through: the problem's own strides.
template <mutation M>
geometry view(const bnk_problem& p, const geometry& g) {
  if constexpr (M == mutation::ignores_strides) {
    // Every named layout taken for dense NCHW (the strided path, a separate kernel, is right).
    if (p.shape.layout != BNK_LAYOUT_STRIDED) return dense_nchw(p);
  }
  return g;
}

// diff_dst as the backward reads it.
template <mutation M>
const float* diff_dst_as_read(const bnk_problem& p, const geometry& g, const float* dy,
                              std::vector<float>& gathered) {
  if constexpr (M == mutation::dy_read_dense) {
    // dy read with dense NCHW strides whatever the layout. Named layouts only: their strides are
    // dense, so every dense offset lies inside diff_dst.
    if (p.shape.layout != BNK_LAYOUT_STRIDED && !g.empty() && g.ext[0] > 0) {
      gathered.assign(static_cast<std::size_t>(g.L * g.c), 0.0F);
      const std::int64_t spatial = g.L / g.ext[0];
      for (std::int64_t c = 0; c < g.c; ++c) {
        g.channel(c).for_range(0, g.L, [&, k = std::int64_t{0}](std::int64_t o) mutable {
          const std::int64_t dense = (k / spatial) * g.c * spatial + c * spatial + k % spatial;
          gathered[static_cast<std::size_t>(o)] = dy[dense];
          ++k;
        });
      }
      return gathered.data();
    }
  }
  return dy;
}

// The buffers a mode needs (the checks of common/norm_kernel.hpp, as one table).
inline bool has_buffers(bnk_mode mode, const bnk_problem& p, const bnk_buffers& b,
                        const geometry& g, rejection& r) {
  const bool forward = mode == BNK_FORWARD_TRAINING || mode == BNK_FORWARD_INFERENCE;
  const bool channels = g.c > 0;
  const bool data = channels && g.L > 0;
  const bool affine = channels && p.affine != 0;
  const bool track = mode == BNK_FORWARD_TRAINING && p.track_running != 0;
  const bool running = track || mode == BNK_FORWARD_INFERENCE || mode == BNK_BACKWARD_INFERENCE;
  const struct {
    const void* ptr;
    const char* name;
    bool needed;
  } needs[] = {
      {b.src, "src", data},
      {b.dst, "dst", data && forward},
      {b.diff_dst, "diff_dst", data && !forward},
      {b.diff_src, "diff_src", data && !forward},
      {b.gamma, "gamma", affine},
      {b.beta, "beta", affine && forward},
      {b.diff_gamma, "diff_gamma", affine && !forward},
      {b.diff_beta, "diff_beta", affine && !forward},
      {b.running_mean, "running_mean", channels && running},
      {b.running_var, "running_var", channels && running},
      {b.num_batches_tracked, "num_batches_tracked", track},
  };
  for (const auto& n : needs) {
    if (n.needed && missing(n.ptr, n.name, r)) return false;
  }
  return true;
}

// PyTorch refuses one value per channel in training (forward and backward).
template <mutation M>
bool accepts_size(const geometry& g, rejection& r) {
  if constexpr (M == mutation::single_value_not_refused) return true;
  if (g.L == 1) return reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
  return true;
}

// ---- Reductions -------------------------------------------------------------------------------

// Which sum a reduction computes, so that a mutation can hit the forward statistics (Σx,
// Σ(x − μ)²) or the backward sums (Σdy, Σdy·(x − μ)).
enum class sum_of { x, squares, dy, dy_xc };

// init + Σ term(offset) over the channel: the parent adds every element once, left to right, in
// one float accumulator.
template <mutation M, class Term>
float reduce(const channel_view& ch, sum_of what, const Term& term, float init = 0.0F) {
  const bool statistic = what == sum_of::x || what == sum_of::squares;
  float s = init;
  const auto add = [&](std::int64_t lo, std::int64_t hi) {
    ch.for_range(lo, hi, [&](std::int64_t o) {
      const float t = term(o);
      if constexpr (M == mutation::nan_masked_as_padding) {
        if (statistic && std::isnan(t)) return;  // NaN taken for a padding lane
      }
      s += t;
      if constexpr (M == mutation::sums_in_half) {
        if (statistic) s = to_half(s);
      }
      if constexpr (M == mutation::backward_sums_in_bf16) {
        if (!statistic) s = to_bf16(s);
      }
    });
  };
  const std::int64_t L = ch.size();
  std::int64_t end = L;
  if constexpr (M == mutation::vector_tail_dropped) {
    if (statistic) end = L - L % 4;  // vectors of 4, no remainder loop
  }
  if constexpr (M == mutation::block_remainder_dropped) {
    if (statistic && L > 256) end = L - L % 256;  // blocks of 256, the partial block lost
  }
  if constexpr (M == mutation::backward_odd_size) {
    if (!statistic) end = L - L % 2;  // unrolled by 2, the odd element lost
  }
  if constexpr (M == mutation::tail_double_counted) {
    if (statistic && L % 4 != 0) {
      const std::int64_t body = L - L % 4;
      add(0, body);
      add(std::max<std::int64_t>(body - 4, 0), L);  // the remainder starts a vector early
      return s;
    }
  }
  if constexpr (M == mutation::nondeterministic_sum) {
    // Three blocks' partial sums added atomically in the order the blocks finish: here the
    // scheduler decides (scheduling.hpp).
    const std::int64_t cut[4] = {0, L / 3, 2 * L / 3, L};
    const auto first = first_block_to_finish();
    for (int i = 0; i < 3; ++i) {
      const int k = (first + i) % 3;
      s += sequential_sum(ch, cut[k], cut[k + 1], term);
    }
    return s;
  }
  add(0, end);
  return s;
}

// Elements the scalar head before the first 16-byte boundary covers.
inline std::int64_t head_to_alignment(const float* first, std::int64_t L) {
  const auto misalign = reinterpret_cast<std::uintptr_t>(first) % 16U;
  return std::min(static_cast<std::int64_t>((16U - misalign) % 16U / sizeof(float)), L);
}

// Mean and variances of the elements of `ch` (its first element at x[first]), dividing by n.
// `carry` is the reduction scratch shared by the channels of one call.
template <mutation M>
stats moments_of(const channel_view& ch, std::int64_t first, const float* x, std::int64_t n,
                 float& carry) {
  const auto nf = static_cast<float>(n);
  const auto value = [x](std::int64_t o) { return x[o]; };
  float head = 0.0F;  // what is added before the body
  if constexpr (M == mutation::misaligned_head_double_counted) {
    // A scalar head up to the 16-byte boundary, then the vector body from element 0 again.
    head = sequential_sum(ch, 0, head_to_alignment(x + first, ch.size()), value);
  }
  float init = 0.0F;
  if constexpr (M == mutation::accumulator_not_reset) init = carry;  // the last channel's sum
  const float sum = reduce<M>(ch, sum_of::x, value, init + head);
  carry = sum;
  const float mean = sum / nf;
  if constexpr (M == mutation::one_pass_variance || M == mutation::one_pass_variance_clamped) {
    const float squares =
        reduce<M>(ch, sum_of::squares, [x](std::int64_t o) { return x[o] * x[o]; });
    float var = squares / nf - mean * mean;  // E[x²] − E[x]²
    if constexpr (M == mutation::one_pass_variance_clamped) var = std::max(var, 0.0F);
    return {mean, var, var * (nf / static_cast<float>(n - 1))};
  } else {
    const auto centered = [x, mean](std::int64_t o) {
      const float d = x[o] - mean;
      float sq = d * d;
      if constexpr (M == mutation::squares_underflow_flushed) {
        if (sq < FLT_MIN) sq = 0.0F;  // flush to zero of a subnormal result
      }
      return sq;
    };
    if constexpr (M == mutation::misaligned_head_double_counted) {
      head = sequential_sum(ch, 0, head_to_alignment(x + first, ch.size()), centered);
    }
    const float m2 = reduce<M>(ch, sum_of::squares, centered, head);
    return {mean, m2 / nf, m2 / static_cast<float>(n - 1)};
  }
}

// The batch statistics of channel c.
template <mutation M>
stats channel_statistics(const bnk_problem& p, const geometry& g, std::int64_t c, const float* x,
                         float& carry) {
  channel_view ch = g.channel(c);
  std::int64_t n = g.L;
  if constexpr (M == mutation::nhwc_channel_block) {
    // Channels-last: channels reduced 4 at a time, rows in blocks of 256. The last channel
    // vector, when C % 4 != 0, is left out of the cross-block step: only the first block counts.
    const bool channels_last =
        p.shape.layout == BNK_LAYOUT_NHWC || p.shape.layout == BNK_LAYOUT_NDHWC;
    if (channels_last && c >= g.c - g.c % 4 && g.L > 256) {
      ch = channel_view(c * g.channel_stride, g.ext, g.stride, 256);
      n = 256;
    }
  }
  std::int64_t first = c * g.channel_stride;
  if constexpr (M == mutation::spatial1_dense_assumed) {
    // Spatial size 1: the N×C reduction assumes channel stride 1, as in NC and NHWC. (With a
    // positive channel stride every read stays between elements of the same row: it may read
    // padding, never outside the tensor's span; the outputs are written through the strides.)
    if (g.L == g.ext[0] && g.channel_stride > 0) {
      first = c;
      ch = channel_view(first, g.ext, g.stride, g.L);
    }
  }
  if constexpr (M == mutation::mean_count_per_batch) n = g.ext[0];  // N, not N·spatial
  return moments_of<M>(ch, first, x, n, carry);
}

// The variance that normalizes: the biased one.
template <mutation M>
float normalizing_var(const geometry& g, const stats& st) {
  if constexpr (M == mutation::unbiased_normalization) return st.unbiased;
  if constexpr (M == mutation::spatial1_special_path) {
    if (g.L == g.ext[0]) return st.unbiased;  // the N×C path's var() helper defaults to unbiased
  }
  return st.var;
}

// ---- The four modes ---------------------------------------------------------------------------

// How one channel is normalized: y = (x − mean)·(γ·rstd) + β.
struct channel_norm {
  float mean;
  float rstd;
  float var;  // the variance rstd came from
  float gamma;
  float beta;
  float eps;
};

// Channel c's normalization (γ = 1, β = 0 without affine).
inline channel_norm norm_of(const bnk_problem& p, const bnk_buffers& b, std::int64_t c, float mean,
                            float rs, float var, float eps) {
  const bool affine = p.affine != 0;
  return {mean, rs, var, affine ? b.gamma[c] : 1.0F, affine ? b.beta[c] : 0.0F, eps};
}

template <mutation M>
void normalize(const channel_view& ch, const float* x, float* y, const channel_norm& n,
               bool inference) {
  const float scale = n.gamma * n.rstd;
  ch.for_range(0, ch.size(), [&](std::int64_t o) {
    if constexpr (M == mutation::late_rstd) {
      y[o] = n.gamma * (x[o] - n.mean) * n.rstd + n.beta;  // γ·(x − μ) formed first
    } else if constexpr (M == mutation::inference_scale_shift) {
      y[o] =
          inference ? x[o] * scale + (n.beta - n.mean * scale) : (x[o] - n.mean) * scale + n.beta;
    } else if constexpr (M == mutation::zero_variance_nan) {
      const float xhat = (x[o] - n.mean) / std::sqrt(n.var);  // 0/0 for a constant channel
      y[o] = n.gamma * (xhat * std::sqrt(n.var / (n.var + n.eps))) + n.beta;
    } else if constexpr (M == mutation::off_by_one_percent) {
      y[o] = 1.01F * ((x[o] - n.mean) * scale) + n.beta;  // a 1% bias loose tolerances hide
    } else {
      y[o] = (x[o] - n.mean) * scale + n.beta;
    }
  });
}

// Instance normalization: every (n, c) instance by the statistics of its spatial positions.
template <mutation M>
void normalize_instances(const geometry& g, std::int64_t c, const float* x, float* y,
                         const channel_norm& n) {
  if (g.ext[0] == 0) return;
  const std::int64_t size = g.L / g.ext[0];
  const std::int64_t ext[4] = {1, g.ext[1], g.ext[2], g.ext[3]};
  for (std::int64_t i = 0; i < g.ext[0]; ++i) {
    const std::int64_t first = c * g.channel_stride + i * g.stride[0];
    const channel_view instance(first, ext, g.stride, size);
    float carry = 0.0F;
    const stats st = moments_of<M>(instance, first, x, size, carry);
    const channel_norm in{st.mean, rstd<M>(st.var, n.eps), st.var, n.gamma, n.beta, n.eps};
    normalize<M>(instance, x, y, in, false);
  }
}

template <mutation M>
bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g0,
                            rejection& r) {
  const geometry g = view<M>(p, g0);
  if (!has_buffers(BNK_FORWARD_TRAINING, p, b, g, r) || !accepts_size<M>(g, r)) return r.status;
  const bool track = p.track_running != 0;
  if (track && (*b.num_batches_tracked < 0 ||
                *b.num_batches_tracked == std::numeric_limits<std::int64_t>::max())) {
    reject(r, BNK_FAILED, "num_batches_tracked is out of range");
    return r.status;
  }
  const float eps = eps_of<M>(p.eps);
  std::int64_t t = track ? *b.num_batches_tracked + 1 : 0;  // after the increment
  float f = track ? new_weight<M>(p.cumulative, p.momentum, t) : 0.0F;
  float carry = 0.0F;
  bool poisoned = false;
  for (std::int64_t c = 0; c < g.c; ++c) {
    if constexpr (M == mutation::counter_per_channel) {
      if (track) {  // the batch counted once per channel
        t = ++*b.num_batches_tracked;
        f = new_weight<M>(p.cumulative, p.momentum, t);
      }
    }
    if (g.L == 0) {  // no statistics (0/0): saved NaN, running statistics kept
      if (b.save_mean != nullptr) b.save_mean[c] = nan_f();
      if (b.save_stat != nullptr) b.save_stat[c] = nan_f();
      if constexpr (M == mutation::empty_batch_nan_running) {
        if (track) {
          const stats none{nan_f(), nan_f(), nan_f()};
          update_running<M>(b.running_mean[c], b.running_var[c], f, none, g.ext[0], eps);
        }
      }
      continue;
    }
    const stats st = channel_statistics<M>(p, g, c, b.src, carry);
    const float var = normalizing_var<M>(g, st);
    const float rs = rstd<M>(var, eps);
    if constexpr (M == mutation::nan_poisons_all_channels) {
      poisoned = poisoned || !std::isfinite(st.mean) || !std::isfinite(var);  // one flag per call
    }
    float saved_mean = st.mean;
    float saved_rstd = rs;
    if constexpr (M == mutation::saved_stats_in_half) {
      saved_mean = to_half(saved_mean);
      saved_rstd = to_half(saved_rstd);
    }
    if (b.save_mean != nullptr) b.save_mean[c] = saved_mean;
    if (b.save_stat != nullptr) b.save_stat[c] = saved_rstd;
    const channel_norm n = norm_of(p, b, c, st.mean, rs, var, eps);
    if constexpr (M == mutation::instance_norm) {
      normalize_instances<M>(g, c, b.src, b.dst, n);
    } else {
      normalize<M>(g.channel(c), b.src, b.dst, n, false);
    }
    if (track) update_running<M>(b.running_mean[c], b.running_var[c], f, st, g.ext[0], eps);
  }
  if constexpr (M == mutation::nan_poisons_all_channels) {
    if (poisoned) {  // a non-finite statistic anywhere: every output of the call is NaN
      for (std::int64_t c = 0; c < g.c; ++c) {
        g.channel(c).for_range(0, g.L, [&](std::int64_t o) { b.dst[o] = nan_f(); });
      }
    }
  }
  if constexpr (M != mutation::counter_per_channel) {
    if (track) *b.num_batches_tracked = t;
  }
  return BNK_OK;
}

template <mutation M>
bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g0,
                             rejection& r) {
  const geometry g = view<M>(p, g0);
  if (g.empty()) return BNK_OK;
  if (!has_buffers(BNK_FORWARD_INFERENCE, p, b, g, r)) return r.status;
  const float eps = eps_of<M>(p.eps);
  float carry = 0.0F;
  for (std::int64_t c = 0; c < g.c; ++c) {
    float mean = b.running_mean[c];
    float var = b.running_var[c];
    if constexpr (M == mutation::eval_uses_batch_stats) {
      const stats st = channel_statistics<M>(p, g, c, b.src, carry);
      mean = st.mean;
      var = st.var;
    }
    const channel_norm n = norm_of(p, b, c, mean, rstd<M>(var, eps), var, eps);
    normalize<M>(g.channel(c), b.src, b.dst, n, true);
    if constexpr (M == mutation::running_updated_in_eval) {
      // The training branch's update, also run in eval: it writes an input.
      const stats st = channel_statistics<M>(p, g, c, b.src, carry);
      update_running<M>(b.running_mean[c], b.running_var[c], static_cast<float>(p.momentum), st,
                        g.ext[0], eps);
    }
  }
  return BNK_OK;
}

// Σdy and Σdy·(x − mean) over a channel.
struct gradient_sums {
  float dy;
  float dy_xc;
};

template <mutation M>
gradient_sums gradient_sums_of(const channel_view& ch, const float* x, const float* dy,
                               float mean) {
  const float sum_dy = reduce<M>(ch, sum_of::dy, [dy](std::int64_t o) { return dy[o]; });
  const float sum_dy_xc = reduce<M>(ch, sum_of::dy_xc, [x, dy, mean](std::int64_t o) {
    if constexpr (M == mutation::dgamma_uncentered) {
      return dy[o] * x[o];  // the −μ forgotten
    } else {
      return dy[o] * (x[o] - mean);
    }
  });
  return {sum_dy, sum_dy_xc};
}

template <mutation M>
bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g0,
                             rejection& r) {
  const geometry g = view<M>(p, g0);
  if (!has_buffers(BNK_BACKWARD_TRAINING, p, b, g, r) || !accepts_size<M>(g, r)) return r.status;
  const bool affine = p.affine != 0;
  const float eps = eps_of<M>(p.eps);
  const bool saved = b.save_mean != nullptr && b.save_stat != nullptr;
  const auto Lf = static_cast<float>(g.L);
  std::vector<float> gathered;
  const float* x = b.src;
  const float* dy = diff_dst_as_read<M>(p, g, b.diff_dst, gathered);
  float carry = 0.0F;
  for (std::int64_t c = 0; c < g.c; ++c) {
    if (g.L == 0) {  // empty sums
      if (affine) b.diff_gamma[c] = b.diff_beta[c] = 0.0F;
      continue;
    }
    const channel_view ch = g.channel(c);
    float mean = 0.0F;
    float rs = 0.0F;
    if (saved) {
      mean = b.save_mean[c];
      rs = b.save_stat[c];
      if constexpr (M == mutation::invstd_read_as_var) rs = rstd<M>(b.save_stat[c], eps);
    } else {
      const stats st = channel_statistics<M>(p, g, c, x, carry);
      mean = st.mean;
      rs = rstd<M>(normalizing_var<M>(g, st), eps);
    }
    const gradient_sums s = gradient_sums_of<M>(ch, x, dy, mean);
    const float dgamma = s.dy_xc * rs;  // Σ dy·x̂
    if (affine) {
      b.diff_gamma[c] = dgamma;
      b.diff_beta[c] = s.dy;
    }
    const float scale = (affine ? b.gamma[c] : 1.0F) * rs;
    const float mean_dy = s.dy / Lf;
    const float mean_dy_xhat = dgamma / Lf;
    float* dx = b.diff_src;
    ch.for_range(0, g.L, [&](std::int64_t o) {
      if constexpr (M == mutation::backward_drops_stats) {
        dx[o] = scale * dy[o];  // μ and σ taken for constants
      } else {
        const float xhat = (x[o] - mean) * rs;
        dx[o] = scale * ((dy[o] - mean_dy) - xhat * mean_dy_xhat);
      }
    });
  }
  return BNK_OK;
}

template <mutation M>
bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g0,
                              rejection& r) {
  if constexpr (M == mutation::eval_backward_uses_batch_stats) {
    bnk_buffers training = b;  // the training gradient, through batch statistics
    training.save_mean = training.save_stat = nullptr;
    return backward_training<M>(p, training, g0, r);
  }
  const geometry g = view<M>(p, g0);
  if (!has_buffers(BNK_BACKWARD_INFERENCE, p, b, g, r)) return r.status;
  const bool affine = p.affine != 0;
  const float eps = eps_of<M>(p.eps);
  std::vector<float> gathered;
  const float* dy = diff_dst_as_read<M>(p, g, b.diff_dst, gathered);
  for (std::int64_t c = 0; c < g.c; ++c) {
    const channel_view ch = g.channel(c);
    const float rs = rstd<M>(b.running_var[c], eps);
    const float scale = (affine ? b.gamma[c] : 1.0F) * rs;
    float* dx = b.diff_src;
    ch.for_range(0, g.L, [&](std::int64_t o) { dx[o] = scale * dy[o]; });
    if (affine) {
      const gradient_sums s = gradient_sums_of<M>(ch, b.src, dy, b.running_mean[c]);
      b.diff_beta[c] = s.dy;
      b.diff_gamma[c] = s.dy_xc * rs;
    }
  }
  return BNK_OK;
}

// ---- SyncBN merge and folding -----------------------------------------------------------------

template <mutation M>
bnk_status merge_shards(const bnk_syncbn_problem& p, const bnk_syncbn_buffers& b, rejection& r) {
  // The bundled merge without tracking validates the problem and every buffer but the running
  // ones, and writes only mean, var and invstd, which the loop below overwrites.
  bnk_syncbn_problem untracked = p;
  untracked.track_running = 0;
  if (kernels::syncbn_merge(untracked, b, r) != BNK_OK) return r.status;
  const bool track = p.track_running != 0;
  if (track && (missing(b.num_batches_tracked, "num_batches_tracked", r) ||
                (p.channels > 0 && (missing(b.running_mean, "running_mean", r) ||
                                    missing(b.running_var, "running_var", r))))) {
    return r.status;
  }
  const std::int64_t K = p.shards;
  const std::int64_t C = p.channels;
  std::int64_t total = 0;
  for (std::int64_t k = 0; k < K; ++k) total += b.count[k];  // validated: no overflow
  const float eps = eps_of<M>(p.eps);
  const std::int64_t t = track ? *b.num_batches_tracked + 1 : 0;
  const float f = track ? new_weight<M>(p.cumulative, p.momentum, t) : 0.0F;
  const auto n = static_cast<float>(total);
  for (std::int64_t c = 0; c < C; ++c) {
    if (total == 0) continue;  // NaN statistics (written above), running ones kept
    float sum = 0.0F;
    for (std::int64_t k = 0; k < K; ++k) {
      sum += static_cast<float>(b.count[k]) * b.shard_mean[k * C + c];
    }
    float mean = sum / n;
    if constexpr (M == mutation::syncbn_equal_counts) {
      float plain = 0.0F;
      for (std::int64_t k = 0; k < K; ++k) plain += b.shard_mean[k * C + c];
      mean = plain / static_cast<float>(K);  // every shard weighed alike
    }
    float m2 = 0.0F;
    for (std::int64_t k = 0; k < K; ++k) {
      if (b.count[k] == 0) continue;
      const auto nk = static_cast<float>(b.count[k]);
      const float mk = b.shard_mean[k * C + c];
      const float d = mk - mean;
      if constexpr (M == mutation::syncbn_no_between_term) {
        m2 += nk * b.shard_var[k * C + c];  // the spread of the shard means forgotten
      } else if constexpr (M == mutation::syncbn_one_pass_merge) {
        m2 += nk * (b.shard_var[k * C + c] + mk * mk);  // Σx², then minus n·mean² below
      } else {
        m2 += nk * b.shard_var[k * C + c] + nk * (d * d);
      }
    }
    if constexpr (M == mutation::syncbn_one_pass_merge) m2 -= n * (mean * mean);
    const float var = m2 / n;
    b.mean[c] = mean;
    b.var[c] = var;
    b.invstd[c] = rstd<M>(var, eps);
    if (track) {
      std::int64_t bessel = total - 1;
      if constexpr (M == mutation::syncbn_running_per_shard_bessel) bessel = total - K;
      const stats st{mean, var, m2 / static_cast<float>(bessel)};
      update_running<M>(b.running_mean[c], b.running_var[c], f, st, total, eps);
    }
  }
  if (track) *b.num_batches_tracked = t;
  return BNK_OK;
}

template <mutation M>
bnk_status fold_layer(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  // The bundled fold validates the problem and writes both outputs, which the loop overwrites.
  if (kernels::fold(p, b, r) != BNK_OK) return r.status;
  const float eps = eps_of<M>(p.eps);
  for (std::int64_t o = 0; o < p.out_channels; ++o) {
    float s = b.gamma[o] * rstd<M>(b.running_var[o], eps);
    if constexpr (M == mutation::fold_no_eps) s = b.gamma[o] * rstd<M>(b.running_var[o], 0.0F);
    for (std::int64_t k = 0; k < p.fan_in; ++k) {
      b.weight_out[o * p.fan_in + k] = b.weight[o * p.fan_in + k] * s;
    }
    const float bias = p.has_bias != 0 ? b.bias[o] : 0.0F;
    float folded = (bias - b.running_mean[o]) * s + b.beta[o];
    if constexpr (M == mutation::fold_ignores_bias) folded = b.beta[o] - b.running_mean[o] * s;
    if constexpr (M == mutation::fold_bias_unscaled) {
      folded = bias + (b.beta[o] - b.running_mean[o] * s);
    }
    if constexpr (M == mutation::fold_no_bias_drops_mean) {
      if (p.has_bias == 0) folded = b.beta[o];  // "no bias to fold into"
    }
    b.bias_out[o] = folded;
  }
  return BNK_OK;
}

// ---- The table ------------------------------------------------------------------------------

// The policy tag whose `bn<>` specialization (below) routes the bundled glue to these modes.
template <mutation M>
struct policy {};

}  // namespace bnoracle::kernels::mutants

namespace bnoracle::kernels {

// `entry` and `make_table` of common/norm_kernel.hpp call bn<P>'s four modes: for a mutant's
// policy they are the functions above.
template <mutants::mutation M>
struct bn<mutants::policy<M>> {
  static bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                     rejection& r) {
    return mutants::forward_training<M>(p, b, g, r);
  }
  static bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    return mutants::forward_inference<M>(p, b, g, r);
  }
  static bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    return mutants::backward_training<M>(p, b, g, r);
  }
  static bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b,
                                       const geometry& g, rejection& r) {
    return mutants::backward_inference<M>(p, b, g, r);
  }
};

}  // namespace bnoracle::kernels

namespace bnoracle::kernels::mutants {

// The bundled table (PyTorch convention, every layout, all modes, saves mean and invstd) with
// this mutation's modes, merge and fold.
template <mutation M>
constexpr bnk_kernel make_mutant_table(const char* name) {
  bnk_kernel k = make_table<policy<M>>(name);
  k.syncbn_merge = &op_entry<bnk_syncbn_problem, bnk_syncbn_buffers, &merge_shards<M>>;
  k.fold = &op_entry<bnk_fold_problem, bnk_fold_buffers, &fold_layer<M>>;
  return k;
}

}  // namespace bnoracle::kernels::mutants

// The plugin of a catalog entry: its table, named NAME, and the exported entry symbol.
#define BNM_KERNEL(NAME, MUTATION)                                                \
  namespace {                                                                     \
  constexpr bnk_kernel k_table = ::bnoracle::kernels::mutants::make_mutant_table< \
      ::bnoracle::kernels::mutants::mutation::MUTATION>(NAME);                    \
  }                                                                               \
  BNK_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {                         \
    return &k_table;                                                              \
  }

// A mutant: the plugin named after its mutation.
#define BNM_MUTANT(MUTATION) BNM_KERNEL(#MUTATION, MUTATION)
