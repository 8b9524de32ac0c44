// Translations between bnoracle's problems and the kernel ABI's structures (versions 1 and 2), and
// the version-1 route of bn_kernel::run_v2.
#include "bnoracle/kernel.hpp"
#include "bnoracle/reduction.hpp"

#include <algorithm>
#include <atomic>

namespace bnoracle {

std::uint32_t layout_bit(layout l) {
  switch (l) {
    case layout::nc:
      return BNK_LAYOUT_NC;
    case layout::ncl:
      return BNK_LAYOUT_NCL;
    case layout::nchw:
      return BNK_LAYOUT_NCHW;
    case layout::nhwc:
      return BNK_LAYOUT_NHWC;
    case layout::ncdhw:
      return BNK_LAYOUT_NCDHW;
    case layout::ndhwc:
      return BNK_LAYOUT_NDHWC;
    case layout::strided:
      return BNK_LAYOUT_STRIDED;
  }
  return 0;
}

std::uint32_t op_bit(op_kind k) {
  return 1U << static_cast<unsigned>(k);
}

bnk_dtype to_abi(format_id f) {
  switch (f) {
    case format_id::float32:
      return BNK_DTYPE_F32;
    case format_id::float16:
      return BNK_DTYPE_F16;
    case format_id::bfloat16:
      return BNK_DTYPE_BF16;
  }
  return BNK_DTYPE_F32;
}

std::optional<format_id> dtype_from_abi(std::int32_t code) {
  switch (code) {
    case BNK_DTYPE_F32:
      return format_id::float32;
    case BNK_DTYPE_F16:
      return format_id::float16;
    case BNK_DTYPE_BF16:
      return format_id::bfloat16;
    default:
      return std::nullopt;
  }
}

std::uint32_t dtype_bit(format_id f) {
  return BNK_DTYPE_BIT(to_abi(f));
}

bool kernel_info::supports(layout l) const {
  return (layouts & layout_bit(l)) != 0U;
}

bool kernel_info::supports(op_kind k) const {
  return (ops & op_bit(k)) != 0U;
}

bool kernel_info::supports(const data_types& t) const {
  return (data_type_bits & dtype_bit(t.data)) != 0U &&
         (parameter_type_bits & dtype_bit(t.parameters)) != 0U &&
         (statistic_type_bits & dtype_bit(t.statistics)) != 0U;
}

// The op kinds are numbered alike in op.hpp and kernel_abi.h.
static_assert(static_cast<int>(op_kind::batch_norm) == BNK_OP_BATCH_NORM);
static_assert(static_cast<int>(op_kind::layer_norm) == BNK_OP_LAYER_NORM);
static_assert(static_cast<int>(op_kind::rms_norm) == BNK_OP_RMS_NORM);
static_assert(static_cast<int>(op_kind::group_norm) == BNK_OP_GROUP_NORM);
static_assert(static_cast<int>(op_kind::instance_norm) == BNK_OP_INSTANCE_NORM);
static_assert(static_cast<int>(param_placement::none) == BNK_PARAMS_NONE);
static_assert(static_cast<int>(param_placement::per_channel) == BNK_PARAMS_PER_CHANNEL);
static_assert(static_cast<int>(param_placement::per_normalized_element) == BNK_PARAMS_PER_ELEMENT);

bnk_op_desc to_abi(const op_desc& op) {
  bnk_op_desc a{};
  a.kind = static_cast<std::int32_t>(op.kind);
  a.normalized_axes = op.normalized_axes;
  a.groups = op.groups;
  a.centred = op.centred ? 1 : 0;
  a.params = static_cast<std::int32_t>(op.params);
  a.weight_offset = op.weight_offset ? 1 : 0;
  a.running_stats = op.running_stats ? 1 : 0;
  a.cast_before_weight = op.cast_before_weight ? 1 : 0;
  return a;
}

std::optional<op_desc> from_abi(const bnk_op_desc& a) {
  if (a.kind < BNK_OP_BATCH_NORM || a.kind > BNK_OP_INSTANCE_NORM) return std::nullopt;
  if (a.params < BNK_PARAMS_NONE || a.params > BNK_PARAMS_PER_ELEMENT) return std::nullopt;
  op_desc op;
  op.kind = static_cast<op_kind>(a.kind);
  op.normalized_axes = a.normalized_axes;
  op.groups = a.groups;
  op.centred = a.centred != 0;
  op.params = static_cast<param_placement>(a.params);
  op.weight_offset = a.weight_offset != 0;
  op.running_stats = a.running_stats != 0;
  op.cast_before_weight = a.cast_before_weight != 0;
  try {
    validate(op);
  } catch (const invalid_problem&) {
    return std::nullopt;
  }
  return op;
}

namespace {

bnk_shape abi_shape(const bn_problem& p, const geometry& g) {
  bnk_shape s{};
  s.rank = static_cast<std::int32_t>(2 + p.spatial.size());
  s.layout = layout_bit(p.mem_layout);
  for (int i = 0; i < 5; ++i) {
    s.dims[i] = 1;
    s.strides[i] = 0;
  }
  s.dims[0] = g.n();
  s.dims[1] = g.c();
  for (std::size_t i = 0; i < p.spatial.size(); ++i) s.dims[i + 2] = p.spatial[i];
  for (std::size_t i = 0; i < g.strides().size(); ++i) s.strides[i] = g.strides()[i];
  return s;
}

}  // namespace

bnk_problem to_abi(const bn_problem& p, const geometry& g, bool affine, bool track_running) {
  bnk_problem a{};
  a.struct_size = sizeof(bnk_problem);
  a.shape = abi_shape(p, g);
  a.eps = p.eps;
  a.momentum = p.momentum.value_or(0.0);
  a.cumulative = p.momentum ? 0 : 1;
  a.affine = affine ? 1 : 0;
  a.track_running = track_running ? 1 : 0;
  return a;
}

bnk_problem_v2 to_abi_v2(const bn_problem& p, const geometry& g, bool affine, bool track_running) {
  op_desc op = p.op;
  if (!affine) op.params = param_placement::none;
  const reduction_map map(op, g);
  bnk_problem_v2 a{};
  a.struct_size = sizeof(bnk_problem_v2);
  a.op = to_abi(op);
  a.types.data = to_abi(p.types.data);
  a.types.parameters = to_abi(p.types.parameters);
  a.types.statistics = to_abi(p.types.statistics);
  a.shape = abi_shape(p, g);
  a.statistic_groups = map.groups();
  a.group_size = map.group_size();
  a.parameters = map.params();
  a.running_size = op.running_stats ? g.c() : 0;
  a.eps = p.eps;
  a.momentum = p.momentum.value_or(0.0);
  a.cumulative = p.momentum ? 0 : 1;
  a.track_running = track_running ? 1 : 0;
  return a;
}

std::optional<bnk_problem> to_v1(const bnk_problem_v2& p) {
  const bnk_op_desc& op = p.op;
  const bool batch_norm = op.kind == BNK_OP_BATCH_NORM && op.centred != 0 &&
                          op.weight_offset == 0 &&
                          (op.params == BNK_PARAMS_NONE || op.params == BNK_PARAMS_PER_CHANNEL);
  const bool float32 = p.types.data == BNK_DTYPE_F32 && p.types.parameters == BNK_DTYPE_F32 &&
                       p.types.statistics == BNK_DTYPE_F32;
  if (!batch_norm || !float32) return std::nullopt;
  bnk_problem a{};
  a.struct_size = sizeof(bnk_problem);
  a.shape = p.shape;
  a.eps = p.eps;
  a.momentum = p.momentum;
  a.cumulative = p.cumulative;
  a.affine = op.params == BNK_PARAMS_PER_CHANNEL ? 1 : 0;
  a.track_running = p.track_running;
  return a;
}

namespace {

// The same thirteen pointers in the other version's struct (float* <-> void*).
template <class To, class From>
To convert_buffers(const From& b) {
  To a{};
  a.src = static_cast<decltype(a.src)>(b.src);
  a.diff_dst = static_cast<decltype(a.diff_dst)>(b.diff_dst);
  a.gamma = static_cast<decltype(a.gamma)>(b.gamma);
  a.beta = static_cast<decltype(a.beta)>(b.beta);
  a.running_mean = static_cast<decltype(a.running_mean)>(b.running_mean);
  a.running_var = static_cast<decltype(a.running_var)>(b.running_var);
  a.num_batches_tracked = b.num_batches_tracked;
  a.save_mean = static_cast<decltype(a.save_mean)>(b.save_mean);
  a.save_stat = static_cast<decltype(a.save_stat)>(b.save_stat);
  a.dst = static_cast<decltype(a.dst)>(b.dst);
  a.diff_src = static_cast<decltype(a.diff_src)>(b.diff_src);
  a.diff_gamma = static_cast<decltype(a.diff_gamma)>(b.diff_gamma);
  a.diff_beta = static_cast<decltype(a.diff_beta)>(b.diff_beta);
  return a;
}

}  // namespace

bnk_buffers to_v1(const bnk_buffers_v2& b) {
  return convert_buffers<bnk_buffers>(b);
}

bnk_problem_v2 to_v2(const bnk_problem& p) {
  bnk_problem_v2 a{};
  a.struct_size = sizeof(bnk_problem_v2);
  op_desc op = batch_norm_op();
  if (p.affine == 0) op.params = param_placement::none;
  a.op = to_abi(op);
  a.types = {BNK_DTYPE_F32, BNK_DTYPE_F32, BNK_DTYPE_F32};
  a.shape = p.shape;
  const int rank = std::clamp(p.shape.rank, 2, 5);
  std::int64_t spatial = 1;
  for (int i = 2; i < rank; ++i) spatial *= p.shape.dims[i];
  const std::int64_t channels = p.shape.dims[1];
  a.statistic_groups = channels;
  a.group_size = p.shape.dims[0] * spatial;
  a.parameters = p.affine != 0 ? channels : 0;
  a.running_size = channels;
  a.eps = p.eps;
  a.momentum = p.momentum;
  a.cumulative = p.cumulative;
  a.track_running = p.track_running;
  return a;
}

bnk_buffers_v2 to_v2(const bnk_buffers& b) {
  return convert_buffers<bnk_buffers_v2>(b);
}

std::uint64_t bn_kernel::next_instance() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

bnk_status bn_kernel::run_v2(bn_mode mode, const bnk_problem_v2& problem,
                             const bnk_buffers_v2& buffers, std::string& message) {
  const std::optional<bnk_problem> v1 = to_v1(problem);
  if (!v1) {
    message = "the kernel implements float32 batch norm only (ABI version 1)";
    return BNK_UNSUPPORTED;
  }
  return run(mode, *v1, to_v1(buffers), message);
}

bnk_status bn_kernel::run(bn_mode /*mode*/, const bnk_problem& /*problem*/,
                          const bnk_buffers& /*buffers*/, std::string& message) {
  message = "the kernel implements no version-1 entry (run)";
  return BNK_UNSUPPORTED;
}

}  // namespace bnoracle
