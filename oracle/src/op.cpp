#include "bnoracle/op.hpp"

#include "bnoracle/problem.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>
#include <vector>

namespace bnoracle {

namespace {

struct kind_name {
  op_kind kind;
  std::string_view name;
};

constexpr std::array<kind_name, 5> k_kinds{{
    {op_kind::batch_norm, "batch_norm"},
    {op_kind::layer_norm, "layer_norm"},
    {op_kind::rms_norm, "rms_norm"},
    {op_kind::group_norm, "group_norm"},
    {op_kind::instance_norm, "instance_norm"},
}};

// The options each kind has by default; describe() prints the fields that differ.
op_desc usual(op_kind k, const op_desc& op) {
  switch (k) {
    case op_kind::batch_norm:
      return batch_norm_op();
    case op_kind::layer_norm:
      return layer_norm_op(op.normalized_axes);
    case op_kind::rms_norm:
      return rms_norm_op(op.normalized_axes);
    case op_kind::group_norm:
      return group_norm_op(op.groups);
    case op_kind::instance_norm:
      return instance_norm_op(false);
  }
  return batch_norm_op();
}

}  // namespace

std::string_view to_string(op_kind k) {
  for (const auto& e : k_kinds) {
    if (e.kind == k) return e.name;
  }
  return "?";
}

std::optional<op_kind> parse_op_kind(std::string_view s) {
  for (const auto& e : k_kinds) {
    if (e.name == s) return e.kind;
  }
  return std::nullopt;
}

std::string_view to_string(param_placement p) {
  switch (p) {
    case param_placement::none:
      return "none";
    case param_placement::per_channel:
      return "per_channel";
    case param_placement::per_normalized_element:
      return "per_normalized_element";
  }
  return "?";
}

std::optional<param_placement> parse_param_placement(std::string_view s) {
  for (const param_placement p : {param_placement::none, param_placement::per_channel,
                                  param_placement::per_normalized_element}) {
    if (to_string(p) == s) return p;
  }
  return std::nullopt;
}

void validate(const op_desc& op) {
  const std::string kind(to_string(op.kind));
  const bool rows = op.kind == op_kind::layer_norm || op.kind == op_kind::rms_norm;
  if (rows != (op.normalized_axes != 0)) {
    throw invalid_problem("op: normalized_axes must be " + std::string(rows ? ">= 1" : "0") +
                          " for " + kind + ", got " + std::to_string(op.normalized_axes));
  }
  if (op.normalized_axes < 0) {
    throw invalid_problem("op: normalized_axes must be >= 1, got " +
                          std::to_string(op.normalized_axes));
  }
  if ((op.kind == op_kind::group_norm) != (op.groups != 0) || op.groups < 0) {
    throw invalid_problem("op: groups must be " +
                          std::string(op.kind == op_kind::group_norm ? ">= 1" : "0") + " for " +
                          kind + ", got " + std::to_string(op.groups));
  }
  if (op.centred != (op.kind != op_kind::rms_norm)) {
    throw invalid_problem("op: " + kind + (op.centred ? " subtracts no mean" : " is centred"));
  }
  if (op.params == param_placement::per_normalized_element && !rows) {
    throw invalid_problem("op: " + kind + " has no per-normalized-element parameters");
  }
  if (op.weight_offset && op.params == param_placement::none) {
    throw invalid_problem("op: a weight offset needs parameters");
  }
  if (op.running_stats && op.kind != op_kind::batch_norm && op.kind != op_kind::instance_norm) {
    throw invalid_problem("op: " + kind + " keeps no running statistics");
  }
  if (op.cast_before_weight && op.params == param_placement::none) {
    throw invalid_problem("op: casting before the weight needs parameters");
  }
}

std::string describe(const op_desc& op) {
  std::string s(to_string(op.kind));
  const op_desc base = usual(op.kind, op);
  std::string fields;
  const auto add = [&](const std::string& f) { fields += (fields.empty() ? "" : ",") + f; };
  if (op.normalized_axes != 0) add("axes=" + std::to_string(op.normalized_axes));
  if (op.groups != 0) add("groups=" + std::to_string(op.groups));
  if (op.centred != base.centred) add(op.centred ? "centred" : "uncentred");
  if (op.params != base.params) add("params=" + std::string(to_string(op.params)));
  if (op.weight_offset) add("weight_offset");
  if (op.cast_before_weight) add("cast_before_weight");
  if (op.running_stats != base.running_stats) {
    add(op.running_stats ? "running_stats" : "no_running_stats");
  }
  return fields.empty() ? s : s + "(" + fields + ")";
}

op_desc parse_op_desc(std::string_view text) {
  const std::size_t open = text.find('(');
  const std::string_view name = text.substr(0, open);
  const std::optional<op_kind> kind = parse_op_kind(name);
  if (!kind) {
    throw invalid_problem("op: unknown op '" + std::string(name) +
                          "' (batch_norm, layer_norm, rms_norm, group_norm, instance_norm)");
  }
  op_desc op;
  op.kind = *kind;
  std::string_view fields;
  if (open != std::string_view::npos) {
    if (text.back() != ')') {
      throw invalid_problem("op: '" + std::string(text) + "' lacks its closing parenthesis");
    }
    fields = text.substr(open + 1, text.size() - open - 2);
  }
  // First the fields that pick the usual options (axes=, groups=), then the others over them.
  int axes = 0;
  std::int64_t groups = 0;
  std::vector<std::string_view> rest;
  const auto number = [&](std::string_view field, std::string_view v) -> std::int64_t {
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > (std::int64_t{1} << 40)) {
      throw invalid_problem("op: '" + std::string(field) + "' wants a positive integer");
    }
    return n;
  };
  while (!fields.empty()) {
    const std::size_t comma = fields.find(',');
    const std::string_view f = fields.substr(0, comma);
    fields = comma == std::string_view::npos ? std::string_view() : fields.substr(comma + 1);
    if (f.starts_with("axes=")) {
      axes = static_cast<int>(std::min<std::int64_t>(number(f, f.substr(5)), 8));
    } else if (f.starts_with("groups=")) {
      groups = number(f, f.substr(7));
    } else {
      rest.push_back(f);
    }
  }
  const bool rows = op.kind == op_kind::layer_norm || op.kind == op_kind::rms_norm;
  if (rows && axes == 0) axes = 1;
  op.normalized_axes = axes;
  op.groups = groups;
  op = usual(op.kind, op);
  op.normalized_axes = axes;
  op.groups = groups;
  for (const std::string_view f : rest) {
    if (f == "weight_offset") {
      op.weight_offset = true;
    } else if (f == "cast_before_weight") {
      op.cast_before_weight = true;
    } else if (f == "running_stats") {
      op.running_stats = true;
    } else if (f == "no_running_stats") {
      op.running_stats = false;
    } else if (f == "centred" || f == "uncentred") {
      op.centred = f == "centred";
    } else if (f.starts_with("params=")) {
      const std::optional<param_placement> p = parse_param_placement(f.substr(7));
      if (!p) throw invalid_problem("op: unknown parameter placement in '" + std::string(f) + "'");
      op.params = *p;
    } else {
      throw invalid_problem("op: unknown field '" + std::string(f) + "' in '" + std::string(text) +
                            "'");
    }
  }
  validate(op);
  return op;
}

std::string describe(const data_types& t) {
  if (t.data == t.parameters && t.data == t.statistics) {
    return std::string(format_of(t.data).name);
  }
  return "data=" + std::string(format_of(t.data).name) +
         ",parameters=" + std::string(format_of(t.parameters).name) +
         ",statistics=" + std::string(format_of(t.statistics).name);
}

namespace {

constexpr format_id f32 = format_id::float32;
constexpr format_id f16 = format_id::float16;
constexpr format_id bf16 = format_id::bfloat16;

constexpr std::array<named_types, 6> k_named_types{{
    {"float32", {f32, f32, f32}},
    {"cudnn_mixed", {f16, f32, f32}},
    {"bf16_mixed", {bf16, f32, f32}},
    {"bf16_weights", {bf16, bf16, f32}},
    {"pytorch_cpu_bf16", {bf16, bf16, bf16}},
    {"all_half", {f16, f16, f16}},
}};

}  // namespace

std::span<const named_types> named_data_types() {
  return k_named_types;
}

std::optional<data_types> parse_data_types(std::string_view s) {
  for (const named_types& n : k_named_types) {
    if (n.name == s) return n.types;
  }
  if (const std::optional<format_id> f = parse_format(s)) return data_types{*f, *f, *f};
  data_types t;
  bool any = false;
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::optional<format_id> f = parse_format(item.substr(eq + 1));
    const std::string_view role = item.substr(0, eq);
    if (!f) return std::nullopt;
    if (role == "data") {
      t.data = *f;
    } else if (role == "parameters") {
      t.parameters = *f;
    } else if (role == "statistics") {
      t.statistics = *f;
    } else {
      return std::nullopt;
    }
    any = true;
  }
  if (!any) return std::nullopt;
  return t;
}

}  // namespace bnoracle
