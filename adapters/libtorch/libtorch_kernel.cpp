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
#include "bnoracle/kernel_abi.h"
#include "common/norm_kernel.hpp"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_batch_norm_impl_index.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/native_batch_norm_backward.h>
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

at::TensorOptions f32() {
  return at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
}

// A tensor over a caller's buffer with the problem's sizes and strides. ATen does not write
// through the tensors made from input buffers (the caller maps them read-only, so a write would
// fault and be reported).
at::Tensor over(const float* data, const geometry& g) {
  return at::from_blob(const_cast<float*>(data), g.size_ref(), g.stride_ref(), f32());
}

// A dense per-channel vector of C floats.
at::Tensor channel_vector(const float* data, std::int64_t c) {
  return at::from_blob(const_cast<float*>(data), {c}, f32());
}

// Copies a result of PyTorch into a caller's buffer through the problem's strides; elements the
// strides do not address (padding) are not written. copy_ converts dtype where ATen returned
// another one (only the saved statistics of an empty batch, which are double).
void store(float* data, const geometry& g, const at::Tensor& value) {
  if (g.total == 0) return;
  over(data, g).copy_(value);
}

void store_channels(float* data, std::int64_t c, const at::Tensor& value) {
  if (c == 0) return;
  channel_vector(data, c).copy_(value);
}

c10::optional<at::Tensor> maybe(bool present, const float* data, std::int64_t c) {
  if (!present) return c10::nullopt;
  return channel_vector(data, c);
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
      x, maybe(affine, b.gamma, g.c), maybe(affine, b.beta, g.c), maybe(track, b.running_mean, g.c),
      maybe(track, b.running_var, g.c), /*training=*/true, factor, p.eps, /*cudnn_enabled=*/true);
  if (std::get<4>(result) != 0) {
    reject(r, BNK_FAILED, "PyTorch chose batch-norm backend %lld, not the native CPU one",
           static_cast<long long>(std::get<4>(result)));
    return r.status;
  }
  store(b.dst, g, std::get<0>(result));
  // Saved statistics: ATen's save_mean and save_invstd. For an empty batch PyTorch's shortcut
  // returns uninitialized (at::empty) double tensors; they are passed on as they are.
  if (b.save_mean != nullptr) store_channels(b.save_mean, g.c, std::get<1>(result));
  if (b.save_stat != nullptr) store_channels(b.save_stat, g.c, std::get<2>(result));
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
      over(b.src, g), maybe(affine, b.gamma, g.c), maybe(affine, b.beta, g.c),
      channel_vector(b.running_mean, g.c), channel_vector(b.running_var, g.c),
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
    w = channel_vector(b.gamma, g.c).detach().requires_grad_(true);
    // beta is not an input of the backward modes; its value does not enter any gradient.
    bias = at::zeros({g.c}, f32()).requires_grad_(true);
  }
  c10::optional<at::Tensor> rm;
  c10::optional<at::Tensor> rv;
  if (!training) {
    rm = channel_vector(b.running_mean, g.c);
    rv = channel_vector(b.running_var, g.c);
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
    store_channels(b.diff_gamma, g.c, grads[1].defined() ? grads[1] : at::zeros({g.c}, f32()));
    store_channels(b.diff_beta, g.c, grads[2].defined() ? grads[2] : at::zeros({g.c}, f32()));
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
  const c10::optional<at::Tensor> w = maybe(affine, b.gamma, g.c);
  at::Tensor save_mean;
  at::Tensor save_invstd;
  if (b.save_mean != nullptr && b.save_stat != nullptr) {
    save_mean = channel_vector(b.save_mean, g.c);
    save_invstd = channel_vector(b.save_stat, g.c);
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
    store_channels(b.diff_gamma, g.c, std::get<1>(grads));
    store_channels(b.diff_beta, g.c, std::get<2>(grads));
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
  const at::Tensor none = at::empty({0}, f32());
  const auto grads = at::native_batch_norm_backward(
      over(b.diff_dst, g), over(b.src, g), maybe(affine, b.gamma, g.c),
      channel_vector(b.running_mean, g.c), channel_vector(b.running_var, g.c), none, none,
      /*train=*/false, p.eps, {true, affine, affine});
  store(b.diff_src, g, std::get<0>(grads));
  if (affine) {
    store_channels(b.diff_gamma, g.c, std::get<1>(grads));
    store_channels(b.diff_beta, g.c, std::get<2>(grads));
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
  const at::Tensor rm = channel_vector(b.running_mean, o);
  const at::Tensor rv = channel_vector(b.running_var, o);
  const at::Tensor bn_w = channel_vector(b.gamma, o);
  const at::Tensor bn_b = channel_vector(b.beta, o);
  const at::Tensor conv_b = p.has_bias != 0 ? channel_vector(b.bias, o) : at::zeros_like(rm);
  const at::Tensor bn_var_rsqrt = at::rsqrt(rv + p.eps);
  if (k > 0) {
    const at::Tensor conv_w = at::from_blob(const_cast<float*>(b.weight), {o, k}, f32());
    const at::Tensor fused_w = conv_w * (bn_w * bn_var_rsqrt).reshape({-1, 1});
    at::from_blob(b.weight_out, {o, k}, f32()).copy_(fused_w);
  }
  const at::Tensor fused_b = (conv_b - rm) * bn_var_rsqrt * bn_w + bn_b;
  store_channels(b.bias_out, o, fused_b);
  return BNK_OK;
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

}  // namespace

BNA_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {
  // Configured here too, in the loading process, so that the children bnoracle forks for
  // isolated calls inherit the setting instead of each configuring ATen's thread pool again
  // (half the time of a `bnoracle check`).
  configure_threads();
  return &k_table;
}
