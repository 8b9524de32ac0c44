// A small float32 batch-norm kernel with one switchable defect, in-process through the C ABI.
//
// Without a defect it is an ordinary sequential float32 kernel (two-pass variance, statistics
// recomputed in backward, float32 accumulators), correct within the lenient bounds. Each defect
// is a one-line deviation imitating a bug that shipped in a public project (/work/shared/BUGS.md
// has the issue numbers); tests/test_runner.cpp runs the conformance catalog against them and
// tests/test_property_power.cpp the property suite. `g_defect` is a plain global: the forked
// child of an isolated call inherits its value, so setting it before a call selects the defect.
#pragma once

#include "bnoracle/kernel_abi.h"

#include <unistd.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bnoracle::test_kernel {

enum class defect {
  none,
  biased_running_var,     // keras #8982: running variance without L/(L − 1)
  momentum_swapped,       // pytorch/examples #289: momentum weighs the old value
  one_pass_variance,      // E[x²] − E[x]² in float (tensorflow #118701, flax #1491)
  eps_outside_sqrt,       // 1/(sqrt(var) + ε) (ncnn PR #311)
  backward_drops_stats,   // CrypTen PR #143: dx = γ·r·(dy − mean(dy)) only
  eval_uses_batch_stats,  // tvm #19574: inference normalizes with the batch statistics
  running_not_updated,    // jax #139: running statistics never written
  off_by_one_percent,     // a 1% bias that loose tolerances hide
  // Added for the property suite (tests/test_property_power.cpp):
  invstd_read_as_var,     // onnxruntime PR #8172, mxnet #9216: backward takes the saved
                          // inverse standard deviation for the variance: r = 1/sqrt(invstd + ε)
  vector_tail_dropped,    // torch-xpu-ops PR #1238: the statistics loop runs 4 lanes at a time
                          // and the remainder loop is missing, yet the sums are divided by L
  accumulator_not_reset,  // a reduction scratch (a GPU block's shared-memory slot) reused for
                          // the next channel without zeroing: channel c starts from c − 1's sum
  ignores_strides,        // pytorch #62594, deeplearning4j #8597, tfjs #1106: channels-last
                          // input read as dense NCHW, the strides of the problem ignored
  // γ·(x − μ)·r with γ·(x − μ) formed first: overflows float32 for x near FLT_MAX where y is
  // finite, as (x − μ)² does for |x| ≈ 1e30 in pytorch #162489 (this kernel's own formula
  // until the property suite found it).
  late_rstd,
  // pytorch #53691: results that change from run to run. The statistics are summed backwards
  // when the process id is odd, as an atomic-add reduction's order follows the scheduler; every
  // isolated call runs in a new child process with a new id.
  nondeterministic_order,
};

inline defect g_defect = defect::none;  // inherited by the forked child of each isolated call

struct channel_view {
  std::vector<std::int64_t> offsets;
};

// The dense NCHW (NC, NCL, NCDHW) strides of a shape, whatever its layout says.
inline bnk_shape dense_nchw(const bnk_shape& s) {
  bnk_shape d = s;
  std::int64_t stride = 1;
  for (int i = s.rank; i-- > 0;) {
    d.strides[i] = stride;
    stride *= s.dims[i];
  }
  return d;
}

// Offsets of channel c's elements, from the ABI shape (any rank, any strides).
inline channel_view offsets_of(const bnk_shape& shape, std::int64_t c) {
  const bnk_shape s = g_defect == defect::ignores_strides ? dense_nchw(shape) : shape;
  channel_view v;
  const std::int64_t d2 = s.rank > 2 ? s.dims[2] : 1, d3 = s.rank > 3 ? s.dims[3] : 1,
                     d4 = s.rank > 4 ? s.dims[4] : 1;
  for (std::int64_t n = 0; n < s.dims[0]; ++n) {
    for (std::int64_t i = 0; i < d2; ++i) {
      for (std::int64_t j = 0; j < d3; ++j) {
        for (std::int64_t k = 0; k < d4; ++k) {
          v.offsets.push_back(n * s.strides[0] + c * s.strides[1] + i * s.strides[2] +
                              j * s.strides[3] + k * s.strides[4]);
        }
      }
    }
  }
  return v;
}

struct stats {
  float mean = 0, var = 0;
};

// `scratch` is the reduction's accumulator for the whole call, one channel after another.
inline stats batch_stats(const float* x, const channel_view& v, float& scratch) {
  const auto L = static_cast<float>(v.offsets.size());
  // The elements the reduction visits: all of them, or the multiple-of-4 body only.
  const std::size_t visited = g_defect == defect::vector_tail_dropped
                                  ? v.offsets.size() - v.offsets.size() % 4
                                  : v.offsets.size();
  if (g_defect != defect::accumulator_not_reset) scratch = 0;
  float s2 = 0;
  const bool backwards = g_defect == defect::nondeterministic_order && (getpid() & 1) != 0;
  for (std::size_t j = 0; j < visited; ++j) {
    const std::size_t k = backwards ? visited - 1 - j : j;
    const float xv = x[v.offsets[k]];
    scratch += xv;
    s2 += xv * xv;
  }
  const float mean = scratch / L;
  if (g_defect == defect::one_pass_variance) return {mean, s2 / L - mean * mean};
  float q = 0;
  for (std::size_t k = 0; k < visited; ++k) {
    const float xv = x[v.offsets[k]];
    q += (xv - mean) * (xv - mean);
  }
  return {mean, q / L};
}

inline float rstd(float var, double eps) {
  const auto e = static_cast<float>(eps);
  if (g_defect == defect::eps_outside_sqrt) return 1.0F / (std::sqrt(var) + e);
  return 1.0F / std::sqrt(var + e);
}

inline int forward(const bnk_problem* p, const bnk_buffers* b, bool training) {
  const std::int64_t C = p->shape.dims[1];
  float scratch = 0;
  for (std::int64_t c = 0; c < C; ++c) {
    const auto u = static_cast<std::size_t>(c);
    const channel_view v = offsets_of(p->shape, c);
    const auto L = static_cast<std::int64_t>(v.offsets.size());
    if (training && L == 1) return BNK_REFUSED;
    if (L == 0) continue;
    const float g = p->affine ? b->gamma[u] : 1.0F;
    const float be = p->affine ? b->beta[u] : 0.0F;
    stats st{};
    if (training || g_defect == defect::eval_uses_batch_stats) {
      st = batch_stats(b->src, v, scratch);
    } else {
      st = {b->running_mean[u], b->running_var[u]};
    }
    const float r = rstd(st.var, p->eps);
    const float scale = g_defect == defect::off_by_one_percent ? 1.01F : 1.0F;
    const float gr = g * r;
    for (const auto o : v.offsets) {
      b->dst[o] = g_defect == defect::late_rstd ? scale * g * (b->src[o] - st.mean) * r + be
                                                : scale * (b->src[o] - st.mean) * gr + be;
    }
    if (training) {
      if (b->save_mean != nullptr) b->save_mean[u] = st.mean;
      if (b->save_stat != nullptr) b->save_stat[u] = r;
      if (p->track_running && g_defect != defect::running_not_updated) {
        const float f = p->cumulative ? 1.0F / static_cast<float>(*b->num_batches_tracked + 1)
                                      : static_cast<float>(p->momentum);
        const float fw = g_defect == defect::momentum_swapped ? 1.0F - f : f;
        const float bessel = g_defect == defect::biased_running_var
                                 ? 1.0F
                                 : static_cast<float>(L) / static_cast<float>(L - 1);
        b->running_mean[u] = (1.0F - fw) * b->running_mean[u] + fw * st.mean;
        b->running_var[u] = (1.0F - fw) * b->running_var[u] + fw * st.var * bessel;
      }
    }
  }
  if (training && p->track_running) *b->num_batches_tracked += 1;
  return BNK_OK;
}

inline int backward(const bnk_problem* p, const bnk_buffers* b, bool training) {
  const std::int64_t C = p->shape.dims[1];
  float scratch = 0;
  for (std::int64_t c = 0; c < C; ++c) {
    const auto u = static_cast<std::size_t>(c);
    const channel_view v = offsets_of(p->shape, c);
    const auto L = static_cast<float>(v.offsets.size());
    if (training && v.offsets.size() == 1) return BNK_REFUSED;  // its forward refused too
    const float g = p->affine ? b->gamma[u] : 1.0F;
    const stats st =
        training ? batch_stats(b->src, v, scratch) : stats{b->running_mean[u], b->running_var[u]};
    const bool misread =
        training && g_defect == defect::invstd_read_as_var && b->save_stat != nullptr;
    const float r = rstd(misread ? b->save_stat[u] : st.var, p->eps);
    float sdy = 0;
    float sdyx = 0;
    for (const auto o : v.offsets) {
      sdy += b->diff_dst[o];
      sdyx += b->diff_dst[o] * (b->src[o] - st.mean) * r;
    }
    for (const auto o : v.offsets) {
      const float xhat = (b->src[o] - st.mean) * r;
      float t = b->diff_dst[o];
      if (training) {
        t -= sdy / L;
        if (g_defect != defect::backward_drops_stats) t -= xhat * sdyx / L;
      }
      b->diff_src[o] = g * r * t;
    }
    if (p->affine) {
      b->diff_gamma[u] = sdyx;
      b->diff_beta[u] = sdy;
    }
  }
  return BNK_OK;
}

inline int ft(const bnk_problem* p, const bnk_buffers* b, char* /*message*/, size_t /*size*/) {
  return forward(p, b, true);
}
inline int fi(const bnk_problem* p, const bnk_buffers* b, char* /*message*/, size_t /*size*/) {
  return forward(p, b, false);
}
inline int bt(const bnk_problem* p, const bnk_buffers* b, char* /*message*/, size_t /*size*/) {
  return backward(p, b, true);
}
inline int bi(const bnk_problem* p, const bnk_buffers* b, char* /*message*/, size_t /*size*/) {
  return backward(p, b, false);
}

inline const bnk_kernel k_table{BNK_ABI_VERSION,
                                sizeof(bnk_kernel),
                                "test_naive",
                                "1.0",
                                "pytorch",
                                BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW | BNK_LAYOUT_NHWC |
                                    BNK_LAYOUT_NCDHW | BNK_LAYOUT_NDHWC,
                                1,
                                1,
                                BNK_SAVES_MEAN_INVSTD,
                                ft,
                                fi,
                                bt,
                                bi,
                                nullptr,
                                nullptr};

}  // namespace bnoracle::test_kernel
