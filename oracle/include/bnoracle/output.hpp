// The modes of a normalization and the outputs they produce, as types: one descriptor table says
// for every output its name, its extent (one value per element, per statistic group or per
// parameter), the data type role its values take and the modes that produce it, so that no code
// decides what an output is by comparing its name.
//
// This header is light on purpose (no Boost): kernel.hpp and a user's GoogleTest build include it
// for bn_mode.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace bnoracle {

enum class bn_mode : std::uint8_t {
  forward_training,
  forward_inference,
  backward_training,
  backward_inference,
};

[[nodiscard]] std::string_view to_string(bn_mode m);
[[nodiscard]] std::optional<bn_mode> parse_mode(std::string_view s);

// A set of modes, one bit per bn_mode.
using mode_set = std::uint8_t;
[[nodiscard]] constexpr mode_set mode_bit(bn_mode m) {
  return static_cast<mode_set>(1U << static_cast<unsigned>(m));
}

enum class output_id : std::uint8_t {
  dst,           // the normalized output y
  mean,          // the batch mean of each statistic group (saved for backward)
  var,           // the biased batch variance of each group
  invstd,        // 1/sqrt(var + ε) of each group
  running_mean,  // the running statistics after the update
  running_var,
  diff_src,    // dx
  diff_gamma,  // dγ
  diff_beta,   // dβ
  weight,      // a folded convolution's weight (folding, not a normalization mode)
  bias,        // a folded convolution's bias
};

// How many values an output has.
enum class output_extent : std::uint8_t {
  element,    // one per element of the data tensor (or of the folded weight)
  group,      // one per statistic group: a channel in batch norm
  parameter,  // one per γ/β entry: a channel in batch norm
  running,    // one per running-statistic entry: a channel (batch norm, instance norm)
};

// Which of the problem's data types an output's values take (DESIGN.md §9, "data types"): the
// data's (src, dst and the diffs), the statistics', or the parameters'.
enum class format_role : std::uint8_t { data, statistics, parameters };

struct output_desc {
  output_id id;
  std::string_view name;  // as in fixtures, results files and reports
  output_extent extent;
  format_role role;
  mode_set modes;  // the normalization modes that produce it (none: folding's outputs)
};

inline constexpr mode_set k_training_forward = mode_bit(bn_mode::forward_training);
inline constexpr mode_set k_backward =
    mode_bit(bn_mode::backward_training) | mode_bit(bn_mode::backward_inference);

inline constexpr std::array<output_desc, 11> k_output_table{{
    {output_id::dst, "dst", output_extent::element, format_role::data,
     k_training_forward | mode_bit(bn_mode::forward_inference)},
    {output_id::mean, "mean", output_extent::group, format_role::statistics, k_training_forward},
    {output_id::var, "var", output_extent::group, format_role::statistics, k_training_forward},
    {output_id::invstd, "invstd", output_extent::group, format_role::statistics,
     k_training_forward},
    {output_id::running_mean, "running_mean", output_extent::running, format_role::statistics,
     k_training_forward},
    {output_id::running_var, "running_var", output_extent::running, format_role::statistics,
     k_training_forward},
    {output_id::diff_src, "diff_src", output_extent::element, format_role::data, k_backward},
    {output_id::diff_gamma, "diff_gamma", output_extent::parameter, format_role::parameters,
     k_backward},
    {output_id::diff_beta, "diff_beta", output_extent::parameter, format_role::parameters,
     k_backward},
    {output_id::weight, "weight", output_extent::element, format_role::parameters, 0},
    {output_id::bias, "bias", output_extent::parameter, format_role::parameters, 0},
}};

// The table is indexed by output_id.
static_assert([] {
  for (std::size_t i = 0; i < k_output_table.size(); ++i) {
    if (static_cast<std::size_t>(k_output_table[i].id) != i) return false;
  }
  return true;
}());

[[nodiscard]] constexpr const output_desc& describe(output_id id) {
  return k_output_table[static_cast<std::size_t>(id)];
}
[[nodiscard]] constexpr std::string_view to_string(output_id id) {
  return describe(id).name;
}
[[nodiscard]] constexpr bool per_element(output_id id) {
  return describe(id).extent == output_extent::element;
}
// The output of that name; throws std::out_of_range naming it when it is none.
[[nodiscard]] output_id output_named(std::string_view name);
// The output of that name, if it is one (names are those of the table, exactly).
[[nodiscard]] constexpr std::optional<output_id> parse_output(std::string_view name) {
  for (const output_desc& d : k_output_table) {
    if (d.name == name) return d.id;
  }
  return std::nullopt;
}

}  // namespace bnoracle
