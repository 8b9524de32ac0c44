// libbna_libtorch.so: PyTorch's own CPU batch norm (ATen, libtorch) behind the bnoracle kernel ABI
// (adapters/include/bnoracle/kernel_abi.h, docs/kernel-abi.md). README.md in this directory says
// what it claims and where it deviates; FINDINGS.md holds the conformance results.
//
// The adapter adds no arithmetic of its own to the batch-norm modes: every output is computed by
// ATen and copied bit for bit into the bnoracle buffers (the one conversion is of the double
// saved statistics PyTorch returns for an empty batch). What the adapter does itself is what
// torch.nn.BatchNorm*d and torch.nn.functional.batch_norm do in Python before they reach ATen,
// because that is the code PyTorch users run:
//
// - forward: `at::_batch_norm_impl_index`, the function `at::batch_norm` (= torch.batch_norm, the
//   call in F.batch_norm) forwards to. On CPU it calls `at::native_batch_norm` (impl index 0) and,
//   unlike `at::batch_norm`, also returns the saved mean and invstd, so save_mean/save_stat come
//   from PyTorch itself. It also holds PyTorch's empty-input shortcut (input.numel() == 0:
//   output = input.clone()·weight[0] + bias[0], running statistics untouched); calling
//   `at::native_batch_norm` directly on an empty batch (N = 0) kills the process with SIGFPE
//   (an integer division by N in batch_norm_kernel.cpp; see FINDINGS.md), which no user of the
//   module path ever hits. PyTorch 1.13 has no CPU SyncBN merge (see the table at the end); the
//   fold is torch.nn.utils.fusion.fuse_conv_bn_weights, transcribed into the same ATen ops.
// - backward: `at::native_batch_norm_backward`, the derivative autograd records for
//   native_batch_norm (tools/autograd/derivatives.yaml), with the saved statistics of forward
//   training (train = true) or with the running statistics (train = false). For an empty batch
//   the forward never reached native_batch_norm, so autograd differentiates the shortcut graph
//   (clone, ·weight[0], +bias[0]); the adapter runs exactly that through torch::autograd::grad.
// - num_batches_tracked and momentum = None: _BatchNorm.forward (torch/nn/modules/batchnorm.py)
//   increments num_batches_tracked in training when tracking, then uses
//   exponential_average_factor = 1.0 / float(num_batches_tracked) (a double) when momentum is
//   None. ATen never touches the counter.
// - L = 1 in training: ATen's native_batch_norm accepts it (running_var becomes NaN through
//   0/(L − 1)); the Python layer refuses it: F.batch_norm calls _verify_batch_size, which raises
//   ValueError("Expected more than 1 value per channel when training, ..."). The adapter behaves
//   like the Python layer, the thing users run, and returns BNK_REFUSED with that message without
//   writing anything. (The module increments num_batches_tracked before F.batch_norm raises; the
//   ABI requires a refused call to write nothing, so the adapter does not count the batch.)
//
// Threads and fork. bnoracle runs every call in a child forked from a parent that never runs the
// kernel itself (adapters/include/bnoracle/isolation.hpp). libtorch's intra-op parallelism is
// OpenMP (libgomp) in this build; libgomp deadlocks in a child forked after the parent started
// its thread pool, but the pool starts lazily at the first parallel region, which only ever runs
// in a child, and each child exits with _exit. The loading process, when it reads the kernel table
// (bnoracle_kernel_v1), and otherwise the first entry point called, sets the intra-op thread
// count before any ATen work (at::set_num_threads starts no thread), to 1 by default
// (deterministic, and the same numerics on every machine: with T threads the channels-last
// statistics are summed in T float partial sums), or to the value of the environment variable
// BNA_LIBTORCH_THREADS (1..256) to test PyTorch's multi-threaded code paths. FINDINGS.md records
// runs with both settings.
//
// Data types. Every tensor is a view of the caller's buffer in its role's type (geometry's data,
// params and stats), so ATen runs the dtype combination a PyTorch user's module runs: float32,
// or bfloat16 in the combinations accepted_types lists.
#include "bnoracle/kernel_abi.h"
#include "bnoracle/kernel_abi_v1_view.hpp"
#include "common/norm_kernel.hpp"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_batch_norm_impl_index.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/native_batch_norm_backward.h>
#include <ATen/ops/native_group_norm.h>
#include <ATen/ops/native_group_norm_backward.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/native_layer_norm_backward.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <tuple>
#include <vector>

#if defined(__GNUC__)
#define BNA_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define BNA_EXPORT extern "C"
#endif

namespace {

constexpr std::uint32_t k_layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW |
                                    BNK_LAYOUT_NHWC | BNK_LAYOUT_NCDHW | BNK_LAYOUT_NDHWC |
                                    BNK_LAYOUT_STRIDED;

// F.batch_norm's _verify_batch_size message (torch/nn/functional.py), without the size suffix.
constexpr const char* k_single_value_refusal =
    "pytorch: Expected more than 1 value per channel when training (F.batch_norm's "
    "_verify_batch_size raises ValueError)";

// ---- Messages -------------------------------------------------------------------------------

// Rejections, `missing` and the fold's checks are the bundled kernels' (common/norm_kernel.hpp).
using bnoracle::kernels::fold_ready;
using bnoracle::kernels::missing;
using bnoracle::kernels::reject;
using bnoracle::kernels::rejection;

// Writes the first line of `text` (c10 messages carry long backtraces and C++ stack traces).
int report(char* message, std::size_t message_size, int status, const char* text) {
  if (message != nullptr && message_size > 0) {
    const char* end = std::strchr(text, '\n');
    const int len =
        end == nullptr ? static_cast<int>(std::strlen(text)) : static_cast<int>(end - text);
    std::snprintf(message, message_size, "%.*s", len, text);
  }
  return status;
}

// ---- Threads --------------------------------------------------------------------------------

// See the header comment. Called at the start of every entry point, before any ATen work.
void configure_threads() {
  static bool configured = false;
  if (configured) return;
  configured = true;
  int threads = 1;
  if (const char* env = std::getenv("BNA_LIBTORCH_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != nullptr && *end == '\0' && v >= 1 && v <= 256) threads = static_cast<int>(v);
  }
  at::set_num_threads(threads);
}

// ---- The problem as ATen sizes and strides --------------------------------------------------

struct geometry {
  int rank = 0;
  std::array<std::int64_t, 5> sizes{};    // logical N, C, spatial...
  std::array<std::int64_t, 5> strides{};  // in elements, as given (all >= 0)
  std::int64_t c = 0;                     // channels
  std::int64_t L = 0;                     // elements per channel: N · spatial size
  std::int64_t total = 0;                 // elements of the tensor
  // The ATen types of the call's roles (data tensors, γ/β and their gradients, statistics):
  // float32 unless a version-2 call states others (accepted_types).
  at::ScalarType data = at::kFloat;
  at::ScalarType params = at::kFloat;
  at::ScalarType stats = at::kFloat;

  [[nodiscard]] at::IntArrayRef size_ref() const {
    return {sizes.data(), static_cast<std::size_t>(rank)};
  }
  [[nodiscard]] at::IntArrayRef stride_ref() const {
    return {strides.data(), static_cast<std::size_t>(rank)};
  }
};

// Reads and checks the shape. Every layout bit is accepted, with any strides torch::from_blob
// can describe and under which distinct elements have distinct addresses (the outputs share the
// strides of the inputs). ATen has no negative strides ("as_strided: Negative strides are not
// supported"), so a negative stride on an axis of extent > 1 is BNK_UNSUPPORTED, as are zero
// (broadcast) and overlapping strides.
bool make_geometry(const bnk_problem& p, geometry& g, rejection& r) {
  if (p.struct_size < sizeof(bnk_problem)) {
    return reject(r, BNK_FAILED, "bnk_problem.struct_size %u is smaller than ABI version 1's %zu",
                  static_cast<unsigned>(p.struct_size), sizeof(bnk_problem));
  }
  const bnk_shape& s = p.shape;
  if (s.rank < 2 || s.rank > 5) {
    return reject(r, BNK_FAILED, "shape.rank %d is outside 2..5", static_cast<int>(s.rank));
  }
  const std::uint32_t lay = s.layout;
  if (lay == 0 || (lay & (lay - 1U)) != 0 || (lay & k_layouts) == 0) {
    return reject(r, BNK_UNSUPPORTED, "layout 0x%x is not supported by the libtorch adapter",
                  static_cast<unsigned>(lay));
  }
  g.rank = s.rank;
  g.L = 1;
  for (int d = 0; d < s.rank; ++d) {
    if (s.dims[d] < 0) return reject(r, BNK_FAILED, "shape.dims[%d] is negative", d);
    g.sizes[static_cast<std::size_t>(d)] = s.dims[d];
    if (d != 1 && __builtin_mul_overflow(g.L, s.dims[d], &g.L)) g.L = -1;
    if (g.L < 0) break;
  }
  g.c = s.dims[1];
  if (g.L < 0 || __builtin_mul_overflow(g.L, g.c, &g.total)) {
    return reject(r, BNK_UNSUPPORTED, "the shape has more elements than int64 holds");
  }
  // Strides: negative ones are unsupported where they matter; on an axis of extent 0 or 1 a
  // stride addresses nothing, and its magnitude is passed instead.
  for (int d = 0; d < s.rank; ++d) {
    std::int64_t st = s.strides[d];
    if (st < 0) {
      if (s.dims[d] > 1) {
        return reject(r, BNK_UNSUPPORTED,
                      "negative strides (a reversed axis) are not supported: ATen tensors have "
                      "no negative strides");
      }
      st = st == std::numeric_limits<std::int64_t>::min() ? 0 : -st;
    }
    g.strides[static_cast<std::size_t>(d)] = st;
  }
  if (g.total == 0) return true;
  // Distinct elements at distinct addresses: sorted by stride, each stride of an extent > 1 must
  // exceed the span of all smaller ones.
  std::array<std::pair<std::int64_t, std::int64_t>, 5> dims{};  // (stride, extent)
  for (int d = 0; d < s.rank; ++d) {
    dims[static_cast<std::size_t>(d)] = {g.strides[static_cast<std::size_t>(d)], s.dims[d]};
  }
  std::sort(dims.begin(), dims.begin() + s.rank);
  std::int64_t span = 0;
  for (int d = 0; d < s.rank; ++d) {
    const auto [stride, ext] = dims[static_cast<std::size_t>(d)];
    if (ext <= 1) continue;
    std::int64_t reach = 0;
    if (stride <= span || __builtin_mul_overflow(ext - 1, stride, &reach) ||
        __builtin_add_overflow(span, reach, &span)) {
      return reject(r, BNK_UNSUPPORTED,
                    "zero or overlapping strides are not supported: outputs have the strides of "
                    "the inputs and would collide");
    }
  }
  return true;
}

// ---- Tensors over the bnoracle buffers ------------------------------------------------------

at::TensorOptions options(at::ScalarType type) {
  return at::TensorOptions().dtype(type).device(at::kCPU);
}

at::TensorOptions f32() {
  return options(at::kFloat);
}

// A tensor over a caller's data buffer (in the data type) with the problem's sizes and strides.
// ATen does not write through the tensors made from input buffers (the caller maps them
// read-only, so a write would fault and be reported).
at::Tensor over(const void* data, const geometry& g) {
  return at::from_blob(const_cast<void*>(data), g.size_ref(), g.stride_ref(), options(g.data));
}

// A dense vector of n elements of `type` over a caller's buffer.
at::Tensor dense(const void* data, std::int64_t n, at::ScalarType type) {
  return at::from_blob(const_cast<void*>(data), {n}, options(type));
}

// A per-channel vector of parameters (γ, β, dγ, dβ) or of statistics (saved, running).
at::Tensor param_vector(const void* data, std::int64_t c, const geometry& g) {
  return dense(data, c, g.params);
}
at::Tensor stat_vector(const void* data, std::int64_t c, const geometry& g) {
  return dense(data, c, g.stats);
}

// Copies a result of PyTorch into a caller's buffer through the problem's strides; elements the
// strides do not address (padding) are not written. copy_ converts the type where ATen returned
// another one (the double saved statistics of an empty batch) and is a bitwise copy otherwise.
void store(void* data, const geometry& g, const at::Tensor& value) {
  if (g.total == 0) return;
  over(data, g).copy_(value);
}

// Copies n values (any shape) into a caller's dense vector of n elements of `type`.
void store_dense(void* data, std::int64_t n, at::ScalarType type, const at::Tensor& value) {
  if (n == 0) return;
  dense(data, n, type).copy_(value.reshape({n}));
}

c10::optional<at::Tensor> maybe_params(bool present, const void* data, const geometry& g) {
  if (!present) return c10::nullopt;
  return param_vector(data, g.c, g);
}
c10::optional<at::Tensor> maybe_stats(bool present, const void* data, const geometry& g) {
  if (!present) return c10::nullopt;
  return stat_vector(data, g.c, g);
}

// ---- The four modes -------------------------------------------------------------------------

bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                            rejection& r) {
  const bool affine = p.affine != 0;
  const bool track = p.track_running != 0;
  if (g.total > 0 && (missing(b.src, "src", r) || missing(b.dst, "dst", r))) return r.status;
  if (g.c > 0) {
    if (affine && (missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r))) return r.status;
    if (track &&
        (missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r))) {
      return r.status;
    }
  }
  if (track && missing(b.num_batches_tracked, "num_batches_tracked", r)) return r.status;
  if (g.L == 1) {
    reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
    return r.status;
  }
  std::int64_t t = 0;  // num_batches_tracked after the module's increment
  if (track) {
    if (*b.num_batches_tracked < 0 ||
        *b.num_batches_tracked == std::numeric_limits<std::int64_t>::max()) {
      reject(r, BNK_FAILED, "num_batches_tracked is out of range");
      return r.status;
    }
    t = *b.num_batches_tracked + 1;
  }
  // _BatchNorm.forward: exponential_average_factor = momentum, or 1.0 / float(num_batches_tracked)
  // when momentum is None and the statistics are tracked (0.0 otherwise; then unused).
  double factor = p.momentum;
  if (p.cumulative != 0) factor = track ? 1.0 / static_cast<double>(t) : 0.0;

  const at::Tensor x = over(b.src, g);
  const auto result = at::_batch_norm_impl_index(
      x, maybe_params(affine, b.gamma, g), maybe_params(affine, b.beta, g),
      maybe_stats(track, b.running_mean, g), maybe_stats(track, b.running_var, g),
      /*training=*/true, factor, p.eps, /*cudnn_enabled=*/true);
  if (std::get<4>(result) != 0) {
    reject(r, BNK_FAILED, "PyTorch chose batch-norm backend %lld, not the native CPU one",
           static_cast<long long>(std::get<4>(result)));
    return r.status;
  }
  store(b.dst, g, std::get<0>(result));
  // Saved statistics: ATen's save_mean and save_invstd. For an empty batch PyTorch's shortcut
  // returns uninitialized (at::empty) double tensors; they are passed on as they are.
  if (b.save_mean != nullptr) store_dense(b.save_mean, g.c, g.stats, std::get<1>(result));
  if (b.save_stat != nullptr) store_dense(b.save_stat, g.c, g.stats, std::get<2>(result));
  // The running statistics were updated in place by ATen (the tensors are views of the caller's
  // buffers); the module counts the batch.
  if (track) *b.num_batches_tracked = t;
  return BNK_OK;
}

bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                             rejection& r) {
  const bool affine = p.affine != 0;
  if (g.total > 0 && (missing(b.src, "src", r) || missing(b.dst, "dst", r))) return r.status;
  if (g.c > 0) {
    if (missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r)) {
      return r.status;
    }
    if (affine && (missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r))) return r.status;
  }
  // The module in eval mode passes its running buffers, training = False, and momentum (0.0 when
  // momentum is None); ATen reads the running statistics and does not write them.
  const double factor = p.cumulative != 0 ? 0.0 : p.momentum;
  const auto result = at::_batch_norm_impl_index(
      over(b.src, g), maybe_params(affine, b.gamma, g), maybe_params(affine, b.beta, g),
      stat_vector(b.running_mean, g.c, g), stat_vector(b.running_var, g.c, g),
      /*training=*/false, factor, p.eps, /*cudnn_enabled=*/true);
  store(b.dst, g, std::get<0>(result));
  return BNK_OK;
}

// Backward of an empty batch (L = 0) as autograd computes it for the module: at::batch_norm's
// shortcut graph (clone, ·weight[0], +bias[0]) differentiated by torch::autograd::grad.
bnk_status backward_empty(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                          bool training) {
  const bool affine = p.affine != 0;
  at::Tensor x = over(b.src, g).detach().requires_grad_(true);
  at::Tensor w;
  at::Tensor bias;
  if (affine) {
    w = param_vector(b.gamma, g.c, g).detach().requires_grad_(true);
    // beta is not an input of the backward modes; its value does not enter any gradient.
    bias = at::zeros({g.c}, options(g.params)).requires_grad_(true);
  }
  c10::optional<at::Tensor> rm;
  c10::optional<at::Tensor> rv;
  if (!training) {
    rm = stat_vector(b.running_mean, g.c, g);
    rv = stat_vector(b.running_var, g.c, g);
  }
  const at::Tensor y = at::batch_norm(x, w, bias, rm, rv, training, /*momentum=*/0.0, p.eps,
                                      /*cudnn_enabled=*/true);
  torch::autograd::variable_list inputs{x};
  if (affine) {
    inputs.push_back(w);
    inputs.push_back(bias);
  }
  const auto grads = torch::autograd::grad({y}, inputs, {over(b.diff_dst, g)},
                                           /*retain_graph=*/false, /*create_graph=*/false,
                                           /*allow_unused=*/true);
  if (grads[0].defined()) store(b.diff_src, g, grads[0]);
  if (affine) {
    const at::Tensor zeros = at::zeros({g.c}, options(g.params));
    store_dense(b.diff_gamma, g.c, g.params, grads[1].defined() ? grads[1] : zeros);
    store_dense(b.diff_beta, g.c, g.params, grads[2].defined() ? grads[2] : zeros);
  }
  return BNK_OK;
}

// The buffers both backward modes need: x, dy and dx; γ, dγ and dβ when affine.
bool backward_buffers_given(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                            rejection& r) {
  if (g.total > 0 && (missing(b.src, "src", r) || missing(b.diff_dst, "diff_dst", r) ||
                      missing(b.diff_src, "diff_src", r))) {
    return false;
  }
  return !(g.c > 0 && p.affine != 0 &&
           (missing(b.gamma, "gamma", r) || missing(b.diff_gamma, "diff_gamma", r) ||
            missing(b.diff_beta, "diff_beta", r)));
}

bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                             rejection& r) {
  const bool affine = p.affine != 0;
  if (!backward_buffers_given(p, b, g, r)) return r.status;
  if (g.L == 1) {  // the forward pass was refused, so there is no backward pass
    reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
    return r.status;
  }
  if (g.total == 0) return backward_empty(p, b, g, /*training=*/true);
  const at::Tensor x = over(b.src, g);
  const c10::optional<at::Tensor> w = maybe_params(affine, b.gamma, g);
  at::Tensor save_mean;
  at::Tensor save_invstd;
  if (b.save_mean != nullptr && b.save_stat != nullptr) {
    save_mean = stat_vector(b.save_mean, g.c, g);
    save_invstd = stat_vector(b.save_stat, g.c, g);
  } else {
    // No saved statistics given: recompute them as the forward pass autograd records would have.
    const auto fwd = at::_batch_norm_impl_index(x, w, c10::nullopt, c10::nullopt, c10::nullopt,
                                                /*training=*/true, 0.0, p.eps,
                                                /*cudnn_enabled=*/true);
    save_mean = std::get<1>(fwd);
    save_invstd = std::get<2>(fwd);
  }
  const auto grads = at::native_batch_norm_backward(over(b.diff_dst, g), x, w, c10::nullopt,
                                                    c10::nullopt, save_mean, save_invstd,
                                                    /*train=*/true, p.eps, {true, affine, affine});
  store(b.diff_src, g, std::get<0>(grads));
  if (affine) {
    store_dense(b.diff_gamma, g.c, g.params, std::get<1>(grads));
    store_dense(b.diff_beta, g.c, g.params, std::get<2>(grads));
  }
  return BNK_OK;
}

bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                              rejection& r) {
  const bool affine = p.affine != 0;
  if (g.c == 0 && !affine) return BNK_OK;
  if (g.c > 0 &&
      (missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r))) {
    return r.status;
  }
  if (!backward_buffers_given(p, b, g, r)) return r.status;
  if (g.total == 0) return backward_empty(p, b, g, /*training=*/false);
  // What autograd passes in eval mode: the running statistics, and native_batch_norm's empty
  // (size 0) save_mean and save_invstd.
  const at::Tensor none = at::empty({0}, options(g.stats));
  const auto grads = at::native_batch_norm_backward(
      over(b.diff_dst, g), over(b.src, g), maybe_params(affine, b.gamma, g),
      stat_vector(b.running_mean, g.c, g), stat_vector(b.running_var, g.c, g), none, none,
      /*train=*/false, p.eps, {true, affine, affine});
  store(b.diff_src, g, std::get<0>(grads));
  if (affine) {
    store_dense(b.diff_gamma, g.c, g.params, std::get<1>(grads));
    store_dense(b.diff_beta, g.c, g.params, std::get<2>(grads));
  }
  return BNK_OK;
}

// ---- Folding --------------------------------------------------------------------------------

// torch.nn.utils.fusion.fuse_conv_bn_weights (torch/nn/utils/fusion.py), the function
// torch.ao.quantization's fuse_modules and fuse_conv_bn_eval use, transcribed operation by
// operation into the same ATen calls (PyTorch has no C++ function for it):
//   conv_b = zeros_like(bn_rm) if None;  bn_var_rsqrt = rsqrt(bn_rv + bn_eps)
//   conv_w = conv_w * (bn_w * bn_var_rsqrt).reshape([-1, 1, ...])
//   conv_b = (conv_b - bn_rm) * bn_var_rsqrt * bn_w + bn_b
bnk_status fold_with_aten(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  if (!fold_ready(p, b, r)) return r.status;
  const std::int64_t o = p.out_channels;
  const std::int64_t k = p.fan_in;
  const at::Tensor rm = dense(b.running_mean, o, at::kFloat);
  const at::Tensor rv = dense(b.running_var, o, at::kFloat);
  const at::Tensor bn_w = dense(b.gamma, o, at::kFloat);
  const at::Tensor bn_b = dense(b.beta, o, at::kFloat);
  const at::Tensor conv_b = p.has_bias != 0 ? dense(b.bias, o, at::kFloat) : at::zeros_like(rm);
  const at::Tensor bn_var_rsqrt = at::rsqrt(rv + p.eps);
  if (k > 0) {
    const at::Tensor conv_w = at::from_blob(const_cast<float*>(b.weight), {o, k}, f32());
    const at::Tensor fused_w = conv_w * (bn_w * bn_var_rsqrt).reshape({-1, 1});
    at::from_blob(b.weight_out, {o, k}, f32()).copy_(fused_w);
  }
  const at::Tensor fused_b = (conv_b - rm) * bn_var_rsqrt * bn_w + bn_b;
  store_dense(b.bias_out, o, at::kFloat, fused_b);
  return BNK_OK;
}

// ---- Layer, group and instance norm (ABI version 2) -----------------------------------------
//
// What torch.nn.functional runs, as for batch norm:
// - F.layer_norm → at::layer_norm → at::native_layer_norm (on the contiguous input); backward:
//   at::native_layer_norm_backward with the saved mean and rstd (derivatives.yaml).
// - F.group_norm → at::group_norm → at::native_group_norm on input.contiguous(the input's
//   suggested memory format), so channels-last input takes ATen's channels-last kernel; backward:
//   at::native_group_norm_backward on contiguous (NCHW-ordered) dy and x, which is what 1.13's
//   derivatives.yaml passes it (its CPU backward has no channels-last kernel). F.group_norm first
//   runs batch norm's _verify_batch_size on the (N·C/G, G, spatial...) view, which raises when
//   (N·C/G)·spatial is 1; the adapter refuses that problem with the same message.
// - F.instance_norm → at::instance_norm, transcribed: the input viewed as (1, N·C, spatial...),
//   γ, β and the running statistics repeated N times, batch norm on it (here through
//   at::_batch_norm_impl_index, which also returns the saved statistics), then each running
//   statistic replaced by the mean of its N updated copies. Backward: native_batch_norm_backward
//   on the same view, and dγ, dβ summed over the N copies (what the backward of repeat does).
//   F.instance_norm refuses one spatial element in training (_verify_spatial_size).
//   nn.InstanceNorm never counts batches: num_batches_tracked is left as given, and
//   momentum = None is BNK_UNSUPPORTED (F.instance_norm takes a float only).
// RMS norm is not declared: PyTorch 1.13 has no RMS norm op (examples/subprocess/torch_kernel.py
// runs the LlamaRMSNorm formulation in torch operations).

constexpr std::uint32_t k_ops = BNK_OP_BIT(BNK_OP_BATCH_NORM) | BNK_OP_BIT(BNK_OP_LAYER_NORM) |
                                BNK_OP_BIT(BNK_OP_GROUP_NORM) | BNK_OP_BIT(BNK_OP_INSTANCE_NORM);

// F.group_norm's and F.instance_norm's refusals (torch/nn/functional.py), as the Python layer
// raises them.
constexpr const char* k_group_refusal =
    "pytorch: Expected more than 1 value per channel when training (F.group_norm's "
    "_verify_batch_size raises ValueError on the (N*C/G, G, spatial...) view)";
constexpr const char* k_spatial_refusal =
    "pytorch: Expected more than 1 spatial element when training (F.instance_norm's "
    "_verify_spatial_size raises ValueError)";

// A gradient autograd would return for a parameter: zeros where ATen leaves it undefined.
at::Tensor or_zeros(const at::Tensor& t, std::int64_t n, const geometry& g) {
  return t.defined() ? t : at::zeros({n}, options(g.params));
}

// The problem of one family call: the version-2 problem with its geometry and the ATen views
// of its buffers.
struct family_call {
  const bnk_problem_v2& p;
  const bnk_buffers_v2& b;
  const geometry& g;
  bool affine() const { return p.op.params != BNK_PARAMS_NONE; }
  std::int64_t groups() const { return p.statistic_groups; }
  std::int64_t params() const { return p.parameters; }
  at::Tensor x() const { return over(b.src, g); }
  at::Tensor dy() const { return over(b.diff_dst, g); }
  void store_output(void* data, const at::Tensor& value) const { store(data, g, value); }
  // n parameters or statistics over a caller's buffer, and stores into one.
  at::Tensor param_vec(const void* data, std::int64_t n) const { return dense(data, n, g.params); }
  at::Tensor stat_vec(const void* data, std::int64_t n) const { return dense(data, n, g.stats); }
  void store_params(void* data, std::int64_t n, const at::Tensor& value) const {
    store_dense(data, n, g.params, value);
  }
  void store_stats(void* data, std::int64_t n, const at::Tensor& value) const {
    store_dense(data, n, g.stats, value);
  }
};

// The buffers every mode of the family needs.
bool family_buffers_given(const family_call& f, bool backward, rejection& r) {
  const bnk_buffers_v2& b = f.b;
  if (f.g.total > 0) {
    if (missing(b.src, "src", r)) return false;
    if (!backward && missing(b.dst, "dst", r)) return false;
    if (backward && (missing(b.diff_dst, "diff_dst", r) || missing(b.diff_src, "diff_src", r))) {
      return false;
    }
  }
  if (f.params() > 0 && f.affine()) {
    if (missing(b.gamma, "gamma", r)) return false;
    if (!backward && missing(b.beta, "beta", r)) return false;
    if (backward &&
        (missing(b.diff_gamma, "diff_gamma", r) || missing(b.diff_beta, "diff_beta", r))) {
      return false;
    }
  }
  return true;
}

// ---- layer norm

struct layer_shape {
  std::vector<std::int64_t> normalized;  // the trailing normalized extents
  std::vector<std::int64_t> stats;       // ATen's mean/rstd shape: leading extents, then 1s
};

layer_shape layer_shape_of(const family_call& f) {
  layer_shape s;
  const int axis = f.g.rank - f.p.op.normalized_axes;
  for (int d = 0; d < f.g.rank; ++d) {
    const std::int64_t e = f.g.sizes[static_cast<std::size_t>(d)];
    if (d >= axis) s.normalized.push_back(e);
    s.stats.push_back(d < axis ? e : 1);
  }
  return s;
}

c10::optional<at::Tensor> layer_param(const family_call& f, const void* data,
                                      const layer_shape& s) {
  if (!f.affine()) return c10::nullopt;
  return f.param_vec(data, f.params()).view(s.normalized);
}

bnk_status layer_forward(const family_call& f, rejection& r) {
  if (!family_buffers_given(f, false, r)) return r.status;
  const layer_shape s = layer_shape_of(f);
  const auto [y, mean, rstd] = at::native_layer_norm(
      f.x(), s.normalized, layer_param(f, f.b.gamma, s), layer_param(f, f.b.beta, s), f.p.eps);
  f.store_output(f.b.dst, y);
  if (f.b.save_mean != nullptr) f.store_stats(f.b.save_mean, f.groups(), mean);
  if (f.b.save_stat != nullptr) f.store_stats(f.b.save_stat, f.groups(), rstd);
  return BNK_OK;
}

bnk_status layer_backward(const family_call& f, rejection& r) {
  if (!family_buffers_given(f, true, r)) return r.status;
  const layer_shape s = layer_shape_of(f);
  const at::Tensor x = f.x();
  const c10::optional<at::Tensor> w = layer_param(f, f.b.gamma, s);
  at::Tensor mean;
  at::Tensor rstd;
  if (f.b.save_mean != nullptr && f.b.save_stat != nullptr) {
    mean = f.stat_vec(f.b.save_mean, f.groups()).view(s.stats);
    rstd = f.stat_vec(f.b.save_stat, f.groups()).view(s.stats);
  } else {
    const auto fwd = at::native_layer_norm(x, s.normalized, w, c10::nullopt, f.p.eps);
    mean = std::get<1>(fwd);
    rstd = std::get<2>(fwd);
  }
  // β's value enters no gradient; autograd passes the module's bias, here zeros of its shape.
  c10::optional<at::Tensor> bias;
  if (f.affine()) bias = at::zeros(s.normalized, options(f.g.params));
  const bool a = f.affine();
  const auto [dx, dw, db] =
      at::native_layer_norm_backward(f.dy(), x, s.normalized, mean, rstd, w, bias, {true, a, a});
  if (f.g.total > 0) f.store_output(f.b.diff_src, dx);
  if (a) {
    f.store_params(f.b.diff_gamma, f.params(), or_zeros(dw, f.params(), f.g));
    f.store_params(f.b.diff_beta, f.params(), or_zeros(db, f.params(), f.g));
  }
  return BNK_OK;
}

// ---- group norm

struct group_dims {
  std::int64_t n = 0;
  std::int64_t c = 0;
  std::int64_t hw = 1;
};

group_dims group_dims_of(const geometry& g) {
  group_dims d{g.sizes[0], g.sizes[1], 1};
  for (int i = 2; i < g.rank; ++i) d.hw *= g.sizes[static_cast<std::size_t>(i)];
  return d;
}

// F.group_norm's _verify_batch_size on (N·C/G, G, spatial...): the product of the first and
// the spatial extents must not be 1.
bool group_refused(const family_call& f, rejection& r) {
  const group_dims d = group_dims_of(f.g);
  if (f.p.op.groups > 0 && d.n * d.c / f.p.op.groups * d.hw == 1) {
    reject(r, BNK_REFUSED, "%s", k_group_refusal);
    return true;
  }
  return false;
}

c10::optional<at::Tensor> channel_param(const family_call& f, const void* data) {
  if (!f.affine()) return c10::nullopt;
  return f.param_vec(data, f.params());
}

bnk_status group_forward(const family_call& f, rejection& r) {
  if (!family_buffers_given(f, false, r) || group_refused(f, r)) return r.status;
  const group_dims d = group_dims_of(f.g);
  const at::Tensor in = f.x();
  const at::Tensor x = in.contiguous(in.suggest_memory_format());
  const auto [y, mean, rstd] =
      at::native_group_norm(x, channel_param(f, f.b.gamma), channel_param(f, f.b.beta), d.n, d.c,
                            d.hw, f.p.op.groups, f.p.eps);
  f.store_output(f.b.dst, y);
  if (f.b.save_mean != nullptr) f.store_stats(f.b.save_mean, f.groups(), mean);
  if (f.b.save_stat != nullptr) f.store_stats(f.b.save_stat, f.groups(), rstd);
  return BNK_OK;
}

bnk_status group_backward(const family_call& f, rejection& r) {
  if (!family_buffers_given(f, true, r) || group_refused(f, r)) return r.status;
  const group_dims d = group_dims_of(f.g);
  const at::Tensor x = f.x().contiguous();
  const c10::optional<at::Tensor> w = channel_param(f, f.b.gamma);
  at::Tensor mean;
  at::Tensor rstd;
  if (f.b.save_mean != nullptr && f.b.save_stat != nullptr) {
    mean = f.stat_vec(f.b.save_mean, f.groups()).view({d.n, f.p.op.groups});
    rstd = f.stat_vec(f.b.save_stat, f.groups()).view({d.n, f.p.op.groups});
  } else {
    // The statistics the forward (in the input's memory format) would have saved.
    const at::Tensor in = f.x();
    const auto fwd = at::native_group_norm(in.contiguous(in.suggest_memory_format()), w,
                                           c10::nullopt, d.n, d.c, d.hw, f.p.op.groups, f.p.eps);
    mean = std::get<1>(fwd);
    rstd = std::get<2>(fwd);
  }
  const bool a = f.affine();
  const auto [dx, dw, db] = at::native_group_norm_backward(
      f.dy().contiguous(), x, mean, rstd, w, d.n, d.c, d.hw, f.p.op.groups, {true, a, a});
  if (f.g.total > 0) f.store_output(f.b.diff_src, dx);
  if (a) {
    f.store_params(f.b.diff_gamma, f.params(), or_zeros(dw, f.params(), f.g));
    f.store_params(f.b.diff_beta, f.params(), or_zeros(db, f.params(), f.g));
  }
  return BNK_OK;
}

// ---- instance norm

// at::instance_norm's view of the input: (1, N·C, spatial...).
std::vector<std::int64_t> instance_view(const geometry& g) {
  std::vector<std::int64_t> shape{1, g.sizes[0] * g.sizes[1]};
  for (int d = 2; d < g.rank; ++d) shape.push_back(g.sizes[static_cast<std::size_t>(d)]);
  return shape;
}

// A per-channel vector of `type` repeated N times (repeat_if_defined).
c10::optional<at::Tensor> repeated(bool present, const void* data, std::int64_t c, std::int64_t n,
                                   at::ScalarType type) {
  if (!present) return c10::nullopt;
  return dense(data, c, type).repeat({n});
}

bool spatial_refused(const family_call& f, bool use_input_stats, rejection& r) {
  if (use_input_stats && group_dims_of(f.g).hw == 1) {
    reject(r, BNK_REFUSED, "%s", k_spatial_refusal);
    return true;
  }
  return false;
}

bnk_status instance_forward(const family_call& f, bool training, rejection& r) {
  if (!family_buffers_given(f, false, r)) return r.status;
  const bool running = f.p.op.running_stats != 0 && (!training || f.p.track_running != 0);
  const std::int64_t n = f.g.sizes[0];
  const std::int64_t c = f.g.sizes[1];
  if (running && c > 0 &&
      (missing(f.b.running_mean, "running_mean", r) ||
       missing(f.b.running_var, "running_var", r))) {
    return r.status;
  }
  if (training && running && f.p.cumulative != 0) {
    reject(r, BNK_UNSUPPORTED, "instance norm has no cumulative average (momentum = None)");
    return r.status;
  }
  if (spatial_refused(f, training, r)) return r.status;
  const c10::optional<at::Tensor> rm = repeated(running, f.b.running_mean, c, n, f.g.stats);
  const c10::optional<at::Tensor> rv = repeated(running, f.b.running_var, c, n, f.g.stats);
  const at::Tensor x = f.x().contiguous().view(instance_view(f.g));
  const auto result = at::_batch_norm_impl_index(
      x, repeated(f.affine(), f.b.gamma, c, n, f.g.params),
      repeated(f.affine(), f.b.beta, c, n, f.g.params), rm, rv,
      /*training=*/training, f.p.momentum, f.p.eps, /*cudnn_enabled=*/true);
  f.store_output(f.b.dst, std::get<0>(result).view(f.g.size_ref()));
  if (training) {
    if (f.b.save_mean != nullptr) f.store_stats(f.b.save_mean, f.groups(), std::get<1>(result));
    if (f.b.save_stat != nullptr) f.store_stats(f.b.save_stat, f.groups(), std::get<2>(result));
    // Each running statistic becomes the mean of its N updated copies. (In eval mode PyTorch
    // writes back the mean of N unchanged copies too; inference's running statistics are
    // read-only inputs here, so that write is left out.)
    if (running && c > 0) {
      f.store_stats(f.b.running_mean, c, rm->view({n, c}).mean(0, false));
      f.store_stats(f.b.running_var, c, rv->view({n, c}).mean(0, false));
    }
  }
  return BNK_OK;
}

bnk_status instance_backward(const family_call& f, bool training, rejection& r) {
  if (!family_buffers_given(f, true, r)) return r.status;
  const std::int64_t n = f.g.sizes[0];
  const std::int64_t c = f.g.sizes[1];
  if (!training && c > 0 &&
      (missing(f.b.running_mean, "running_mean", r) ||
       missing(f.b.running_var, "running_var", r))) {
    return r.status;
  }
  if (spatial_refused(f, training, r)) return r.status;
  const std::vector<std::int64_t> view = instance_view(f.g);
  const at::Tensor x = f.x().contiguous().view(view);
  const bool a = f.affine();
  const c10::optional<at::Tensor> w = repeated(a, f.b.gamma, c, n, f.g.params);
  at::Tensor dx;
  at::Tensor dw;
  at::Tensor db;
  if (f.g.total == 0) {
    // No element: autograd differentiates at::batch_norm's empty-input shortcut
    // (clone, ·weight[0], +bias[0]), as the batch-norm modes do.
    at::Tensor xv = x.detach().requires_grad_(true);
    at::Tensor wv;
    at::Tensor bv;
    torch::autograd::variable_list inputs{xv};
    if (a) {
      wv = w->detach().requires_grad_(true);
      bv = at::zeros({n * c}, options(f.g.params)).requires_grad_(true);
      inputs.push_back(wv);
      inputs.push_back(bv);
    }
    const at::Tensor y = at::batch_norm(
        xv, wv, bv, repeated(!training, f.b.running_mean, c, n, f.g.stats),
        repeated(!training, f.b.running_var, c, n, f.g.stats), training, 0.0, f.p.eps,
        /*cudnn_enabled=*/true);
    const auto grads = torch::autograd::grad({y}, inputs, {f.dy().contiguous().view(view)}, false,
                                             false, /*allow_unused=*/true);
    if (a) {
      dw = grads[1];
      db = grads[2];
    }
  } else {
    at::Tensor save_mean;
    at::Tensor save_invstd;
    c10::optional<at::Tensor> rm;
    c10::optional<at::Tensor> rv;
    if (training) {
      if (f.b.save_mean != nullptr && f.b.save_stat != nullptr) {
        save_mean = f.stat_vec(f.b.save_mean, f.groups());
        save_invstd = f.stat_vec(f.b.save_stat, f.groups());
      } else {
        const auto fwd = at::_batch_norm_impl_index(x, w, c10::nullopt, c10::nullopt, c10::nullopt,
                                                    true, 0.0, f.p.eps, true);
        save_mean = std::get<1>(fwd);
        save_invstd = std::get<2>(fwd);
      }
    } else {
      save_mean = at::empty({0}, options(f.g.stats));
      save_invstd = at::empty({0}, options(f.g.stats));
      rm = repeated(true, f.b.running_mean, c, n, f.g.stats);
      rv = repeated(true, f.b.running_var, c, n, f.g.stats);
    }
    const auto grads =
        at::native_batch_norm_backward(f.dy().contiguous().view(view), x, w, rm, rv, save_mean,
                                       save_invstd, training, f.p.eps, {true, a, a});
    dx = std::get<0>(grads);
    dw = std::get<1>(grads);
    db = std::get<2>(grads);
    f.store_output(f.b.diff_src, dx.view(f.g.size_ref()));
  }
  if (a) {
    // The backward of repeat: the N copies' gradients summed per channel.
    f.store_params(f.b.diff_gamma, c, dw.defined() ? dw.view({n, c}).sum(0) : or_zeros({}, c, f.g));
    f.store_params(f.b.diff_beta, c, db.defined() ? db.view({n, c}).sum(0) : or_zeros({}, c, f.g));
  }
  return BNK_OK;
}

// ---- version-2 dispatch

// The data types of a call, as PyTorch 1.13's CPU kernels take them (anything else is
// BNK_UNSUPPORTED): float32 throughout; bfloat16 data with batch and instance norm's weight, bias
// and statistics all float32 (a float32 module on bfloat16 input: bf16_mixed) or all bfloat16
// (module.bfloat16(): pytorch_cpu_bf16); layer and group norm in bfloat16 only throughout (their
// CPU kernels take no other weight type and return mean and rstd in the input's type). No
// float16: 1.13's CPU batch and group norm are "not implemented for 'Half'".
bool accepted_types(const bnk_problem_v2& p, geometry& g, rejection& r) {
  const bnk_types& t = p.types;
  for (const std::int32_t type : {t.data, t.parameters, t.statistics}) {
    if (type == BNK_DTYPE_F16) {
      return reject(r, BNK_UNSUPPORTED, "PyTorch 1.13 has no float16 CPU kernel of this op");
    }
    if (type != BNK_DTYPE_F32 && type != BNK_DTYPE_BF16) {
      return reject(r, BNK_UNSUPPORTED, "data type %d is not supported", static_cast<int>(type));
    }
  }
  const auto aten = [](std::int32_t type) {
    return type == BNK_DTYPE_BF16 ? at::kBFloat16 : at::kFloat;
  };
  g.data = aten(t.data);
  g.params = aten(t.parameters);
  g.stats = aten(t.statistics);
  bool ok = false;
  if (g.data == at::kFloat) {
    ok = g.params == at::kFloat && g.stats == at::kFloat;
  } else if (p.op.kind == BNK_OP_BATCH_NORM || p.op.kind == BNK_OP_INSTANCE_NORM) {
    ok = g.params == g.stats;
  } else {
    ok = g.params == at::kBFloat16 && g.stats == at::kBFloat16;
  }
  if (!ok) {
    return reject(r, BNK_UNSUPPORTED,
                  "PyTorch 1.13 has no CPU kernel of this op for these data types (data, "
                  "parameters, statistics: %d, %d, %d)",
                  static_cast<int>(t.data), static_cast<int>(t.parameters),
                  static_cast<int>(t.statistics));
  }
  return true;
}

template <bnk_mode M>
bnk_status family_mode(const family_call& f, rejection& r) {
  const bool training = M == BNK_FORWARD_TRAINING || M == BNK_BACKWARD_TRAINING;
  const bool backward = M == BNK_BACKWARD_TRAINING || M == BNK_BACKWARD_INFERENCE;
  switch (f.p.op.kind) {
    case BNK_OP_LAYER_NORM:
    case BNK_OP_GROUP_NORM:
      if (!training) {
        reject(r, BNK_UNSUPPORTED, "%s has no running statistics: no inference mode",
               f.p.op.kind == BNK_OP_LAYER_NORM ? "layer norm" : "group norm");
        return r.status;
      }
      if (f.p.op.kind == BNK_OP_LAYER_NORM)
        return backward ? layer_backward(f, r) : layer_forward(f, r);
      return backward ? group_backward(f, r) : group_forward(f, r);
    case BNK_OP_INSTANCE_NORM:
      if (!training && f.p.op.running_stats == 0) {
        reject(r, BNK_UNSUPPORTED, "instance norm without running statistics: no inference mode");
        return r.status;
      }
      return backward ? instance_backward(f, training, r) : instance_forward(f, training, r);
    default:
      reject(r, BNK_UNSUPPORTED, "op %d is not supported by the libtorch adapter",
             static_cast<int>(f.p.op.kind));
      return r.status;
  }
}

// ---- ABI glue -------------------------------------------------------------------------------

// Every exception stops at the C boundary: BNK_FAILED with the first line of its message.
template <class F>
int guarded(char* message, std::size_t message_size, F&& body) noexcept {
  try {
    configure_threads();
    rejection r;
    const bnk_status s = body(r);
    return s == BNK_OK ? BNK_OK : report(message, message_size, s, r.why);
  } catch (const c10::Error& e) {
    return report(message, message_size, BNK_FAILED, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return report(message, message_size, BNK_FAILED, e.what());
  } catch (...) {
    return report(message, message_size, BNK_FAILED, "unknown exception");
  }
}

template <bnk_status (*Mode)(const bnk_problem&, const bnk_buffers&, const geometry&, rejection&)>
int entry(const bnk_problem* problem, const bnk_buffers* buffers, char* message,
          std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  return guarded(message, message_size, [&](rejection& r) {
    geometry g;
    if (!make_geometry(*problem, g, r)) return r.status;
    return Mode(*problem, *buffers, g, r);
  });
}

template <bnk_mode M>
int entry_v2(const bnk_problem_v2* problem, const bnk_buffers_v2* buffers, char* message,
             std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  return guarded(message, message_size, [&](rejection& r) {
    const bnk_problem_v2& p = *problem;
    if (p.struct_size < sizeof(bnk_problem_v2)) {
      reject(r, BNK_FAILED, "bnk_problem_v2.struct_size %u is too small",
             static_cast<unsigned>(p.struct_size));
      return r.status;
    }
    if (p.op.kind < 0 || p.op.kind > 31 || (k_ops & BNK_OP_BIT(p.op.kind)) == 0) {
      reject(r, BNK_UNSUPPORTED, "op %d is not supported by the libtorch adapter",
             static_cast<int>(p.op.kind));
      return r.status;
    }
    bnk_problem q;
    bnk_buffers c{};
    bnoracle::v1_view(p, *buffers, q, c);
    geometry g;
    if (!make_geometry(q, g, r) || !accepted_types(p, g, r)) return r.status;
    if (p.op.kind == BNK_OP_BATCH_NORM) {
      switch (M) {
        case BNK_FORWARD_TRAINING:
          return forward_training(q, c, g, r);
        case BNK_FORWARD_INFERENCE:
          return forward_inference(q, c, g, r);
        case BNK_BACKWARD_TRAINING:
          return backward_training(q, c, g, r);
        case BNK_BACKWARD_INFERENCE:
          return backward_inference(q, c, g, r);
      }
      return BNK_FAILED;
    }
    return family_mode<M>(family_call{p, *buffers, g}, r);
  });
}

int fold_entry(const bnk_fold_problem* problem, const bnk_fold_buffers* buffers, char* message,
               std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  return guarded(message, message_size,
                 [&](rejection& r) { return fold_with_aten(*problem, *buffers, r); });
}

// No SyncBN merge: PyTorch's merge of per-device statistics
// (torch.batch_norm_gather_stats_with_counts, used by SyncBatchNorm) has CUDA kernels only in
// 1.13 ("Could not run 'aten::batch_norm_gather_stats_with_counts' with arguments from the 'CPU'
// backend"), and nn.SyncBatchNorm raises "SyncBatchNorm expected input tensor to be on GPU".
constexpr bnk_kernel k_table = {
    .abi_version = BNK_ABI_VERSION,
    .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel)),
    .name = "libtorch",
    .version = TORCH_VERSION,
    .convention = "pytorch",
    .layouts = k_layouts,
    .updates_running = 1,
    .supports_cumulative = 1,
    .saves = BNK_SAVES_MEAN_INVSTD,
    .forward_training = &entry<&forward_training>,
    .forward_inference = &entry<&forward_inference>,
    .backward_training = &entry<&backward_training>,
    .backward_inference = &entry<&backward_inference>,
    .syncbn_merge = nullptr,
    .fold = &fold_entry,
};

// The same kernel as version 2, with layer, group and instance norm (a library exporting both
// tables is loaded as version 2; the version-1 table serves older hosts).
constexpr bnk_kernel_v2 k_table_v2 = {
    .abi_version = BNK_ABI_VERSION_2,
    .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel_v2)),
    .name = "libtorch",
    .version = TORCH_VERSION,
    .convention = "pytorch",
    .ops = k_ops,
    .layouts = k_layouts,
    // Combinations outside accepted_types are answered BNK_UNSUPPORTED.
    .data_types = BNK_DTYPE_BIT(BNK_DTYPE_F32) | BNK_DTYPE_BIT(BNK_DTYPE_BF16),
    .parameter_types = BNK_DTYPE_BIT(BNK_DTYPE_F32) | BNK_DTYPE_BIT(BNK_DTYPE_BF16),
    .statistic_types = BNK_DTYPE_BIT(BNK_DTYPE_F32) | BNK_DTYPE_BIT(BNK_DTYPE_BF16),
    .updates_running = 1,
    .supports_cumulative = 1,
    .saves = BNK_SAVES_MEAN_INVSTD,
    .forward_training = &entry_v2<BNK_FORWARD_TRAINING>,
    .forward_inference = &entry_v2<BNK_FORWARD_INFERENCE>,
    .backward_training = &entry_v2<BNK_BACKWARD_TRAINING>,
    .backward_inference = &entry_v2<BNK_BACKWARD_INFERENCE>,
    .syncbn_merge = nullptr,
    .fold = &fold_entry,
};

}  // namespace

BNA_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  configure_threads();  // as in bnoracle_kernel_v1
  return &k_table_v2;
}

BNA_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {
  // Configured here too, in the loading process, so that the children bnoracle forks for
  // isolated calls inherit the setting instead of each configuring ATen's thread pool again
  // (half the time of a `bnoracle check`).
  configure_threads();
  return &k_table;
}
