#include "bnoracle/invoke.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace bnoracle {

namespace {

// A NaN with a payload no arithmetic produces: marks the padding of strided tensors.
constexpr std::uint32_t k_padding_bits = 0x7fa0'0badU;

float padding_value() {
  return std::bit_cast<float>(k_padding_bits);
}

std::size_t memory_extent(const geometry& g) {
  return g.elements() == 0 ? 0 : static_cast<std::size_t>(g.max_offset() - g.min_offset() + 1);
}

void check_size(const std::vector<float>& v, std::size_t expected, const char* name) {
  if (v.size() != expected) {
    throw std::invalid_argument(std::string("invoke: ") + name + " has " +
                                std::to_string(v.size()) + " elements, expected " +
                                std::to_string(expected));
  }
}

// The buffer element type of a format.
element_type element_of(format_id f) {
  switch (f) {
    case format_id::float32:
      return element_type::f32;
    case format_id::float16:
      return element_type::f16;
    case format_id::bfloat16:
      break;
  }
  return element_type::bf16;
}

const float_format& format_of(element_type t) {
  return t == element_type::f16 ? k_float16 : t == element_type::bf16 ? k_bfloat16 : k_float32;
}

// The padding marker of a 16-bit format: a signalling NaN no arithmetic produces (bfloat16's is
// the upper half of float32's).
std::uint16_t half_padding(element_type t) {
  return t == element_type::f16 ? std::uint16_t{0x7d0b} : std::uint16_t{0x7fa0};
}

bool is_padding(float v) {
  return std::bit_cast<std::uint32_t>(v) == k_padding_bits;
}

// Stores float values (values of the buffer's format; the padding marker stays the padding
// marker) into a buffer of any floating-point element type.
void copy_in(guarded_arena& a, const char* name, const std::vector<float>& v) {
  const std::optional<std::size_t> i = a.find(name);
  if (!i) return;
  const element_type t = a.spec(*i).type;
  if (t == element_type::f32) {
    auto span = a.f32_span(name);
    std::copy(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min(v.size(), span.size())),
              span.begin());
    return;
  }
  auto span = a.half_span(name);
  const float_format& f = format_of(t);
  for (std::size_t k = 0; k < std::min(v.size(), span.size()); ++k) {
    span[k] = is_padding(v[k]) ? half_padding(t) : encode_half(f, v[k]);
  }
}

// The values of a buffer of any floating-point element type, as floats.
std::vector<float> copy_out(const guarded_arena& a, const char* name) {
  const std::optional<std::size_t> i = a.find(name);
  if (!i) return {};
  const element_type t = a.spec(*i).type;
  if (t == element_type::f32) {
    const auto s = a.f32_span(name);
    return {s.begin(), s.end()};
  }
  const auto s = a.half_span(name);
  std::vector<float> out(s.size());
  std::transform(s.begin(), s.end(), out.begin(),
                 [&](std::uint16_t b) { return decode_half(format_of(t), b); });
  return out;
}

// Fills an output buffer before the call: NaN where the kernel must write, the padding marker at
// positions of no element (`covered` empty: every position is an element).
void prefill(guarded_arena& a, const char* name, const std::vector<bool>& covered) {
  const std::optional<std::size_t> i = a.find(name);
  if (!i) return;
  const element_type t = a.spec(*i).type;
  const auto element = [&](std::size_t k) { return covered.empty() || covered[k]; };
  if (t == element_type::f32) {
    auto s = a.f32_span(name);
    for (std::size_t k = 0; k < s.size(); ++k) {
      s[k] = element(k) ? std::numeric_limits<float>::quiet_NaN() : padding_value();
    }
    return;
  }
  auto s = a.half_span(name);
  const std::uint16_t nan = encode_half(format_of(t), std::numeric_limits<float>::quiet_NaN());
  for (std::size_t k = 0; k < s.size(); ++k) s[k] = element(k) ? nan : half_padding(t);
}

// The first position of no element whose padding marker the kernel overwrote.
std::optional<std::size_t> padding_overwritten(const guarded_arena& a, const char* name,
                                               const std::vector<bool>& covered) {
  const element_type t = a.spec(*a.find(name)).type;
  for (std::size_t k = 0; k < covered.size(); ++k) {
    if (covered[k]) continue;
    const bool intact = t == element_type::f32
                            ? std::bit_cast<std::uint32_t>(a.f32_span(name)[k]) == k_padding_bits
                            : a.half_span(name)[k] == half_padding(t);
    if (!intact) return k;
  }
  return std::nullopt;
}

// Memory positions of a geometry that no logical element maps to.
std::vector<bool> covered_positions(const geometry& g) {
  std::vector<bool> covered(memory_extent(g), false);
  g.for_each_element([&](std::int64_t off, std::int64_t) {
    covered[static_cast<std::size_t>(off - g.min_offset())] = true;
  });
  return covered;
}

}  // namespace

std::string repro_options(const call_options& o) {
  std::string s;
  if (o.timeout != call_options{}.timeout) {
    char text[48];
    std::snprintf(text, sizeof text, " --timeout %g",
                  static_cast<double>(o.timeout.count()) / 1000.0);
    s += text;
  }
  if (!o.isolate) s += " --no-isolation";
  if (o.isolate && fork_per_call()) s += " --fork-per-call";
  return s;
}

std::vector<float> to_memory(const geometry& g, const std::vector<float>& logical, float padding) {
  std::vector<float> mem(memory_extent(g), padding);
  g.for_each_element([&](std::int64_t off, std::int64_t li) {
    mem[static_cast<std::size_t>(off - g.min_offset())] = logical[static_cast<std::size_t>(li)];
  });
  return mem;
}

std::vector<float> to_logical(const geometry& g, const float* element0) {
  std::vector<float> out(static_cast<std::size_t>(g.elements()));
  g.for_each_element([&](std::int64_t off, std::int64_t li) {
    out[static_cast<std::size_t>(li)] = element0[off];
  });
  return out;
}

namespace {

// "ok", "unsupported: ...", "refused: ...", "reported failure: ..." or the fault.
std::string describe_call(const run_result& run, bnk_status status, const std::string& message) {
  if (!run.ok()) {
    std::string s = run.reason;
    if (!run.message.empty()) s += " (kernel said: " + run.message + ")";
    return s;
  }
  switch (status) {
    case BNK_OK:
      return "ok";
    case BNK_UNSUPPORTED:
      return "unsupported" + (message.empty() ? std::string() : ": " + message);
    case BNK_REFUSED:
      return "refused" + (message.empty() ? std::string() : ": " + message);
    case BNK_FAILED:
      break;
  }
  return "reported failure" + (message.empty() ? std::string() : ": " + message);
}

}  // namespace

std::string call_result::describe() const {
  if (run.ok() && !padding_written.empty()) return padding_written;
  return describe_call(run, status, message);
}

std::string op_result::describe() const {
  return describe_call(run, status, message);
}

call_result invoke(bn_kernel& kernel, const call_request& q, const call_options& options) {
  const geometry geo(q.problem);
  const kernel_info& info = kernel.info();
  const bn_mode m = q.mode;
  const bool training = m == bn_mode::forward_training || m == bn_mode::backward_training;
  const bool backward = m == bn_mode::backward_training || m == bn_mode::backward_inference;
  const bool keeps_running = q.problem.op.running_stats;
  const bool track = m == bn_mode::forward_training && q.track_running && keeps_running;
  const bool affine = q.affine && q.problem.op.params != param_placement::none;
  // The extents of the per-channel, per-parameter and per-group vectors come from the reduction
  // map (for batch norm all three are C).
  const bnk_problem_v2 problem = to_abi_v2(q.problem, geo, affine, track);
  const auto P = static_cast<std::size_t>(problem.parameters);
  const auto G = static_cast<std::size_t>(problem.statistic_groups);
  const auto R = static_cast<std::size_t>(problem.running_size);
  const auto elements = static_cast<std::size_t>(geo.elements());
  const std::size_t extent = memory_extent(geo);
  const bool saves = info.saves != BNK_SAVES_NONE;
  const bool pass_saved = m == bn_mode::backward_training && saves && !q.save_mean.empty();
  const bool reads_running = keeps_running && (!training || track);

  check_size(q.src, elements, "src");
  if (backward) check_size(q.diff_dst, elements, "diff_dst");
  if (affine) {
    check_size(q.gamma, P, "gamma");
    check_size(q.beta, P, "beta");
  }
  if (reads_running) {
    check_size(q.running_mean, R, "running_mean");
    check_size(q.running_var, R, "running_var");
  }
  if (pass_saved) {
    check_size(q.save_mean, G, "save_mean");
    check_size(q.save_stat, G, "save_stat");
  }

  // Each buffer holds its role's data type (the ABI passes them untyped).
  const element_type data_t = element_of(q.problem.types.data);
  const element_type param_t = element_of(q.problem.types.parameters);
  const element_type stat_t = element_of(q.problem.types.statistics);
  std::vector<buffer_spec> specs;
  auto add = [&specs](const char* name, buffer_role role, std::size_t count, element_type type) {
    specs.push_back({name, role, type, count});
  };
  add("src", buffer_role::input, extent, data_t);
  if (backward) add("diff_dst", buffer_role::input, extent, data_t);
  if (affine) {
    add("gamma", buffer_role::input, P, param_t);
    add("beta", buffer_role::input, P, param_t);
  }
  if (keeps_running && !training) {
    add("running_mean", buffer_role::input, R, stat_t);
    add("running_var", buffer_role::input, R, stat_t);
  } else if (track) {
    add("running_mean", buffer_role::in_out, R, stat_t);
    add("running_var", buffer_role::in_out, R, stat_t);
    add("num_batches_tracked", buffer_role::in_out, 1, element_type::i64);
  }
  if (m == bn_mode::forward_training && saves) {
    add("save_mean", buffer_role::output, G, stat_t);
    add("save_stat", buffer_role::output, G, stat_t);
  }
  if (pass_saved) {
    add("save_mean", buffer_role::input, G, stat_t);
    add("save_stat", buffer_role::input, G, stat_t);
  }
  const char* out_name = backward ? "diff_src" : "dst";
  add(out_name, buffer_role::output, extent, data_t);
  if (backward && affine) {
    add("diff_gamma", buffer_role::output, P, param_t);
    add("diff_beta", buffer_role::output, P, param_t);
  }

  guarded_arena arena(specs);
  copy_in(arena, "src", to_memory(geo, q.src, padding_value()));
  if (backward) copy_in(arena, "diff_dst", to_memory(geo, q.diff_dst, padding_value()));
  copy_in(arena, "gamma", q.gamma);
  copy_in(arena, "beta", q.beta);
  copy_in(arena, "running_mean", q.running_mean);
  copy_in(arena, "running_var", q.running_var);
  if (track) arena.i64("num_batches_tracked")[0] = q.num_batches_tracked;
  if (pass_saved) {
    copy_in(arena, "save_mean", q.save_mean);
    copy_in(arena, "save_stat", q.save_stat);
  }
  const std::vector<bool> covered = covered_positions(geo);
  prefill(arena, out_name, covered);
  for (const char* o : {"diff_gamma", "diff_beta"}) prefill(arena, o, {});
  if (m == bn_mode::forward_training && saves) {
    for (const char* o : {"save_mean", "save_stat"}) prefill(arena, o, {});
  }

  // The kernel sees logical element 0 of the per-element tensors, inside their buffers.
  bnk_buffers_v2 buffers = abi_buffers_v2(arena);
  const std::ptrdiff_t shift = extent == 0 ? 0 : static_cast<std::ptrdiff_t>(-geo.min_offset());
  const auto shift_bytes =
      shift * static_cast<std::ptrdiff_t>(data_t == element_type::f32 ? sizeof(float) : 2);
  auto at0 = [shift_bytes](auto* p) -> decltype(p) {
    using byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>,
                                    const unsigned char, unsigned char>;
    return p == nullptr ? p : static_cast<byte*>(p) + shift_bytes;
  };
  buffers.src = at0(buffers.src);
  buffers.diff_dst = at0(buffers.diff_dst);
  buffers.dst = at0(buffers.dst);
  buffers.diff_src = at0(buffers.diff_src);

  call_result r;
  r.run = options.isolate ? run_kernel_isolated(kernel, m, problem, buffers, arena, options.timeout)
                          : run_inline(kernel_call(kernel, m, problem, buffers), arena);
  if (!r.run.ok()) return r;
  r.status = static_cast<bnk_status>(r.run.status);
  r.message = r.run.message;
  if (r.status != BNK_OK) return r;

  const std::vector<float> out_memory = copy_out(arena, out_name);
  (backward ? r.diff_src : r.dst) =
      extent == 0 ? std::vector<float>{} : to_logical(geo, out_memory.data() + shift);
  if (const auto k = padding_overwritten(arena, out_name, covered)) {
    r.padding_written = std::string("wrote into the padding of ") + out_name + " (memory offset " +
                        std::to_string(static_cast<std::int64_t>(*k) + geo.min_offset()) +
                        " belongs to no element of the strided view)";
  }
  r.diff_gamma = copy_out(arena, "diff_gamma");
  r.diff_beta = copy_out(arena, "diff_beta");
  if (m == bn_mode::forward_training && saves) {
    r.save_mean = copy_out(arena, "save_mean");
    r.save_stat = copy_out(arena, "save_stat");
  }
  if (track) {
    r.running_mean = copy_out(arena, "running_mean");
    r.running_var = copy_out(arena, "running_var");
    r.num_batches_tracked = arena.i64("num_batches_tracked")[0];
  }
  return r;
}

namespace {

// Runs `body(message, size)` isolated or inline and fills the common part of the result.
op_result run_op(guarded_arena& arena, const call_options& options, const isolated_call& call) {
  op_result r;
  r.run = options.isolate ? run_isolated(call, arena, options.timeout) : run_inline(call, arena);
  if (!r.run.ok()) return r;
  r.status = static_cast<bnk_status>(r.run.status);
  r.message = r.run.message;
  return r;
}

// The kernel's text into the isolated call's message buffer.
int finish(bnk_status status, const std::string& text, char* message, std::size_t size) {
  if (size > 0) {
    const std::size_t n = std::min(text.size(), size - 1);
    std::memcpy(message, text.data(), n);
    message[n] = '\0';
  }
  return static_cast<int>(status);
}

}  // namespace

op_result invoke_syncbn_merge(bn_kernel& kernel, const syncbn_request& q,
                              const call_options& options) {
  if (q.channels < 0 || q.counts.empty()) {
    throw std::invalid_argument("invoke_syncbn_merge: needs C >= 0 and at least one shard");
  }
  for (const std::int64_t n : q.counts) {
    if (n < 0) throw std::invalid_argument("invoke_syncbn_merge: a shard count is negative");
  }
  const auto C = static_cast<std::size_t>(q.channels);
  const std::size_t KC = q.counts.size() * C;
  check_size(q.shard_mean, KC, "shard_mean");
  check_size(q.shard_var, KC, "shard_var");
  if (q.track_running) {
    check_size(q.running_mean, C, "running_mean");
    check_size(q.running_var, C, "running_var");
  }
  std::vector<buffer_spec> specs{{"count", buffer_role::input, element_type::i64, q.counts.size()},
                                 {"shard_mean", buffer_role::input, element_type::f32, KC},
                                 {"shard_var", buffer_role::input, element_type::f32, KC},
                                 {"mean", buffer_role::output, element_type::f32, C},
                                 {"var", buffer_role::output, element_type::f32, C},
                                 {"invstd", buffer_role::output, element_type::f32, C}};
  if (q.track_running) {
    specs.push_back({"running_mean", buffer_role::in_out, element_type::f32, C});
    specs.push_back({"running_var", buffer_role::in_out, element_type::f32, C});
    specs.push_back({"num_batches_tracked", buffer_role::in_out, element_type::i64, 1});
  }
  guarded_arena arena(specs, arena_options{.null_for_empty = true});
  std::copy(q.counts.begin(), q.counts.end(), arena.i64_span("count").begin());
  copy_in(arena, "shard_mean", q.shard_mean);
  copy_in(arena, "shard_var", q.shard_var);
  for (const char* o : {"mean", "var", "invstd"}) prefill(arena, o, {});
  bnk_syncbn_buffers b{};
  b.count = arena.i64("count");
  b.shard_mean = arena.f32("shard_mean");
  b.shard_var = arena.f32("shard_var");
  b.mean = arena.f32("mean");
  b.var = arena.f32("var");
  b.invstd = arena.f32("invstd");
  if (q.track_running) {
    copy_in(arena, "running_mean", q.running_mean);
    copy_in(arena, "running_var", q.running_var);
    arena.i64("num_batches_tracked")[0] = q.num_batches_tracked;
    b.running_mean = arena.f32("running_mean");
    b.running_var = arena.f32("running_var");
    b.num_batches_tracked = arena.i64("num_batches_tracked");
  }
  bnk_syncbn_problem p{};
  p.struct_size = sizeof(bnk_syncbn_problem);
  p.shards = static_cast<std::int64_t>(q.counts.size());
  p.channels = q.channels;
  p.eps = q.eps;
  p.momentum = q.momentum.value_or(0.0);
  p.cumulative = q.momentum ? 0 : 1;
  p.track_running = q.track_running ? 1 : 0;
  op_result r = run_op(arena, options, [&kernel, p, b](char* message, std::size_t size) {
    std::string text;
    const bnk_status st = kernel.run_syncbn_merge(p, b, text);
    return finish(st, text, message, size);
  });
  if (!r.ok()) return r;
  for (const char* o : {"mean", "var", "invstd"}) r.outputs[o] = copy_out(arena, o);
  if (q.track_running) {
    r.outputs["running_mean"] = copy_out(arena, "running_mean");
    r.outputs["running_var"] = copy_out(arena, "running_var");
    r.num_batches_tracked = arena.i64("num_batches_tracked")[0];
  }
  return r;
}

op_result invoke_fold(bn_kernel& kernel, const fold_request& q, const call_options& options) {
  if (q.out_channels < 0 || q.fan_in < 0) {
    throw std::invalid_argument("invoke_fold: negative extents");
  }
  const auto O = static_cast<std::size_t>(q.out_channels);
  const std::size_t OK = O * static_cast<std::size_t>(q.fan_in);
  const bool has_bias = !q.bias.empty();
  check_size(q.weight, OK, "weight");
  if (has_bias) check_size(q.bias, O, "bias");
  check_size(q.gamma, O, "gamma");
  check_size(q.beta, O, "beta");
  check_size(q.running_mean, O, "running_mean");
  check_size(q.running_var, O, "running_var");
  std::vector<buffer_spec> specs{{"weight", buffer_role::input, element_type::f32, OK}};
  if (has_bias) specs.push_back({"bias", buffer_role::input, element_type::f32, O});
  for (const char* in : {"gamma", "beta", "running_mean", "running_var"}) {
    specs.push_back({in, buffer_role::input, element_type::f32, O});
  }
  specs.push_back({"weight_out", buffer_role::output, element_type::f32, OK});
  specs.push_back({"bias_out", buffer_role::output, element_type::f32, O});
  guarded_arena arena(specs, arena_options{.null_for_empty = true});
  copy_in(arena, "weight", q.weight);
  copy_in(arena, "bias", q.bias);
  copy_in(arena, "gamma", q.gamma);
  copy_in(arena, "beta", q.beta);
  copy_in(arena, "running_mean", q.running_mean);
  copy_in(arena, "running_var", q.running_var);
  prefill(arena, "weight_out", {});
  prefill(arena, "bias_out", {});
  bnk_fold_buffers b{};
  b.weight = arena.f32("weight");
  b.bias = has_bias ? arena.f32("bias") : nullptr;
  b.gamma = arena.f32("gamma");
  b.beta = arena.f32("beta");
  b.running_mean = arena.f32("running_mean");
  b.running_var = arena.f32("running_var");
  b.weight_out = arena.f32("weight_out");
  b.bias_out = arena.f32("bias_out");
  bnk_fold_problem p{};
  p.struct_size = sizeof(bnk_fold_problem);
  p.out_channels = q.out_channels;
  p.fan_in = q.fan_in;
  p.eps = q.eps;
  p.has_bias = has_bias ? 1 : 0;
  op_result r = run_op(arena, options, [&kernel, p, b](char* message, std::size_t size) {
    std::string text;
    const bnk_status st = kernel.run_fold(p, b, text);
    return finish(st, text, message, size);
  });
  if (!r.ok()) return r;
  r.outputs["weight"] = copy_out(arena, "weight_out");
  r.outputs["bias"] = copy_out(arena, "bias_out");
  return r;
}

}  // namespace bnoracle
