// The batch-norm algorithm shared by the bundled float32 kernels, written once and instantiated
// per reduction policy. Each kernel (kernels/correct/*.cpp) supplies only how a channel's values
// are summed, and optionally how its mean and M2 = Σ(x − μ)² are formed; everything else — the
// ABI glue, validation, the four modes and the PyTorch running-statistics convention — lives here.
//
// A policy P provides
//   static float P::sum(const channel_view& ch, const Term& term);
//     Σ term(offset) over every element of the channel, in float32, in the policy's own order;
// and may provide
//   static moments P::moments(const channel_view& ch, const float* x);
//     the channel's mean and M2 by the policy's own algorithm (default: two passes of P::sum,
//     mean = Σx/L, then M2 = Σ(x − mean)²).
//
// Every value is float32: accumulators, statistics, ε (rounded once to float) and 1/sqrt. No
// double is used in any computation, because the oracle must judge real float32 numerics.
#pragma once

#include "bnoracle/kernel_abi.h"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>

// The one symbol a plugin exports; the build hides everything else.
#if defined(__GNUC__)
#define BNK_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define BNK_EXPORT extern "C"
#endif

namespace bnoracle::kernels {

// Every layout bit: the kernels honour the strides generically (see `make_geometry`).
inline constexpr std::uint32_t k_all_layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW |
                                               BNK_LAYOUT_NHWC | BNK_LAYOUT_NCDHW |
                                               BNK_LAYOUT_NDHWC | BNK_LAYOUT_STRIDED;

// The elements of one channel in logical order — n-major, then the spatial indices row-major —
// read through the problem's strides. Every policy sees the same order, whatever the layout, so
// the same logical tensor gives the same bits in every layout.
class channel_view {
 public:
  channel_view(std::int64_t base, const std::int64_t (&ext)[4], const std::int64_t (&stride)[4],
               std::int64_t size)
      : base_(base), size_(size) {
    for (int k = 0; k < 4; ++k) {
      ext_[k] = ext[k];
      stride_[k] = stride[k];
    }
  }

  // L, the number of elements.
  [[nodiscard]] std::int64_t size() const { return size_; }

  // Calls f(offset) for the elements lo, lo + 1, ..., hi − 1 of the channel, in order.
  template <class F>
  void for_range(std::int64_t lo, std::int64_t hi, F&& f) const {
    if (lo >= hi) return;
    std::int64_t idx[4];
    std::int64_t rest = lo;
    for (int k = 3; k >= 0; --k) {
      idx[k] = rest % ext_[k];
      rest /= ext_[k];
    }
    std::int64_t off = base_;
    for (int k = 0; k < 4; ++k) off += idx[k] * stride_[k];
    for (std::int64_t j = lo; j < hi; ++j) {
      f(off);
      for (int k = 3; k >= 0; --k) {  // the next index, with carries
        off += stride_[k];
        if (++idx[k] < ext_[k]) break;
        off -= ext_[k] * stride_[k];
        idx[k] = 0;
      }
    }
  }

 private:
  std::int64_t base_;
  std::int64_t ext_[4] = {1, 1, 1, 1};     // N, then three spatial extents (padded with 1)
  std::int64_t stride_[4] = {0, 0, 0, 0};  // their strides (padded with 0)
  std::int64_t size_;
};

// A channel's statistics: mean and M2 = Σ(x − mean)².
struct moments {
  float mean;
  float m2;
};

// Σ term over elements [lo, hi) of the channel, left to right in one float accumulator.
template <class Term>
float sequential_sum(const channel_view& ch, std::int64_t lo, std::int64_t hi, const Term& term) {
  float s = 0.0F;
  ch.for_range(lo, hi, [&](std::int64_t off) { s += term(off); });
  return s;
}

template <class P>
concept has_moments = requires(const channel_view& ch, const float* x) {
  { P::moments(ch, x) } -> std::same_as<moments>;
};

template <class P>
moments channel_moments(const channel_view& ch, const float* x) {
  if constexpr (has_moments<P>) {
    return P::moments(ch, x);
  } else {
    const float mean =
        P::sum(ch, [x](std::int64_t o) { return x[o]; }) / static_cast<float>(ch.size());
    const float m2 = P::sum(ch, [x, mean](std::int64_t o) {
      const float d = x[o] - mean;
      return d * d;
    });
    return {mean, m2};
  }
}

// ---- Validation -----------------------------------------------------------------------------

// A problem (or a buffer set) the kernel rejects; `status` says how. (No std::string: its
// to_string tables would be exported as unique symbols that keep the plugin from unloading.)
struct rejection {
  bnk_status status = BNK_OK;
  char why[200] = {};
};

[[gnu::format(printf, 3, 4)]] inline bool reject(rejection& r, bnk_status status,
                                                 const char* format, ...) {
  r.status = status;
  va_list args;
  va_start(args, format);
  std::vsnprintf(r.why, sizeof r.why, format, args);
  va_end(args);
  return false;
}

struct geometry {
  std::int64_t c = 0;  // channels
  std::int64_t L = 0;  // elements per channel: N · spatial size
  std::int64_t channel_stride = 0;
  std::int64_t ext[4] = {1, 1, 1, 1};  // N, spatial extents
  std::int64_t stride[4] = {0, 0, 0, 0};

  [[nodiscard]] channel_view channel(std::int64_t ch) const {
    return {ch * channel_stride, ext, stride, L};
  }
  [[nodiscard]] bool empty() const { return L == 0 || c == 0; }
};

inline bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

inline bool add_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

// Reads and checks the problem's shape. Supported: ranks 2 to 5 under any layout bit in
// `layouts`, with any strides under which distinct elements have distinct addresses (outputs
// share the strides of the inputs, so a zero or overlapping stride would make two outputs
// collide); other strides are BNK_UNSUPPORTED.
inline bool make_geometry(const bnk_problem& p, std::uint32_t layouts, geometry& g, rejection& r) {
  if (p.struct_size < sizeof(bnk_problem)) {
    return reject(r, BNK_FAILED, "bnk_problem.struct_size %u is smaller than ABI version 1's %zu",
                  static_cast<unsigned>(p.struct_size), sizeof(bnk_problem));
  }
  const bnk_shape& s = p.shape;
  if (s.rank < 2 || s.rank > 5) {
    return reject(r, BNK_FAILED, "shape.rank %d is outside 2..5", static_cast<int>(s.rank));
  }
  const std::uint32_t lay = s.layout;
  if (lay == 0 || (lay & (lay - 1U)) != 0 || (lay & layouts) == 0) {
    return reject(r, BNK_UNSUPPORTED, "layout 0x%x is not supported by this kernel",
                  static_cast<unsigned>(lay));
  }
  for (int d = 0; d < s.rank; ++d) {
    if (s.dims[d] < 0) return reject(r, BNK_FAILED, "shape.dims[%d] is negative", d);
  }
  g.c = s.dims[1];
  g.channel_stride = s.strides[1];
  g.ext[0] = s.dims[0];
  g.stride[0] = s.strides[0];
  for (int d = 2; d < s.rank; ++d) {
    g.ext[d - 1] = s.dims[d];
    g.stride[d - 1] = s.strides[d];
  }
  std::int64_t L = 1;
  std::int64_t total = 0;
  for (const std::int64_t e : g.ext) {
    if (!mul_ok(L, e, L)) L = -1;
    if (L < 0) break;
  }
  if (L < 0 || !mul_ok(L, g.c, total)) {
    return reject(r, BNK_UNSUPPORTED, "the shape has more elements than int64 can count");
  }
  g.L = L;
  if (total == 0) return true;
  // Distinct elements at distinct addresses: sorted by |stride|, each stride of an extent > 1
  // must exceed the span of all smaller ones (then every offset has one decomposition).
  struct dim {
    std::int64_t ext, stride;
  };
  dim dims[5] = {{g.c, g.channel_stride}};
  int nd = 1;
  for (int k = 0; k < 4; ++k) dims[nd++] = {g.ext[k], g.stride[k]};
  for (dim& d : dims) {
    if (d.stride == std::numeric_limits<std::int64_t>::min()) {
      return reject(r, BNK_UNSUPPORTED, "a stride is out of range");
    }
    d.stride = d.stride < 0 ? -d.stride : d.stride;
  }
  std::sort(dims, dims + nd, [](const dim& a, const dim& b) { return a.stride < b.stride; });
  std::int64_t span = 0;  // Σ (ext − 1)·|stride| over the dims so far
  for (const dim& d : dims) {
    if (d.ext <= 1) continue;
    std::int64_t reach = 0;
    if (d.stride <= span || !mul_ok(d.ext - 1, d.stride, reach) || !add_ok(span, reach, span)) {
      return reject(r, BNK_UNSUPPORTED,
                    "strides under which two elements share an address are not supported: "
                    "outputs have the strides of the inputs and would collide");
    }
  }
  return true;
}

inline bool missing(const void* ptr, const char* name, rejection& r) {
  if (ptr != nullptr) return false;
  reject(r, BNK_FAILED, "buffers->%s is NULL but this mode needs it", name);
  return true;
}

// ---- The algorithm --------------------------------------------------------------------------

inline const char* const k_single_value_refusal =
    "pytorch: expected more than 1 value per channel when training";

inline float nan_f() {
  return std::numeric_limits<float>::quiet_NaN();
}

// 1/sqrt(v + ε) in float32: three roundings (sum, sqrt, division).
inline float inv_std(float v, float eps) {
  return 1.0F / std::sqrt(v + eps);
}

template <class P>
struct bn {
  // y = (x − μ)·(γ·r) + β with r = 1/sqrt(σ² + ε); saves μ and r; updates the running
  // statistics under PyTorch's convention.
  static bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                     rejection& r) {
    const bool track = p.track_running != 0;
    if (g.c > 0) {
      if (g.L > 0 && (missing(b.src, "src", r) || missing(b.dst, "dst", r))) return r.status;
      if (p.affine != 0 && (missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r))) {
        return r.status;
      }
      if (track && (missing(b.running_mean, "running_mean", r) ||
                    missing(b.running_var, "running_var", r))) {
        return r.status;
      }
    }
    if (track && missing(b.num_batches_tracked, "num_batches_tracked", r)) return r.status;
    if (g.L == 1) {
      reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
      return r.status;
    }
    if (track && (*b.num_batches_tracked < 0 ||
                  *b.num_batches_tracked == std::numeric_limits<std::int64_t>::max())) {
      reject(r, BNK_FAILED, "num_batches_tracked is out of range");
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    const std::int64_t t = track ? *b.num_batches_tracked + 1 : 0;  // after the increment
    // The weight of the new batch statistic: m, or 1/t for the cumulative average.
    const float f = !track              ? 0.0F
                    : p.cumulative != 0 ? 1.0F / static_cast<float>(t)
                                        : static_cast<float>(p.momentum);
    for (std::int64_t c = 0; c < g.c; ++c) {
      if (g.L == 0) {
        // Empty batch: no statistics exist (0/0); PyTorch leaves the running statistics as they
        // are and still counts the batch.
        if (b.save_mean != nullptr) b.save_mean[c] = nan_f();
        if (b.save_stat != nullptr) b.save_stat[c] = nan_f();
        continue;
      }
      const channel_view ch = g.channel(c);
      const moments m = channel_moments<P>(ch, b.src);
      const float var = m.m2 / static_cast<float>(g.L);
      const float rstd = inv_std(var, eps);
      if (b.save_mean != nullptr) b.save_mean[c] = m.mean;
      if (b.save_stat != nullptr) b.save_stat[c] = rstd;
      const float gamma = p.affine != 0 ? b.gamma[c] : 1.0F;
      const float beta = p.affine != 0 ? b.beta[c] : 0.0F;
      const float scale = gamma * rstd;
      const float* x = b.src;
      float* y = b.dst;
      const float mean = m.mean;
      ch.for_range(0, g.L, [&](std::int64_t o) { y[o] = (x[o] - mean) * scale + beta; });
      if (track) {
        // PyTorch: running = (1 − f)·running + f·batch, with the unbiased variance M2/(L − 1).
        const float unbiased = m.m2 / static_cast<float>(g.L - 1);
        b.running_mean[c] = (1.0F - f) * b.running_mean[c] + f * m.mean;
        b.running_var[c] = (1.0F - f) * b.running_var[c] + f * unbiased;
      }
    }
    if (track) *b.num_batches_tracked = t;
    return BNK_OK;
  }

  // y = (x − μ_run)·(γ·r) + β with r = 1/sqrt(var_run + ε), element-wise.
  static bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    if (g.empty()) return BNK_OK;
    if (missing(b.src, "src", r) || missing(b.dst, "dst", r) ||
        missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r)) {
      return r.status;
    }
    if (p.affine != 0 && (missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r))) {
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    for (std::int64_t c = 0; c < g.c; ++c) {
      const float gamma = p.affine != 0 ? b.gamma[c] : 1.0F;
      const float beta = p.affine != 0 ? b.beta[c] : 0.0F;
      const float scale = gamma * inv_std(b.running_var[c], eps);
      const float mean = b.running_mean[c];
      const float* x = b.src;
      float* y = b.dst;
      g.channel(c).for_range(0, g.L, [&](std::int64_t o) { y[o] = (x[o] - mean) * scale + beta; });
    }
    return BNK_OK;
  }

  // dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)), dγ = Σdy·x̂ = r·Σdy·(x − μ), dβ = Σdy, with μ and
  // r from save_mean/save_stat when given, else recomputed from src.
  static bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    const bool affine = p.affine != 0;
    if (g.c > 0) {
      if (g.L > 0 && (missing(b.src, "src", r) || missing(b.diff_dst, "diff_dst", r) ||
                      missing(b.diff_src, "diff_src", r))) {
        return r.status;
      }
      if (affine && (missing(b.gamma, "gamma", r) || missing(b.diff_gamma, "diff_gamma", r) ||
                     missing(b.diff_beta, "diff_beta", r))) {
        return r.status;
      }
    }
    if (g.L == 1) {
      reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    const bool saved = b.save_mean != nullptr && b.save_stat != nullptr;
    const float Lf = static_cast<float>(g.L);
    for (std::int64_t c = 0; c < g.c; ++c) {
      if (g.L == 0) {  // empty sums
        if (affine) b.diff_gamma[c] = b.diff_beta[c] = 0.0F;
        continue;
      }
      const channel_view ch = g.channel(c);
      const float* x = b.src;
      const float* dy = b.diff_dst;
      float mean = 0.0F;
      float rstd = 0.0F;
      if (saved) {
        mean = b.save_mean[c];
        rstd = b.save_stat[c];
      } else {
        const moments m = channel_moments<P>(ch, x);
        mean = m.mean;
        rstd = inv_std(m.m2 / Lf, eps);
      }
      const float sum_dy = P::sum(ch, [dy](std::int64_t o) { return dy[o]; });
      const float sum_dy_xc =
          P::sum(ch, [x, dy, mean](std::int64_t o) { return dy[o] * (x[o] - mean); });
      const float dgamma = sum_dy_xc * rstd;  // Σ dy·x̂
      if (affine) {
        b.diff_gamma[c] = dgamma;
        b.diff_beta[c] = sum_dy;
      }
      const float gamma = affine ? b.gamma[c] : 1.0F;
      const float scale = gamma * rstd;
      const float mean_dy = sum_dy / Lf;
      const float mean_dy_xhat = dgamma / Lf;
      float* dx = b.diff_src;
      ch.for_range(0, g.L, [&](std::int64_t o) {
        const float xhat = (x[o] - mean) * rstd;
        dx[o] = scale * ((dy[o] - mean_dy) - xhat * mean_dy_xhat);
      });
    }
    return BNK_OK;
  }

  // The running statistics are constants: dx = γ·r·dy, dγ = r·Σdy·(x − μ_run), dβ = Σdy.
  static bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b,
                                       const geometry& g, rejection& r) {
    const bool affine = p.affine != 0;
    if (g.c == 0) return BNK_OK;
    if (missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r)) {
      return r.status;
    }
    if (g.L > 0 && (missing(b.src, "src", r) || missing(b.diff_dst, "diff_dst", r) ||
                    missing(b.diff_src, "diff_src", r))) {
      return r.status;
    }
    if (affine && (missing(b.gamma, "gamma", r) || missing(b.diff_gamma, "diff_gamma", r) ||
                   missing(b.diff_beta, "diff_beta", r))) {
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    for (std::int64_t c = 0; c < g.c; ++c) {
      const channel_view ch = g.channel(c);
      const float* x = b.src;
      const float* dy = b.diff_dst;
      const float rstd = inv_std(b.running_var[c], eps);
      const float scale = (affine ? b.gamma[c] : 1.0F) * rstd;
      float* dx = b.diff_src;
      ch.for_range(0, g.L, [&](std::int64_t o) { dx[o] = scale * dy[o]; });
      if (affine) {
        const float mean = b.running_mean[c];
        b.diff_beta[c] = P::sum(ch, [dy](std::int64_t o) { return dy[o]; });
        b.diff_gamma[c] =
            P::sum(ch, [x, dy, mean](std::int64_t o) { return dy[o] * (x[o] - mean); }) * rstd;
      }
    }
    return BNK_OK;
  }
};

// ---- SyncBN merge and folding (policy-independent) ------------------------------------------

// Merges K shards' (count, mean, biased variance) per channel in float32:
//   n = Σ nₖ,  mean = Σ nₖ·mₖ / n,  M2 = Σ (nₖ·vₖ + nₖ·(mₖ − mean)²),  var = M2 / n,
// then invstd and the PyTorch running update over the total count (unbiased M2/(n − 1)).
inline bnk_status syncbn_merge(const bnk_syncbn_problem& p, const bnk_syncbn_buffers& b,
                               rejection& r) {
  if (p.struct_size < sizeof(bnk_syncbn_problem)) {
    reject(r, BNK_FAILED, "bnk_syncbn_problem.struct_size %u is too small",
           static_cast<unsigned>(p.struct_size));
    return r.status;
  }
  if (p.shards < 1 || p.channels < 0) {
    reject(r, BNK_FAILED, "needs at least one shard and C >= 0");
    return r.status;
  }
  const bool track = p.track_running != 0;
  if (missing(b.count, "count", r)) return r.status;
  if (p.channels > 0 &&
      (missing(b.shard_mean, "shard_mean", r) || missing(b.shard_var, "shard_var", r) ||
       missing(b.mean, "mean", r) || missing(b.var, "var", r) || missing(b.invstd, "invstd", r))) {
    return r.status;
  }
  if (track && (missing(b.num_batches_tracked, "num_batches_tracked", r) ||
                (p.channels > 0 && (missing(b.running_mean, "running_mean", r) ||
                                    missing(b.running_var, "running_var", r))))) {
    return r.status;
  }
  std::int64_t total = 0;
  for (std::int64_t k = 0; k < p.shards; ++k) {
    if (b.count[k] < 0 || !add_ok(total, b.count[k], total)) {
      reject(r, BNK_FAILED, "count[%lld] is negative or the total overflows",
             static_cast<long long>(k));
      return r.status;
    }
  }
  const float eps = static_cast<float>(p.eps);
  const std::int64_t t = track ? *b.num_batches_tracked + 1 : 0;
  const float f = !track              ? 0.0F
                  : p.cumulative != 0 ? 1.0F / static_cast<float>(t)
                                      : static_cast<float>(p.momentum);
  const auto n = static_cast<float>(total);
  for (std::int64_t c = 0; c < p.channels; ++c) {
    if (total == 0) {
      b.mean[c] = b.var[c] = b.invstd[c] = nan_f();
      continue;  // no statistics: the running ones stay (as for an empty batch)
    }
    float sum = 0.0F;
    for (std::int64_t k = 0; k < p.shards; ++k) {
      sum += static_cast<float>(b.count[k]) * b.shard_mean[k * p.channels + c];
    }
    const float mean = sum / n;
    float m2 = 0.0F;
    for (std::int64_t k = 0; k < p.shards; ++k) {
      if (b.count[k] == 0) continue;
      const float nk = static_cast<float>(b.count[k]);
      const float d = b.shard_mean[k * p.channels + c] - mean;
      m2 += nk * b.shard_var[k * p.channels + c] + nk * (d * d);
    }
    const float var = m2 / n;
    b.mean[c] = mean;
    b.var[c] = var;
    b.invstd[c] = inv_std(var, eps);
    if (track) {
      const float unbiased = m2 / static_cast<float>(total - 1);
      b.running_mean[c] = (1.0F - f) * b.running_mean[c] + f * mean;
      b.running_var[c] = (1.0F - f) * b.running_var[c] + f * unbiased;
    }
  }
  if (track) *b.num_batches_tracked = t;
  return BNK_OK;
}

// Checks a fold call: false when it ends here, with r.status the answer (an error, or BNK_OK
// for O = 0, where there is nothing to compute); true when the outputs are to be computed.
inline bool fold_ready(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  if (p.struct_size < sizeof(bnk_fold_problem)) {
    return reject(r, BNK_FAILED, "bnk_fold_problem.struct_size %u is too small",
                  static_cast<unsigned>(p.struct_size));
  }
  if (p.out_channels < 0 || p.fan_in < 0) return reject(r, BNK_FAILED, "negative extents");
  if (p.out_channels == 0) return false;  // r.status is BNK_OK
  return !((p.fan_in > 0 &&
            (missing(b.weight, "weight", r) || missing(b.weight_out, "weight_out", r))) ||
           missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r) ||
           missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r) ||
           missing(b.bias_out, "bias_out", r) || (p.has_bias != 0 && missing(b.bias, "bias", r)));
}

// W'[o, k] = W[o, k]·s[o] and b'[o] = (b[o] − μ[o])·s[o] + β[o] with s = γ·rsqrt(var + ε).
inline bnk_status fold(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  if (!fold_ready(p, b, r)) return r.status;
  const float eps = static_cast<float>(p.eps);
  for (std::int64_t o = 0; o < p.out_channels; ++o) {
    const float s = b.gamma[o] * inv_std(b.running_var[o], eps);
    for (std::int64_t k = 0; k < p.fan_in; ++k) {
      b.weight_out[o * p.fan_in + k] = b.weight[o * p.fan_in + k] * s;
    }
    const float bias = p.has_bias != 0 ? b.bias[o] : 0.0F;
    b.bias_out[o] = (bias - b.running_mean[o]) * s + b.beta[o];
  }
  return BNK_OK;
}

// ---- ABI glue -------------------------------------------------------------------------------

inline int report(char* message, std::size_t message_size, int status, const char* text) {
  if (message != nullptr && message_size > 0) std::snprintf(message, message_size, "%s", text);
  return status;
}

template <class P, bnk_mode M>
int entry(const bnk_problem* problem, const bnk_buffers* buffers, char* message,
          std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  try {
    geometry g;
    rejection r;
    if (!make_geometry(*problem, k_all_layouts, g, r)) {
      return report(message, message_size, r.status, r.why);
    }
    bnk_status s = BNK_FAILED;
    switch (M) {
      case BNK_FORWARD_TRAINING:
        s = bn<P>::forward_training(*problem, *buffers, g, r);
        break;
      case BNK_FORWARD_INFERENCE:
        s = bn<P>::forward_inference(*problem, *buffers, g, r);
        break;
      case BNK_BACKWARD_TRAINING:
        s = bn<P>::backward_training(*problem, *buffers, g, r);
        break;
      case BNK_BACKWARD_INFERENCE:
        s = bn<P>::backward_inference(*problem, *buffers, g, r);
        break;
    }
    return s == BNK_OK ? BNK_OK : report(message, message_size, s, r.why);
  } catch (const std::exception& e) {
    return report(message, message_size, BNK_FAILED, e.what());
  } catch (...) {
    return report(message, message_size, BNK_FAILED, "unknown exception");
  }
}

// The entry points of the merge and the fold: the same glue as `entry` for the modes.
template <class Problem, class Buffers,
          bnk_status (*Op)(const Problem&, const Buffers&, rejection&)>
int op_entry(const Problem* problem, const Buffers* buffers, char* message,
             std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  try {
    rejection r;
    const bnk_status s = Op(*problem, *buffers, r);
    return s == BNK_OK ? BNK_OK : report(message, message_size, s, r.why);
  } catch (const std::exception& e) {
    return report(message, message_size, BNK_FAILED, e.what());
  } catch (...) {
    return report(message, message_size, BNK_FAILED, "unknown exception");
  }
}

// The table of a bundled kernel: PyTorch convention, every layout, all four modes, saves mean
// and invstd, updates the running statistics, supports momentum = None, merges SyncBN statistics
// and folds.
template <class P>
constexpr bnk_kernel make_table(const char* name) {
  return bnk_kernel{
      .abi_version = BNK_ABI_VERSION,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel)),
      .name = name,
      .version = "1.0",
      .convention = "pytorch",
      .layouts = k_all_layouts,
      .updates_running = 1,
      .supports_cumulative = 1,
      .saves = BNK_SAVES_MEAN_INVSTD,
      .forward_training = &entry<P, BNK_FORWARD_TRAINING>,
      .forward_inference = &entry<P, BNK_FORWARD_INFERENCE>,
      .backward_training = &entry<P, BNK_BACKWARD_TRAINING>,
      .backward_inference = &entry<P, BNK_BACKWARD_INFERENCE>,
      .syncbn_merge = &op_entry<bnk_syncbn_problem, bnk_syncbn_buffers, &syncbn_merge>,
      .fold = &op_entry<bnk_fold_problem, bnk_fold_buffers, &fold>,
  };
}

}  // namespace bnoracle::kernels
