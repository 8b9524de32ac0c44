// Which normalization a problem is, and in which data types: the op descriptor and the per-role
// data types (DESIGN.md §9).
//
// The normalization family differs in three things only: which elements share a statistic, whether
// the mean is subtracted, and where γ and β live. An op descriptor says exactly those, plus the
// two options some members have (a weight applied as 1 + w, running statistics). Which elements
// share a statistic on a given shape is the reduction map's business (reduction.hpp).
//
// Every op is described over the logical view (n, c, spatial...) of the problem's geometry:
//   batch norm     one statistic per channel, over (n, spatial)              γ/β per channel
//   instance norm  one per (n, c), over spatial                              γ/β per channel
//   group norm     one per (n, group of C/G channels), over (channels, spatial) γ/β per channel
//   layer norm     one per index of the leading axes, over the last k axes of (c, spatial...)
//                                                                           γ/β per normalized
//                                                                           element
//   RMS norm       as layer norm, the mean not subtracted
//
// This header is light on purpose (no Boost): kernel.hpp and adapters include it.
#pragma once

#include "bnoracle/format.hpp"
#include "bnoracle/output.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bnoracle {

enum class op_kind : std::uint8_t { batch_norm, layer_norm, rms_norm, group_norm, instance_norm };

[[nodiscard]] std::string_view to_string(op_kind k);
[[nodiscard]] std::optional<op_kind> parse_op_kind(std::string_view s);

// Where γ and β live.
enum class param_placement : std::uint8_t {
  none,                    // no affine parameters at all (γ = 1, β = 0 by construction)
  per_channel,             // one per channel c
  per_normalized_element,  // one per element of the normalized block (layer and RMS norm)
};

[[nodiscard]] std::string_view to_string(param_placement p);
[[nodiscard]] std::optional<param_placement> parse_param_placement(std::string_view s);

struct op_desc {
  op_kind kind = op_kind::batch_norm;
  // Layer and RMS norm: how many trailing axes of (c, spatial...) are normalized together, 1 to
  // spatial rank + 1. Zero for the others.
  int normalized_axes = 0;
  // Group norm: the number of channel groups G (it divides C). Zero for the others.
  std::int64_t groups = 0;
  bool centred = true;  // false: the mean is not subtracted (RMS norm)
  param_placement params = param_placement::per_channel;
  bool weight_offset = false;  // γ is stored as w and applied as 1 + w
  bool running_stats = true;   // the op keeps running statistics for inference
  // Where the output is cast to the data type. false (Gemma's RMSNorm, every fused kernel): the
  // whole output is computed in float32 and rounded once at the end. true (Llama's and T5's
  // RMSNorm): the normalized value x̂ is rounded to the data type first, then multiplied by γ in
  // the data type, and the backward pass follows the same two steps. The exact value is the
  // same; the error model bounds each convention (docs/error-model.md, "Half precision").
  bool cast_before_weight = false;

  friend bool operator==(const op_desc&, const op_desc&) = default;
};

// The members of the family with their usual options.
[[nodiscard]] constexpr op_desc batch_norm_op() {
  return {};
}
[[nodiscard]] constexpr op_desc layer_norm_op(int normalized_axes = 1) {
  return {op_kind::layer_norm,
          normalized_axes,
          0,
          true,
          param_placement::per_normalized_element,
          false,
          false};
}
[[nodiscard]] constexpr op_desc rms_norm_op(int normalized_axes = 1) {
  return {op_kind::rms_norm,
          normalized_axes,
          0,
          false,
          param_placement::per_normalized_element,
          false,
          false};
}
[[nodiscard]] constexpr op_desc group_norm_op(std::int64_t groups) {
  return {op_kind::group_norm, 0, groups, true, param_placement::per_channel, false, false};
}
[[nodiscard]] constexpr op_desc instance_norm_op(bool running_stats = false) {
  return {op_kind::instance_norm, 0, 0, true, param_placement::per_channel, false, running_stats};
}

// Whether the op has this mode: every op has the training modes, which normalize with the
// statistics of the input; the inference modes normalize with running statistics, so only batch
// norm and an op that keeps running statistics (instance norm's track_running_stats) have them.
[[nodiscard]] constexpr bool has_mode(const op_desc& op, bn_mode m) {
  const bool inference = m == bn_mode::forward_inference || m == bn_mode::backward_inference;
  return !inference || op.kind == op_kind::batch_norm || op.running_stats;
}

// Checks what an op descriptor says about itself (not about a shape: reduction_map does that).
// Throws invalid_problem naming the field.
void validate(const op_desc& op);

// "batch_norm", or e.g. "layer_norm(axes=1)", "group_norm(groups=4)",
// "rms_norm(axes=1,weight_offset)": the fields that differ from the kind's usual options.
[[nodiscard]] std::string describe(const op_desc& op);
// The inverse of describe: "layer_norm(axes=2)", "rms_norm(axes=1,weight_offset)",
// "group_norm(groups=32)", "instance_norm(running_stats)", "batch_norm"; a row op without axes=
// normalizes its last axis (axes=1). Throws invalid_problem for anything else, or for an op
// validate() rejects.
[[nodiscard]] op_desc parse_op_desc(std::string_view text);

// The data type of each role (output.hpp's format_role): the data (src, dst, diff_dst,
// diff_src), the parameters (γ, β and their gradients) and the statistics (mean, variance,
// invstd, running statistics).
struct data_types {
  format_id data = format_id::float32;
  format_id parameters = format_id::float32;
  format_id statistics = format_id::float32;

  [[nodiscard]] constexpr format_id of(format_role role) const {
    switch (role) {
      case format_role::data:
        return data;
      case format_role::parameters:
        return parameters;
      case format_role::statistics:
        return statistics;
    }
    return data;
  }
  [[nodiscard]] constexpr bool all_float32() const {
    return data == format_id::float32 && parameters == format_id::float32 &&
           statistics == format_id::float32;
  }

  friend bool operator==(const data_types&, const data_types&) = default;
};

// "float32", or "data=bfloat16,parameters=float32,statistics=float32" when the roles differ
// from each other.
[[nodiscard]] std::string describe(const data_types& t);

// The configurations production kernels run in, by name (docs/reference.md, "Data types"):
//   float32           every role float32
//   cudnn_mixed       float16 data; float32 γ/β and statistics (cuDNN's batch norm, AMP)
//   bf16_mixed        bfloat16 data; float32 γ/β and statistics (AMP in bfloat16; PyTorch CPU's
//                     batch norm of a float32 module on bfloat16 input)
//   bf16_weights      bfloat16 data and γ/β, float32 statistics (fused layer and RMS norm
//                     kernels of a bfloat16 model that keep their statistics in float32)
//   pytorch_cpu_bf16  bfloat16 everywhere, saved and running statistics included (PyTorch
//                     1.13 CPU's bfloat16 modules: batch, layer and group norm)
//   all_half          float16 everywhere
struct named_types {
  std::string_view name;
  data_types types;
};
[[nodiscard]] std::span<const named_types> named_data_types();
// A configuration's name, one format for every role ("bfloat16"), or the roles one by one
// ("data=bfloat16,parameters=float32"; a role left out is float32). nullopt: not understood.
[[nodiscard]] std::optional<data_types> parse_data_types(std::string_view s);

}  // namespace bnoracle
