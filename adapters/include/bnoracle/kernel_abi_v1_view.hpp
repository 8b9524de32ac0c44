// A version-2 batch-norm call seen as a version-1 one: the same shape, scalars and buffers, for a
// plugin whose batch-norm code is written against version 1 (float32 data, parameters and
// statistics only; the caller checks the types and the op first). Header-only, C++.
#pragma once

#include "bnoracle/kernel_abi.h"

#include <cstdint>

namespace bnoracle {

inline void v1_view(const bnk_problem_v2& p, const bnk_buffers_v2& b, bnk_problem& q,
                    bnk_buffers& c) {
  q = bnk_problem{};
  q.struct_size = static_cast<std::uint32_t>(sizeof(bnk_problem));
  q.shape = p.shape;
  q.eps = p.eps;
  q.momentum = p.momentum;
  q.cumulative = p.cumulative;
  q.affine = p.op.params != BNK_PARAMS_NONE ? 1 : 0;
  q.track_running = p.track_running;
  c.src = static_cast<const float*>(b.src);
  c.diff_dst = static_cast<const float*>(b.diff_dst);
  c.gamma = static_cast<const float*>(b.gamma);
  c.beta = static_cast<const float*>(b.beta);
  c.running_mean = static_cast<float*>(b.running_mean);
  c.running_var = static_cast<float*>(b.running_var);
  c.num_batches_tracked = b.num_batches_tracked;
  c.save_mean = static_cast<float*>(b.save_mean);
  c.save_stat = static_cast<float*>(b.save_stat);
  c.dst = static_cast<float*>(b.dst);
  c.diff_src = static_cast<float*>(b.diff_src);
  c.diff_gamma = static_cast<float*>(b.diff_gamma);
  c.diff_beta = static_cast<float*>(b.diff_beta);
}

}  // namespace bnoracle
