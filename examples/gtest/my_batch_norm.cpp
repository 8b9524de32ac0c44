#include "my_batch_norm.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <utility>
#include <vector>

namespace example {

namespace {

// Where the elements of the tensor are: channel c's j-th element (in logical order: n, then the
// spatial indices row-major) is at c·channel_stride + offsets[j] from the pointer's element 0.
struct tensor_map {
  std::int64_t channels = 0;
  std::int64_t channel_stride = 0;
  std::vector<std::int64_t> offsets;  // L entries

  [[nodiscard]] std::int64_t per_channel() const {
    return static_cast<std::int64_t>(offsets.size());
  }
};

// Reads the shape; false (with a message) for what this kernel does not take.
bool map_tensor(const bnk_shape& s, tensor_map& t, std::string& message) {
  if (s.rank < 2 || s.rank > 5) {
    message = "rank " + std::to_string(s.rank) + " is outside 2..5";
    return false;
  }
  // Caps on the element count and on |stride| keep every offset computation below in range.
  constexpr std::int64_t k_limit = std::int64_t{1} << 31;
  std::int64_t count = 1;
  for (int d = 0; d < s.rank; ++d) {
    const std::int64_t e = s.dims[d];
    if (e < 0 || (e > 0 && count > k_limit / e) || s.strides[d] < -k_limit ||
        s.strides[d] > k_limit) {
      message = "the tensor is too large for this kernel";
      return false;
    }
    count *= e;
  }
  std::vector<std::int64_t> ext{s.dims[0]};  // N, then the spatial extents
  std::vector<std::int64_t> str{s.strides[0]};
  for (int d = 2; d < s.rank; ++d) {
    ext.push_back(s.dims[d]);
    str.push_back(s.strides[d]);
  }
  t.channels = s.dims[1];
  t.channel_stride = s.strides[1];
  // Outputs share the strides of the inputs, so two elements at one address would collide:
  // sorted by |stride|, each stride of an extent above 1 must exceed the reach of the smaller.
  std::vector<std::pair<std::int64_t, std::int64_t>> dims{{t.channels, t.channel_stride}};
  for (std::size_t k = 0; k < ext.size(); ++k) dims.emplace_back(ext[k], str[k]);
  for (auto& d : dims) d.second = std::abs(d.second);
  std::sort(dims.begin(), dims.end(), [](auto a, auto b) { return a.second < b.second; });
  std::int64_t reach = 0;
  for (const auto& [e, st] : dims) {
    if (e <= 1) continue;
    if (st <= reach) {
      message = "strides under which two elements share an address are not supported";
      return false;
    }
    reach += (e - 1) * st;
  }
  // The offsets of one channel: an odometer over N and the spatial dims.
  std::int64_t L = 1;
  for (const std::int64_t e : ext) L *= e;
  t.offsets.resize(static_cast<std::size_t>(L));
  std::vector<std::int64_t> idx(ext.size(), 0);
  std::int64_t off = 0;
  for (std::int64_t j = 0; j < L; ++j) {
    t.offsets[static_cast<std::size_t>(j)] = off;
    for (std::size_t k = ext.size(); k-- > 0;) {
      off += str[k];
      if (++idx[k] < ext[k]) break;
      off -= ext[k] * str[k];
      idx[k] = 0;
    }
  }
  return true;
}

// One channel of one tensor, read through the map.
struct channel {
  const tensor_map& map;
  std::int64_t base;

  [[nodiscard]] std::int64_t at(std::size_t j) const { return base + map.offsets[j]; }
  [[nodiscard]] std::size_t size() const { return map.offsets.size(); }

  // Σ term(offset) over the channel in float, pairwise: the two halves are summed recursively
  // and added, down to runs of 8 summed left to right. The rounding error grows like log2(L)
  // instead of the L of one running accumulator, which on adversarial data (many equal large
  // values, say) can exceed the standard level's bound.
  template <class Term>
  [[nodiscard]] float sum(const Term& term) const {
    return sum(term, 0, size());
  }
  template <class Term>
  [[nodiscard]] float sum(const Term& term, std::size_t lo, std::size_t hi) const {
    if (hi - lo <= 8) {
      float s = 0.0F;
      for (std::size_t j = lo; j < hi; ++j) s += term(at(j));
      return s;
    }
    const std::size_t mid = lo + (hi - lo) / 2;
    return sum(term, lo, mid) + sum(term, mid, hi);
  }
};

struct statistics {
  float mean;
  float m2;  // Σ(x − mean)²
};

// Two passes: the mean first, then the squared deviations from it (no E[x²] − E[x]²).
statistics two_pass(const channel& ch, const float* x) {
  const float mean = ch.sum([x](std::int64_t o) { return x[o]; }) / static_cast<float>(ch.size());
  const float m2 = ch.sum([x, mean](std::int64_t o) {
    const float d = x[o] - mean;
    return d * d;
  });
  return {mean, m2};
}

float inverse_std(float variance, float eps) {
  return 1.0F / std::sqrt(variance + eps);
}

bool missing(const void* p, const char* name, std::string& message) {
  if (p != nullptr) return false;
  message = std::string(name) + " is NULL but this mode needs it";
  return true;
}

constexpr float k_nan = std::numeric_limits<float>::quiet_NaN();

bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const tensor_map& t,
                            std::string& message) {
  const std::int64_t L = t.per_channel();
  const bool affine = p.affine != 0;
  const bool track = p.track_running != 0;
  if (L == 1) {  // PyTorch raises: the unbiased variance of one value does not exist
    message = "expected more than 1 value per channel when training";
    return BNK_REFUSED;
  }
  if (t.channels > 0 && L > 0 &&
      (missing(b.src, "src", message) || missing(b.dst, "dst", message))) {
    return BNK_FAILED;
  }
  if (affine && t.channels > 0 &&
      (missing(b.gamma, "gamma", message) || missing(b.beta, "beta", message))) {
    return BNK_FAILED;
  }
  if (track && (missing(b.running_mean, "running_mean", message) ||
                missing(b.running_var, "running_var", message) ||
                missing(b.num_batches_tracked, "num_batches_tracked", message))) {
    return BNK_FAILED;
  }
  const float eps = static_cast<float>(p.eps);
  const std::int64_t batches = track ? *b.num_batches_tracked + 1 : 0;
  // The weight of this batch's statistics: momentum, or 1/num_batches_tracked (momentum=None).
  const float weight = !track              ? 0.0F
                       : p.cumulative != 0 ? 1.0F / static_cast<float>(batches)
                                           : static_cast<float>(p.momentum);
  for (std::int64_t c = 0; c < t.channels; ++c) {
    if (L == 0) {  // an empty batch has no statistics; PyTorch leaves the running ones alone
      if (b.save_mean != nullptr) b.save_mean[c] = k_nan;
      if (b.save_stat != nullptr) b.save_stat[c] = k_nan;
      continue;
    }
    const channel ch{t, c * t.channel_stride};
    const statistics s = two_pass(ch, b.src);
    const float rstd = inverse_std(s.m2 / static_cast<float>(L), eps);
    const float scale = (affine ? b.gamma[c] : 1.0F) * rstd;
    const float shift = affine ? b.beta[c] : 0.0F;
    for (std::size_t j = 0; j < ch.size(); ++j) {
      const std::int64_t o = ch.at(j);
      b.dst[o] = (b.src[o] - s.mean) * scale + shift;
    }
    if (b.save_mean != nullptr) b.save_mean[c] = s.mean;
    if (b.save_stat != nullptr) b.save_stat[c] = rstd;
    if (track) {
      const float unbiased = s.m2 / static_cast<float>(L - 1);
      b.running_mean[c] = (1.0F - weight) * b.running_mean[c] + weight * s.mean;
      b.running_var[c] = (1.0F - weight) * b.running_var[c] + weight * unbiased;
    }
  }
  if (track) *b.num_batches_tracked = batches;
  return BNK_OK;
}

bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const tensor_map& t,
                             std::string& message) {
  if (t.channels == 0 || t.per_channel() == 0) return BNK_OK;
  const bool affine = p.affine != 0;
  if (missing(b.src, "src", message) || missing(b.dst, "dst", message) ||
      missing(b.running_mean, "running_mean", message) ||
      missing(b.running_var, "running_var", message) ||
      (affine && (missing(b.gamma, "gamma", message) || missing(b.beta, "beta", message)))) {
    return BNK_FAILED;
  }
  const float eps = static_cast<float>(p.eps);
  for (std::int64_t c = 0; c < t.channels; ++c) {
    const channel ch{t, c * t.channel_stride};
    const float scale = (affine ? b.gamma[c] : 1.0F) * inverse_std(b.running_var[c], eps);
    const float shift = affine ? b.beta[c] : 0.0F;
    const float mean = b.running_mean[c];
    for (std::size_t j = 0; j < ch.size(); ++j) {
      const std::int64_t o = ch.at(j);
      b.dst[o] = (b.src[o] - mean) * scale + shift;
    }
  }
  return BNK_OK;
}

// dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)), dγ = Σ dy·x̂, dβ = Σ dy, with the mean and r of the
// forward pass (saved, or recomputed from src).
bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const tensor_map& t,
                             std::string& message) {
  const std::int64_t L = t.per_channel();
  const bool affine = p.affine != 0;
  if (L == 1) {
    message = "expected more than 1 value per channel when training";
    return BNK_REFUSED;
  }
  if (t.channels == 0) return BNK_OK;
  if (L > 0 && (missing(b.src, "src", message) || missing(b.diff_dst, "diff_dst", message) ||
                missing(b.diff_src, "diff_src", message))) {
    return BNK_FAILED;
  }
  if (affine &&
      (missing(b.gamma, "gamma", message) || missing(b.diff_gamma, "diff_gamma", message) ||
       missing(b.diff_beta, "diff_beta", message))) {
    return BNK_FAILED;
  }
  const float eps = static_cast<float>(p.eps);
  const bool saved = b.save_mean != nullptr && b.save_stat != nullptr;
  const float n = static_cast<float>(L);
  for (std::int64_t c = 0; c < t.channels; ++c) {
    if (L == 0) {  // empty sums
      if (affine) b.diff_gamma[c] = b.diff_beta[c] = 0.0F;
      continue;
    }
    const channel ch{t, c * t.channel_stride};
    const float* x = b.src;
    const float* dy = b.diff_dst;
    float mean = 0.0F;
    float rstd = 0.0F;
    if (saved) {
      mean = b.save_mean[c];
      rstd = b.save_stat[c];
    } else {
      const statistics s = two_pass(ch, x);
      mean = s.mean;
      rstd = inverse_std(s.m2 / n, eps);
    }
    const float sum_dy = ch.sum([dy](std::int64_t o) { return dy[o]; });
    const float sum_dy_xhat =
        ch.sum([x, dy, mean](std::int64_t o) { return dy[o] * (x[o] - mean); }) * rstd;
    if (affine) {
      b.diff_gamma[c] = sum_dy_xhat;
      b.diff_beta[c] = sum_dy;
    }
    const float scale = (affine ? b.gamma[c] : 1.0F) * rstd;
    const float mean_dy = sum_dy / n;
    const float mean_dy_xhat = sum_dy_xhat / n;
    for (std::size_t j = 0; j < ch.size(); ++j) {
      const std::int64_t o = ch.at(j);
      const float xhat = (x[o] - mean) * rstd;
      b.diff_src[o] = scale * ((dy[o] - mean_dy) - xhat * mean_dy_xhat);
    }
  }
  return BNK_OK;
}

// The running statistics are constants: dx = γ·r·dy, dγ = r·Σ dy·(x − μ_run), dβ = Σ dy.
bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b, const tensor_map& t,
                              std::string& message) {
  if (t.channels == 0) return BNK_OK;
  const bool affine = p.affine != 0;
  if (missing(b.running_mean, "running_mean", message) ||
      missing(b.running_var, "running_var", message)) {
    return BNK_FAILED;
  }
  if (t.per_channel() > 0 &&
      (missing(b.src, "src", message) || missing(b.diff_dst, "diff_dst", message) ||
       missing(b.diff_src, "diff_src", message))) {
    return BNK_FAILED;
  }
  if (affine &&
      (missing(b.gamma, "gamma", message) || missing(b.diff_gamma, "diff_gamma", message) ||
       missing(b.diff_beta, "diff_beta", message))) {
    return BNK_FAILED;
  }
  const float eps = static_cast<float>(p.eps);
  for (std::int64_t c = 0; c < t.channels; ++c) {
    const channel ch{t, c * t.channel_stride};
    const float* x = b.src;
    const float* dy = b.diff_dst;
    const float rstd = inverse_std(b.running_var[c], eps);
    const float scale = (affine ? b.gamma[c] : 1.0F) * rstd;
    for (std::size_t j = 0; j < ch.size(); ++j) {
      const std::int64_t o = ch.at(j);
      b.diff_src[o] = scale * dy[o];
    }
    if (affine) {
      const float mean = b.running_mean[c];
      b.diff_beta[c] = ch.sum([dy](std::int64_t o) { return dy[o]; });
      b.diff_gamma[c] =
          ch.sum([x, dy, mean](std::int64_t o) { return dy[o] * (x[o] - mean); }) * rstd;
    }
  }
  return BNK_OK;
}

}  // namespace

my_batch_norm::my_batch_norm() {
  info_.name = "my_batch_norm";
  info_.version = "1.0";
  info_.convention = "pytorch";
  info_.layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW | BNK_LAYOUT_NHWC |
                  BNK_LAYOUT_NCDHW | BNK_LAYOUT_NDHWC | BNK_LAYOUT_STRIDED;
  info_.updates_running = true;
  info_.supports_cumulative = true;  // momentum=None
  info_.saves = BNK_SAVES_MEAN_INVSTD;
  for (bool& m : info_.modes) m = true;
}

bnk_status my_batch_norm::run(bnoracle::bn_mode mode, const bnk_problem& problem,
                              const bnk_buffers& buffers, std::string& message) {
  tensor_map t;
  if (!map_tensor(problem.shape, t, message)) return BNK_UNSUPPORTED;
  switch (mode) {
    case bnoracle::bn_mode::forward_training:
      return forward_training(problem, buffers, t, message);
    case bnoracle::bn_mode::forward_inference:
      return forward_inference(problem, buffers, t, message);
    case bnoracle::bn_mode::backward_training:
      return backward_training(problem, buffers, t, message);
    case bnoracle::bn_mode::backward_inference:
      return backward_inference(problem, buffers, t, message);
  }
  message = "unknown mode";
  return BNK_FAILED;
}

}  // namespace example
