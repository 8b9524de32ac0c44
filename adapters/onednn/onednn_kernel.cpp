// onednn: the bnoracle kernel ABI (adapters/include/bnoracle/kernel_abi.h) around oneDNN's
// batch normalization primitives (dnnl::batch_normalization_forward / _backward, CPU engine).
//
// The adapter adds no arithmetic of its own: every output is what oneDNN computes. It only
// translates the problem (logical dims and per-dimension strides become a dnnl::memory::desc with
// explicit strides, so dense NCHW/NHWC and every positive strided view go through the same code),
// chooses the propagation kind and flags, and wraps the caller's buffers without copying them.
//
//   mode                 oneDNN primitive                         flags
//   forward training     forward, prop_kind::forward_training     use_scale|use_shift if affine
//   forward inference    forward, prop_kind::forward_inference    use_global_stats (+ affine)
//   backward training    backward, prop_kind::backward            use_scale|use_shift (affine)
//                        backward, prop_kind::backward_data       none (not affine)
//   backward inference   as backward training                     + use_global_stats
//
// Saved statistics: oneDNN's forward training outputs the batch mean and the biased batch
// variance, and its backward takes exactly those, so the adapter claims BNK_SAVES_MEAN_VAR.
// Running statistics: oneDNN keeps none (a framework updates them outside the primitive), so
// updates_running = 0 and supports_cumulative = 0; inference takes the running mean and variance
// as oneDNN's "global statistics".
//
// The convention claim, "tensorflow": with no running statistics the claim decides only which
// degenerate training problems must be refused and what the saved statistics are.
//   - oneDNN refuses nothing: L = 1 in training gives variance 0 and y = β. Of the known records
//     only "pytorch" refuses L = 1, so any other record fits; none refuses an empty batch.
//   - TensorFlow's CPU fused batch norm saves the mean and the *biased variance*, exactly what
//     oneDNN saves (and TensorFlow's oneDNN-enabled CPU build, mkl_fused_batch_norm_op.cc, runs
//     this very primitive). "onnx", "keras" and "flax" save nothing; "cudnn", "miopen" and
//     "pytorch" save invstd.
//
// Layer normalization (ABI version 2): dnnl::layer_normalization_forward / _backward, which
// normalize the last logical dimension of a 2- to 5-dimensional tensor. A layer norm over the
// last k axes of (C, spatial...) goes through it with those k axes seen as one dimension, which
// needs them to be one block of memory (each axis's stride the product of the inner extent and
// stride); other strides are BNK_UNSUPPORTED. γ and β (one per normalized element) are oneDNN's
// scale and shift; the saved statistics are again the mean and the biased variance of each row.
// Layer norm has no running statistics and so no inference modes. Group and instance norm have
// no oneDNN primitive in 2.6, and RMS norm none before 3.x: not declared.
//
// Data (src, dst, diff_dst, diff_src) may be float32, bfloat16 or float16 (ABI version 2), as
// oneDNN's primitives take it: scale, shift and statistics are float32 in every oneDNN call, so
// the adapter declares data types only, and float16 or bfloat16 only where this CPU's oneDNN
// builds the primitive for them (`data_type_bits`). ε is rounded once, (float)eps, as oneDNN's
// API takes it.
// Every exception (dnnl::error included) is caught at the C boundary.
#include "bnoracle/kernel_abi.h"
#include "bnoracle/kernel_abi_v1_view.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using dnnl::memory;
using dnnl::normalization_flags;
using dnnl::prop_kind;

constexpr std::uint32_t k_all_layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW |
                                        BNK_LAYOUT_NHWC | BNK_LAYOUT_NCDHW | BNK_LAYOUT_NDHWC |
                                        BNK_LAYOUT_STRIDED;

// A problem the adapter (or oneDNN) rejects, with the status to report. Thrown inside an entry
// point, caught at its C boundary. A fixed buffer, no std::string.
struct rejected {
  bnk_status status = BNK_FAILED;
  char why[480] = {};
};

[[noreturn, gnu::format(printf, 2, 3)]] void reject(bnk_status status, const char* format, ...) {
  rejected r;
  r.status = status;
  va_list args;
  va_start(args, format);
  std::vsnprintf(r.why, sizeof r.why, format, args);
  va_end(args);
  throw r;
}

int report(char* message, std::size_t message_size, int status, const char* text) {
  if (message != nullptr && message_size > 0) std::snprintf(message, message_size, "%s", text);
  return status;
}

bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

bool add_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

// The problem's tensor as oneDNN sees it: logical dims (N, C, spatial...) and their strides.
struct tensor {
  memory::dims dims;
  memory::dims strides;
  std::int64_t channels = 0;
  std::int64_t total = 0;  // elements

  [[nodiscard]] bool empty() const { return total == 0; }
};

// Checks the shape and builds oneDNN's view of it. Supported: ranks 2..5, every layout bit, any
// strides under which distinct elements have distinct addresses and which are non-negative.
// oneDNN's memory descriptors describe an element's offset as Σ index·stride from the handle,
// with strides >= 0, so a reversed axis (negative stride) cannot be expressed: unsupported.
tensor make_tensor(const bnk_problem& p) {
  if (p.struct_size < sizeof(bnk_problem)) {
    reject(BNK_FAILED, "bnk_problem.struct_size %u is smaller than ABI version 1's %zu",
           static_cast<unsigned>(p.struct_size), sizeof(bnk_problem));
  }
  const bnk_shape& s = p.shape;
  if (s.rank < 2 || s.rank > 5) {
    reject(BNK_FAILED, "shape.rank %d is outside 2..5", static_cast<int>(s.rank));
  }
  const std::uint32_t lay = s.layout;
  if (lay == 0 || (lay & (lay - 1U)) != 0 || (lay & k_all_layouts) == 0) {
    reject(BNK_UNSUPPORTED, "layout 0x%x is not supported by this adapter",
           static_cast<unsigned>(lay));
  }
  tensor t;
  const auto rank = static_cast<std::size_t>(s.rank);
  t.dims.assign(s.dims, s.dims + rank);
  t.strides.assign(s.strides, s.strides + rank);
  t.channels = s.dims[1];
  std::int64_t total = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    if (t.dims[d] < 0) reject(BNK_FAILED, "shape.dims[%zu] is negative", d);
    if (!mul_ok(total, t.dims[d], total)) {
      reject(BNK_UNSUPPORTED, "the shape has more elements than int64 can count");
    }
  }
  t.total = total;
  // The stride of an extent-1 dimension addresses nothing; oneDNN still wants a valid one. Keep
  // a positive one (dense strides then still match oneDNN's format tags), else use the span of
  // the whole tensor (an outermost dimension).
  std::int64_t outer = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    if (t.dims[d] <= 1) continue;
    const std::int64_t st = t.strides[d];
    if (st < 0) {
      reject(BNK_UNSUPPORTED,
             "negative stride %lld in dimension %zu (a reversed axis): oneDNN memory "
             "descriptors take non-negative strides only",
             static_cast<long long>(st), d);
    }
    if (st == 0) {
      reject(BNK_UNSUPPORTED,
             "zero stride in dimension %zu (a broadcast): outputs have the strides of the "
             "inputs and would share addresses",
             d);
    }
    std::int64_t reach = 0;
    if (!mul_ok(t.dims[d], st, reach)) reject(BNK_UNSUPPORTED, "a stride is out of range");
    if (reach > outer) outer = reach;
  }
  for (std::size_t d = 0; d < rank; ++d) {
    if (t.dims[d] <= 1 && t.strides[d] <= 0) t.strides[d] = outer;
  }
  if (t.empty()) return t;
  // Distinct elements at distinct addresses: sorted by stride, each stride of an extent > 1 must
  // exceed the span of all smaller ones.
  std::vector<std::size_t> order;
  for (std::size_t d = 0; d < rank; ++d) {
    if (t.dims[d] > 1) order.push_back(d);
  }
  for (std::size_t i = 1; i < order.size(); ++i) {  // insertion sort, at most five entries
    for (std::size_t j = i; j > 0 && t.strides[order[j]] < t.strides[order[j - 1]]; --j) {
      std::swap(order[j], order[j - 1]);
    }
  }
  std::int64_t span = 0;
  for (const std::size_t d : order) {
    std::int64_t reach = 0;
    if (t.strides[d] <= span || !mul_ok(t.dims[d] - 1, t.strides[d], reach) ||
        !add_ok(span, reach, span)) {
      reject(BNK_UNSUPPORTED,
             "strides under which two elements share an address are not supported: outputs "
             "have the strides of the inputs and would collide");
    }
  }
  return t;
}

void need(const void* ptr, const char* name) {
  if (ptr == nullptr) reject(BNK_FAILED, "buffers->%s is NULL but this mode needs it", name);
}

normalization_flags affine_flags(bool affine) {
  return affine ? normalization_flags::use_scale | normalization_flags::use_shift
                : normalization_flags::none;
}

// The data type of src, dst, diff_dst and diff_src in the current call: set by each entry point
// (version 1: float32; version 2: the problem's).
thread_local memory::data_type t_data_type = memory::data_type::f32;

// One call's oneDNN objects: the CPU engine, a stream, and the memory descriptors.
struct context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  memory::desc data;
  memory::desc stat;

  explicit context(const tensor& t)
      : data(t.dims, t_data_type, t.strides),
        stat(memory::dims{t.channels}, memory::data_type::f32, memory::format_tag::a) {}

  // Wraps a caller's buffer (no copy). oneDNN takes a non-const handle; inputs are only read.
  [[nodiscard]] memory wrap(const memory::desc& md, const float* p) const {
    return {md, engine, const_cast<float*>(p)};  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }

  void run(const dnnl::primitive& prim, const std::unordered_map<int, memory>& args) {
    prim.execute(stream, args);
    stream.wait();
  }
};

// Forward training of an empty batch (L = 0, C > 0): oneDNN 2.6 creates the primitive and runs
// it as a no-op that writes neither the mean nor the variance (verified: both keep whatever the
// buffers held). The reference calls them undefined (0/0), and bnoracle pre-fills outputs with
// NaN, so passing the call through would "pass" on the caller's NaN rather than on anything
// oneDNN computed. The adapter reports the case unsupported instead of inventing values. (The
// backward modes do write their per-channel outputs for L = 0 — zeros — and run normally.)
void refuse_empty_statistics(const tensor& t) {
  if (t.empty() && t.channels > 0) {
    reject(BNK_UNSUPPORTED,
           "an empty batch (L = 0): oneDNN 2.6 runs it as a no-op that leaves the batch mean "
           "and variance unwritten, so there are no statistics to report");
  }
}

// One forward primitive: dst from src. Training writes the batch statistics to `mean` and
// `var`; inference (global) reads the running statistics, oneDNN's use_global_stats.
void run_forward(const bnk_problem& p, const bnk_buffers& b, const tensor& t, bool global,
                 float* mean, float* var) {
  const bool affine = p.affine != 0;
  if (!t.empty()) {
    need(b.src, "src");
    need(b.dst, "dst");
  }
  if (global && t.channels > 0) {
    need(b.running_mean, "running_mean");
    need(b.running_var, "running_var");
  }
  if (affine && t.channels > 0) {
    need(b.gamma, "gamma");
    need(b.beta, "beta");
  }
  context cx(t);
  const float eps = static_cast<float>(p.eps);
  const dnnl::batch_normalization_forward::desc d(
      global ? prop_kind::forward_inference : prop_kind::forward_training, cx.data, eps,
      global ? normalization_flags::use_global_stats | affine_flags(affine) : affine_flags(affine));
  const dnnl::batch_normalization_forward::primitive_desc pd(d, cx.engine);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, cx.wrap(cx.data, b.src)},
      {DNNL_ARG_DST, cx.wrap(cx.data, b.dst)},
      {DNNL_ARG_MEAN, cx.wrap(cx.stat, mean)},
      {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, var)},
  };
  if (affine) {
    args.insert({DNNL_ARG_SCALE, cx.wrap(cx.stat, b.gamma)});
    args.insert({DNNL_ARG_SHIFT, cx.wrap(cx.stat, b.beta)});
  }
  cx.run(dnnl::batch_normalization_forward(pd), args);
}

// Forward training: batch mean and biased variance into save_mean/save_stat (scratch buffers
// when the caller passes none), dst = γ·(x − μ)/sqrt(σ² + ε) + β.
void forward_training(const bnk_problem& p, const bnk_buffers& b, const tensor& t) {
  refuse_empty_statistics(t);
  std::vector<float> scratch_mean;
  std::vector<float> scratch_var;
  float* mean = b.save_mean;
  float* var = b.save_stat;
  const auto c = static_cast<std::size_t>(t.channels);
  if (mean == nullptr) {
    scratch_mean.resize(c);
    mean = scratch_mean.data();
  }
  if (var == nullptr) {
    scratch_var.resize(c);
    var = scratch_var.data();
  }
  run_forward(p, b, t, /*global=*/false, mean, var);
}

// Forward inference: the running statistics as oneDNN's global statistics.
void forward_inference(const bnk_problem& p, const bnk_buffers& b, const tensor& t) {
  run_forward(p, b, t, /*global=*/true, b.running_mean, b.running_var);
}

// Backward, training (global = false: mean and variance are this kernel's saved batch
// statistics, recomputed by oneDNN's forward training when the caller has none) or inference
// (global = true: the running statistics, constants; oneDNN's use_global_stats).
void backward(const bnk_problem& p, const bnk_buffers& b, const tensor& t, bool global) {
  const bool affine = p.affine != 0;
  if (!t.empty()) {
    need(b.src, "src");
    need(b.diff_dst, "diff_dst");
    need(b.diff_src, "diff_src");
  }
  if (affine && t.channels > 0) {
    need(b.gamma, "gamma");
    need(b.diff_gamma, "diff_gamma");
    need(b.diff_beta, "diff_beta");
  }
  if (global && t.channels > 0) {
    need(b.running_mean, "running_mean");
    need(b.running_var, "running_var");
  }
  context cx(t);
  const float eps = static_cast<float>(p.eps);
  const normalization_flags flags =
      global ? normalization_flags::use_global_stats | affine_flags(affine) : affine_flags(affine);
  // The forward primitive descriptor oneDNN wants as a hint for the backward one.
  const dnnl::batch_normalization_forward::desc fd(prop_kind::forward_training, cx.data, eps,
                                                   flags);
  const dnnl::batch_normalization_forward::primitive_desc fpd(fd, cx.engine);
  const dnnl::batch_normalization_backward::desc bd(
      affine ? prop_kind::backward : prop_kind::backward_data, cx.data, cx.data, eps, flags);
  const dnnl::batch_normalization_backward::primitive_desc bpd(bd, cx.engine, fpd);

  const float* mean = global ? b.running_mean : b.save_mean;
  const float* var = global ? b.running_var : b.save_stat;
  std::vector<float> scratch_mean;
  std::vector<float> scratch_var;
  std::vector<float> scratch_dst;
  if (mean == nullptr || var == nullptr) {
    // No saved statistics: oneDNN's own forward training recomputes them (into scratch; its
    // dst goes to a scratch tensor of the same strides).
    const auto c = static_cast<std::size_t>(t.channels);
    scratch_mean.resize(c);
    scratch_var.resize(c);
    scratch_dst.resize(cx.data.get_size() / sizeof(float));
    const dnnl::batch_normalization_forward::desc sd(prop_kind::forward_training, cx.data, eps,
                                                     normalization_flags::none);
    const dnnl::batch_normalization_forward::primitive_desc spd(sd, cx.engine);
    cx.run(dnnl::batch_normalization_forward(spd),
           {{DNNL_ARG_SRC, cx.wrap(cx.data, b.src)},
            {DNNL_ARG_DST, cx.wrap(cx.data, scratch_dst.data())},
            {DNNL_ARG_MEAN, cx.wrap(cx.stat, scratch_mean.data())},
            {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, scratch_var.data())}});
    mean = scratch_mean.data();
    var = scratch_var.data();
  }
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, cx.wrap(cx.data, b.src)},
      {DNNL_ARG_DIFF_DST, cx.wrap(cx.data, b.diff_dst)},
      {DNNL_ARG_MEAN, cx.wrap(cx.stat, mean)},
      {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, var)},
      {DNNL_ARG_DIFF_SRC, cx.wrap(cx.data, b.diff_src)},
  };
  // oneDNN 2.6's backward with use_shift insists on a shift argument, although dx, dγ and dβ
  // do not depend on β (and bnoracle passes no β to the backward modes): zeros stand in.
  std::vector<float> zero_shift;
  if (affine) {
    zero_shift.assign(static_cast<std::size_t>(t.channels), 0.0F);
    args.insert({DNNL_ARG_SCALE, cx.wrap(cx.stat, b.gamma)});
    args.insert({DNNL_ARG_SHIFT, cx.wrap(cx.stat, zero_shift.data())});
    args.insert({DNNL_ARG_DIFF_SCALE, cx.wrap(cx.stat, b.diff_gamma)});
    args.insert({DNNL_ARG_DIFF_SHIFT, cx.wrap(cx.stat, b.diff_beta)});
  }
  cx.run(dnnl::batch_normalization_backward(bpd), args);
}

void backward_training(const bnk_problem& p, const bnk_buffers& b, const tensor& t) {
  backward(p, b, t, false);
}

void backward_inference(const bnk_problem& p, const bnk_buffers& b, const tensor& t) {
  backward(p, b, t, true);
}

// ---- Layer normalization (ABI version 2) -------------------------------------------------------

// The layer-norm view of the problem's tensor: the leading axes as they are and the normalized
// axes as one last dimension of extent D.
struct rows_view {
  memory::dims dims;     // leading extents, then D
  memory::dims strides;  // theirs
  memory::dims stat_dims;
  std::int64_t rows = 0;   // product of the leading extents
  std::int64_t width = 0;  // D
};

rows_view make_rows(const tensor& t, int normalized_axes) {
  const auto rank = static_cast<int>(t.dims.size());
  const int axis = rank - normalized_axes;
  if (normalized_axes < 1 || axis < 1) {
    reject(BNK_FAILED, "normalized_axes %d is outside 1..%d", normalized_axes, rank - 1);
  }
  rows_view v;
  v.rows = 1;
  for (int d = 0; d < axis; ++d) {
    v.dims.push_back(t.dims[static_cast<std::size_t>(d)]);
    v.strides.push_back(t.strides[static_cast<std::size_t>(d)]);
    v.stat_dims.push_back(t.dims[static_cast<std::size_t>(d)]);
    if (!mul_ok(v.rows, t.dims[static_cast<std::size_t>(d)], v.rows)) {
      reject(BNK_UNSUPPORTED, "too many rows");
    }
  }
  // The normalized block, innermost axis first: each axis of extent > 1 must step over exactly
  // the inner part of the block.
  std::int64_t width = 1;
  std::int64_t inner_stride = 0;  // stride of the innermost axis of extent > 1 (0: none yet)
  std::int64_t next = 0;          // the stride the next outer axis of extent > 1 must have
  for (int d = rank - 1; d >= axis; --d) {
    const std::int64_t e = t.dims[static_cast<std::size_t>(d)];
    const std::int64_t st = t.strides[static_cast<std::size_t>(d)];
    if (!mul_ok(width, e, width)) reject(BNK_UNSUPPORTED, "the normalized block is too large");
    if (e <= 1) continue;
    if (inner_stride == 0) {
      inner_stride = st;
    } else if (st != next) {
      reject(BNK_UNSUPPORTED,
             "the %d normalized axes are not one block of memory (axis %d has stride %lld, not "
             "%lld): oneDNN's layer normalization normalizes one dimension",
             normalized_axes, d, static_cast<long long>(st), static_cast<long long>(next));
    }
    if (!mul_ok(st, e, next)) reject(BNK_UNSUPPORTED, "a stride is out of range");
  }
  v.width = width;
  v.dims.push_back(width);
  v.strides.push_back(inner_stride > 0 ? inner_stride : 1);
  return v;
}

// Dense strides of dims in row-major order (the saved statistics, row by row).
memory::dims dense_strides(const memory::dims& dims) {
  memory::dims st(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;)
    st[i - 1] = st[i] * std::max<std::int64_t>(dims[i], 1);
  return st;
}

struct layer_call {
  const bnk_problem_v2& p;
  const bnk_buffers_v2& b;
  const tensor& t;
  rows_view v;
  [[nodiscard]] bool affine() const { return p.op.params != BNK_PARAMS_NONE; }
  [[nodiscard]] const float* in(const void* ptr) const { return static_cast<const float*>(ptr); }
  [[nodiscard]] float* out(void* ptr) const { return static_cast<float*>(ptr); }
};

// oneDNN's objects for one layer-norm call.
struct layer_context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  memory::desc data;
  memory::desc stat;
  memory::desc param;

  explicit layer_context(const rows_view& v)
      : data(v.dims, t_data_type, v.strides),
        stat(v.stat_dims, memory::data_type::f32, dense_strides(v.stat_dims)),
        param(memory::dims{v.width}, memory::data_type::f32, memory::format_tag::a) {}

  [[nodiscard]] memory wrap(const memory::desc& md, const float* p) const {
    return {md, engine, const_cast<float*>(p)};  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }
  void run(const dnnl::primitive& prim, const std::unordered_map<int, memory>& args) {
    prim.execute(stream, args);
    stream.wait();
  }
};

// Rows of no element have no statistics (0/0); oneDNN would leave them unwritten, as it does
// for batch norm's empty batch.
void refuse_empty_rows(const rows_view& v) {
  if (v.width == 0 && v.rows > 0) {
    reject(BNK_UNSUPPORTED,
           "rows of no element: oneDNN leaves their mean and variance unwritten, so there are no "
           "statistics to report");
  }
}

// Forward training into mean/var (the row statistics).
void layer_forward_into(const layer_call& f, layer_context& cx, const float* src, float* dst,
                        float* mean, float* var) {
  const float eps = static_cast<float>(f.p.eps);
  const dnnl::layer_normalization_forward::desc d(prop_kind::forward_training, cx.data, cx.stat,
                                                  eps, affine_flags(f.affine()));
  const dnnl::layer_normalization_forward::primitive_desc pd(d, cx.engine);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, cx.wrap(cx.data, src)},
      {DNNL_ARG_DST, cx.wrap(cx.data, dst)},
      {DNNL_ARG_MEAN, cx.wrap(cx.stat, mean)},
      {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, var)},
  };
  if (f.affine()) {
    args.insert({DNNL_ARG_SCALE, cx.wrap(cx.param, f.in(f.b.gamma))});
    args.insert({DNNL_ARG_SHIFT, cx.wrap(cx.param, f.in(f.b.beta))});
  }
  cx.run(dnnl::layer_normalization_forward(pd), args);
}

void layer_forward_training(const layer_call& f) {
  refuse_empty_rows(f.v);
  if (f.t.empty()) return;
  need(f.b.src, "src");
  need(f.b.dst, "dst");
  if (f.affine()) {
    need(f.b.gamma, "gamma");
    need(f.b.beta, "beta");
  }
  layer_context cx(f.v);
  const auto rows = static_cast<std::size_t>(f.v.rows);
  std::vector<float> scratch_mean(f.b.save_mean == nullptr ? rows : 0);
  std::vector<float> scratch_var(f.b.save_stat == nullptr ? rows : 0);
  float* mean = f.b.save_mean != nullptr ? f.out(f.b.save_mean) : scratch_mean.data();
  float* var = f.b.save_stat != nullptr ? f.out(f.b.save_stat) : scratch_var.data();
  layer_forward_into(f, cx, f.in(f.b.src), f.out(f.b.dst), mean, var);
}

void layer_backward_training(const layer_call& f) {
  refuse_empty_rows(f.v);
  const bool affine = f.affine();
  if (affine) {
    need(f.b.gamma, "gamma");
    need(f.b.diff_gamma, "diff_gamma");
    need(f.b.diff_beta, "diff_beta");
  }
  if (f.t.empty()) {
    // No row: dγ and dβ are empty sums.
    if (affine) {
      for (std::int64_t j = 0; j < f.v.width; ++j) {
        f.out(f.b.diff_gamma)[j] = 0.0F;
        f.out(f.b.diff_beta)[j] = 0.0F;
      }
    }
    return;
  }
  need(f.b.src, "src");
  need(f.b.diff_dst, "diff_dst");
  need(f.b.diff_src, "diff_src");
  layer_context cx(f.v);
  const float eps = static_cast<float>(f.p.eps);
  const normalization_flags flags = affine_flags(affine);
  const dnnl::layer_normalization_forward::desc fd(prop_kind::forward_training, cx.data, cx.stat,
                                                   eps, flags);
  const dnnl::layer_normalization_forward::primitive_desc fpd(fd, cx.engine);
  const dnnl::layer_normalization_backward::desc bd(
      affine ? prop_kind::backward : prop_kind::backward_data, cx.data, cx.data, cx.stat, eps,
      flags);
  const dnnl::layer_normalization_backward::primitive_desc bpd(bd, cx.engine, fpd);
  const float* mean = f.in(f.b.save_mean);
  const float* var = f.in(f.b.save_stat);
  std::vector<float> scratch_mean;
  std::vector<float> scratch_var;
  std::vector<float> scratch_dst;
  if (mean == nullptr || var == nullptr) {
    // No saved statistics: oneDNN's forward training recomputes them (its dst into scratch).
    const auto rows = static_cast<std::size_t>(f.v.rows);
    scratch_mean.resize(rows);
    scratch_var.resize(rows);
    scratch_dst.resize(cx.data.get_size() / sizeof(float));
    const dnnl::layer_normalization_forward::desc sd(prop_kind::forward_training, cx.data, cx.stat,
                                                     eps, normalization_flags::none);
    const dnnl::layer_normalization_forward::primitive_desc spd(sd, cx.engine);
    cx.run(dnnl::layer_normalization_forward(spd),
           {{DNNL_ARG_SRC, cx.wrap(cx.data, f.in(f.b.src))},
            {DNNL_ARG_DST, cx.wrap(cx.data, scratch_dst.data())},
            {DNNL_ARG_MEAN, cx.wrap(cx.stat, scratch_mean.data())},
            {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, scratch_var.data())}});
    mean = scratch_mean.data();
    var = scratch_var.data();
  }
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, cx.wrap(cx.data, f.in(f.b.src))},
      {DNNL_ARG_DIFF_DST, cx.wrap(cx.data, f.in(f.b.diff_dst))},
      {DNNL_ARG_MEAN, cx.wrap(cx.stat, mean)},
      {DNNL_ARG_VARIANCE, cx.wrap(cx.stat, var)},
      {DNNL_ARG_DIFF_SRC, cx.wrap(cx.data, f.out(f.b.diff_src))},
  };
  // As for batch norm: a shift argument with use_shift, although no gradient depends on β.
  std::vector<float> zero_shift;
  if (affine) {
    zero_shift.assign(static_cast<std::size_t>(f.v.width), 0.0F);
    args.insert({DNNL_ARG_SCALE, cx.wrap(cx.param, f.in(f.b.gamma))});
    args.insert({DNNL_ARG_SHIFT, cx.wrap(cx.param, zero_shift.data())});
    args.insert({DNNL_ARG_DIFF_SCALE, cx.wrap(cx.param, f.out(f.b.diff_gamma))});
    args.insert({DNNL_ARG_DIFF_SHIFT, cx.wrap(cx.param, f.out(f.b.diff_beta))});
  }
  cx.run(dnnl::layer_normalization_backward(bpd), args);
}

constexpr std::uint32_t k_ops = BNK_OP_BIT(BNK_OP_BATCH_NORM) | BNK_OP_BIT(BNK_OP_LAYER_NORM);

template <bnk_mode M>
void mode_v2(const bnk_problem_v2& p, const bnk_buffers_v2& b) {
  if (p.struct_size < sizeof(bnk_problem_v2)) {
    reject(BNK_FAILED, "bnk_problem_v2.struct_size %u is too small",
           static_cast<unsigned>(p.struct_size));
  }
  if (p.op.kind < 0 || p.op.kind > 31 || (k_ops & BNK_OP_BIT(p.op.kind)) == 0) {
    reject(BNK_UNSUPPORTED, "op %d is not supported by the oneDNN adapter",
           static_cast<int>(p.op.kind));
  }
  if (p.types.parameters != BNK_DTYPE_F32 || p.types.statistics != BNK_DTYPE_F32 ||
      p.types.data < BNK_DTYPE_F32 || p.types.data > BNK_DTYPE_BF16) {
    reject(BNK_UNSUPPORTED,
           "oneDNN takes float32 scale, shift and statistics, and float32, float16 or bfloat16 "
           "data");
  }
  t_data_type = p.types.data == BNK_DTYPE_F16    ? memory::data_type::f16
                : p.types.data == BNK_DTYPE_BF16 ? memory::data_type::bf16
                                                 : memory::data_type::f32;
  bnk_problem q;
  bnk_buffers c{};
  bnoracle::v1_view(p, b, q, c);
  const tensor t = make_tensor(q);
  if (p.op.kind == BNK_OP_BATCH_NORM) {
    switch (M) {
      case BNK_FORWARD_TRAINING:
        return forward_training(q, c, t);
      case BNK_FORWARD_INFERENCE:
        return forward_inference(q, c, t);
      case BNK_BACKWARD_TRAINING:
        return backward_training(q, c, t);
      case BNK_BACKWARD_INFERENCE:
        return backward_inference(q, c, t);
    }
    return;
  }
  const layer_call f{p, b, t, make_rows(t, p.op.normalized_axes)};
  switch (M) {
    case BNK_FORWARD_TRAINING:
      return layer_forward_training(f);
    case BNK_BACKWARD_TRAINING:
      return layer_backward_training(f);
    case BNK_FORWARD_INFERENCE:
    case BNK_BACKWARD_INFERENCE:
      reject(BNK_UNSUPPORTED, "layer norm has no running statistics: no inference mode");
  }
}

// The C boundary: validation, the mode, and every exception turned into a status and a message.
template <class Body>
int guarded(char* message, std::size_t message_size, const Body& body) noexcept {
  try {
    body();
    return BNK_OK;
  } catch (const rejected& r) {
    return report(message, message_size, r.status, r.why);
  } catch (const dnnl::error& e) {
    // dnnl_unimplemented: no oneDNN implementation for this problem (shape, strides): a skip.
    char text[480];
    std::snprintf(text, sizeof text, "oneDNN: %s (status %d)", e.what(),
                  static_cast<int>(e.status));
    return report(message, message_size,
                  e.status == dnnl_unimplemented ? BNK_UNSUPPORTED : BNK_FAILED, text);
  } catch (const std::bad_alloc&) {
    return report(message, message_size, BNK_FAILED, "out of memory");
  } catch (const std::exception& e) {
    return report(message, message_size, BNK_FAILED, e.what());
  } catch (...) {
    return report(message, message_size, BNK_FAILED, "unknown exception");
  }
}

template <void (*Mode)(const bnk_problem&, const bnk_buffers&, const tensor&)>
int entry(const bnk_problem* problem, const bnk_buffers* buffers, char* message,
          std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  return guarded(message, message_size, [&] {
    t_data_type = memory::data_type::f32;
    Mode(*problem, *buffers, make_tensor(*problem));
  });
}

template <bnk_mode M>
int entry_v2(const bnk_problem_v2* problem, const bnk_buffers_v2* buffers, char* message,
             std::size_t message_size) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  return guarded(message, message_size, [&] { mode_v2<M>(*problem, *buffers); });
}

// "major.minor.patch" of the oneDNN library actually loaded (not of the headers compiled with).
const char* version_string() {
  static char text[48];
  const dnnl_version_t* v = dnnl_version();
  std::snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
  return text;
}

const bnk_kernel* make_table() {
  static const bnk_kernel table{
      .abi_version = BNK_ABI_VERSION,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel)),
      .name = "onednn",
      .version = version_string(),
      .convention = "tensorflow",
      .layouts = k_all_layouts,
      .updates_running = 0,
      .supports_cumulative = 0,
      .saves = BNK_SAVES_MEAN_VAR,
      .forward_training = &entry<forward_training>,
      .forward_inference = &entry<forward_inference>,
      .backward_training = &entry<backward_training>,
      .backward_inference = &entry<backward_inference>,
      .syncbn_merge = nullptr,  // oneDNN has no SyncBN statistic merge
      .fold = nullptr,          // nor a folding operation
  };
  return &table;
}

// The data types whose batch and layer normalization primitives this CPU's oneDNN builds:
// float32 always; bfloat16 and float16 where a 2x3 problem of each primitive is implemented.
std::uint32_t data_type_bits() {
  std::uint32_t bits = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  const std::pair<memory::data_type, bnk_dtype> narrow[] = {
      {memory::data_type::bf16, BNK_DTYPE_BF16}, {memory::data_type::f16, BNK_DTYPE_F16}};
  for (const auto& [dt, code] : narrow) {
    try {
      const dnnl::engine engine{dnnl::engine::kind::cpu, 0};
      const memory::desc data(memory::dims{2, 3}, dt, memory::format_tag::ab);
      const memory::desc stat(memory::dims{2}, memory::data_type::f32, memory::format_tag::a);
      const auto flags = normalization_flags::use_scale | normalization_flags::use_shift;
      const dnnl::batch_normalization_forward::desc bfd(prop_kind::forward_training, data, 1e-5F,
                                                        flags);
      const dnnl::batch_normalization_forward::primitive_desc bf(bfd, engine);
      const dnnl::batch_normalization_backward::desc bbd(prop_kind::backward, data, data, 1e-5F,
                                                         flags);
      (void)dnnl::batch_normalization_backward::primitive_desc(bbd, engine, bf);
      const dnnl::layer_normalization_forward::desc lfd(prop_kind::forward_training, data, stat,
                                                        1e-5F, flags);
      const dnnl::layer_normalization_forward::primitive_desc lf(lfd, engine);
      const dnnl::layer_normalization_backward::desc lbd(prop_kind::backward, data, data, stat,
                                                         1e-5F, flags);
      (void)dnnl::layer_normalization_backward::primitive_desc(lbd, engine, lf);
      bits |= BNK_DTYPE_BIT(code);
    } catch (const dnnl::error&) {
      // Not implemented on this CPU: not declared.
    }
  }
  return bits;
}

// Version 2: batch norm as above, and layer normalization (a library exporting both tables is
// loaded as version 2).
const bnk_kernel_v2* make_table_v2() {
  static const bnk_kernel_v2 table{
      .abi_version = BNK_ABI_VERSION_2,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel_v2)),
      .name = "onednn",
      .version = version_string(),
      .convention = "tensorflow",
      .ops = k_ops,
      .layouts = k_all_layouts,
      .data_types = data_type_bits(),
      .parameter_types = BNK_DTYPE_BIT(BNK_DTYPE_F32),
      .statistic_types = BNK_DTYPE_BIT(BNK_DTYPE_F32),
      .updates_running = 0,
      .supports_cumulative = 0,
      .saves = BNK_SAVES_MEAN_VAR,
      .forward_training = &entry_v2<BNK_FORWARD_TRAINING>,
      .forward_inference = &entry_v2<BNK_FORWARD_INFERENCE>,
      .backward_training = &entry_v2<BNK_BACKWARD_TRAINING>,
      .backward_inference = &entry_v2<BNK_BACKWARD_INFERENCE>,
      .syncbn_merge = nullptr,
      .fold = nullptr,
  };
  return &table;
}

}  // namespace

extern "C" BNK_PLUGIN_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return make_table_v2();
}

extern "C" BNK_PLUGIN_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {
  return make_table();
}
