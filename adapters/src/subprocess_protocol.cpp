// The subprocess protocol's parsing (subprocess_protocol.hpp).
#include "subprocess_protocol.hpp"

#include "bnoracle/convention.hpp"
#include "bnoracle/subprocess_kernel.hpp"
#include "bnoracle/text.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace bnoracle::protocol {

namespace {

struct too_deep {};

}  // namespace

json parse_line(const std::string& line) {
  try {
    return json::parse(
        line,
        [](int depth, json::parse_event_t event, json& /*parsed*/) {
          if ((event == json::parse_event_t::object_start ||
               event == json::parse_event_t::array_start) &&
              depth >= k_max_depth) {
            throw too_deep{};
          }
          return true;
        },
        false);
  } catch (const too_deep&) {
    return json(json::value_t::discarded);
  }
}

std::string brief(const json& v) {
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 80) + "...";
  return valid_utf8(text);
}

std::string shown_line(const std::string& line) {
  return valid_utf8(line.size() > 200 ? line.substr(0, 200) + "..." : line);
}

std::string hex_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%a", v);
  return buf.data();
}

std::optional<float> parse_f32(const std::string& s) {
  if (s == "nan" || s == "-nan") return std::nanf("");
  if (s == "inf" || s == "+inf") return HUGE_VALF;
  if (s == "-inf") return -HUGE_VALF;
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0])) != 0) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  if (end == nullptr || *end != '\0' || std::isnan(d) || std::isinf(d)) return std::nullopt;
  const auto f = static_cast<float>(d);
  if (static_cast<double>(f) != d) return std::nullopt;  // not a float32: no silent rounding
  return f;
}

kernel_info parse_handshake(const std::string& line) {
  const json h = parse_line(line);
  auto bad = [&](const std::string& why) {
    return plugin_error("malformed handshake (" + why + "): " + shown_line(line) +
                        " (see docs/subprocess-protocol.md)");
  };
  if (h.is_discarded() || !h.is_object()) throw bad("not a JSON object");
  if (!h.contains("protocol") || h["protocol"] != "bnoracle-kernel") {
    throw bad("\"protocol\" must be \"bnoracle-kernel\"");
  }
  if (!h.contains("version") || !h["version"].is_number_integer()) {
    throw bad("\"version\" must be an integer");
  }
  const std::int64_t version = h["version"].get<std::int64_t>();
  if (version < k_subprocess_protocol_oldest || version > k_subprocess_protocol_version) {
    throw plugin_error("protocol version " + brief(h["version"]) +
                       " is not supported (this bnoracle speaks versions " +
                       std::to_string(k_subprocess_protocol_oldest) + " to " +
                       std::to_string(k_subprocess_protocol_version) + ")");
  }
  auto str = [&](const char* key, bool required) -> std::string {
    if (!h.contains(key)) {
      if (required) throw bad(std::string("missing \"") + key + "\"");
      return "";
    }
    if (!h[key].is_string()) throw bad(std::string("\"") + key + "\" must be a string");
    return h[key].get<std::string>();
  };
  auto flag = [&](const char* key) {
    if (!h.contains(key)) return false;
    if (!h[key].is_boolean()) throw bad(std::string("\"") + key + "\" must be true or false");
    return h[key].get<bool>();
  };
  kernel_info info;
  info.abi_version = static_cast<int>(version);
  info.name = str("name", true);
  if (info.name.empty()) throw bad("empty \"name\"");
  info.version = str("kernel_version", false);
  if (info.name.size() > k_max_name || info.version.size() > k_max_name) {
    throw bad("\"name\" and \"kernel_version\" have at most 255 bytes");
  }
  info.convention = str("convention", true);
  if (!h.contains("layouts") || !h["layouts"].is_array()) throw bad("\"layouts\" must be a list");
  for (const auto& l : h["layouts"]) {
    bool known = false;
    for (const auto& [name, bit] : k_layout_names) {
      if (l.is_string() && l.get<std::string>() == name) {
        info.layouts |= bit;
        known = true;
      }
    }
    if (!known) throw bad("unknown layout " + brief(l));
  }
  if (!h.contains("modes") || !h["modes"].is_array()) throw bad("\"modes\" must be a list");
  for (const auto& m : h["modes"]) {
    bool known = false;
    for (std::size_t i = 0; i < k_mode_names.size(); ++i) {
      if (m.is_string() && m.get<std::string>() == k_mode_names[i]) {
        info.modes[i] = true;
        known = true;
      }
    }
    if (!known) throw bad("unknown mode " + brief(m));
  }
  if (h.contains("operations")) {
    if (!h["operations"].is_array()) throw bad("\"operations\" must be a list");
    for (const auto& o : h["operations"]) {
      if (o == "syncbn_merge") {
        info.syncbn_merge = true;
      } else if (o == "fold") {
        info.fold = true;
      } else {
        throw bad("unknown operation " + brief(o) + " (known: syncbn_merge, fold)");
      }
    }
  }
  if (version >= 2) {
    // What a version-2 kernel supports beside batch norm in float32 (the defaults).
    if (h.contains("ops")) {
      if (!h["ops"].is_array() || h["ops"].empty()) throw bad("\"ops\" must be a non-empty list");
      info.ops = 0;
      for (const auto& o : h["ops"]) {
        const std::optional<op_kind> k =
            o.is_string() ? parse_op_kind(o.get<std::string>()) : std::nullopt;
        if (!k) {
          throw bad("unknown op " + brief(o) +
                    " (known: batch_norm, layer_norm, rms_norm, group_norm, instance_norm)");
        }
        info.ops |= op_bit(*k);
      }
    }
    if (h.contains("types")) {
      const json& t = h["types"];
      if (!t.is_object()) throw bad("\"types\" must be an object");
      const std::pair<const char*, std::uint32_t*> roles[] = {
          {"data", &info.data_type_bits},
          {"parameters", &info.parameter_type_bits},
          {"statistics", &info.statistic_type_bits}};
      for (const auto& [role, bits] : roles) {
        if (!t.contains(role)) continue;
        if (!t[role].is_array() || t[role].empty()) {
          throw bad(std::string("\"types\".") + role + " must be a non-empty list");
        }
        *bits = 0;
        for (const auto& f : t[role]) {
          const std::optional<format_id> id =
              f.is_string() ? parse_format(f.get<std::string>()) : std::nullopt;
          if (!id)
            throw bad("unknown data type " + brief(f) + " (known: float32, float16, bfloat16)");
          *bits |= dtype_bit(*id);
        }
      }
      for (const auto& [key, value] : t.items()) {
        if (key != "data" && key != "parameters" && key != "statistics") {
          throw bad("unknown role \"types\"." + key + " (known: data, parameters, statistics)");
        }
      }
    }
  } else if (h.contains("ops") || h.contains("types")) {
    throw bad("\"ops\" and \"types\" need protocol version 2");
  }
  info.updates_running = flag("updates_running");
  info.supports_cumulative = flag("supports_cumulative");
  const std::string saves = h.contains("saves") ? str("saves", true) : "none";
  if (saves == "none") {
    info.saves = BNK_SAVES_NONE;
  } else if (saves == "mean_invstd") {
    info.saves = BNK_SAVES_MEAN_INVSTD;
  } else if (saves == "mean_var") {
    info.saves = BNK_SAVES_MEAN_VAR;
  } else {
    throw bad("\"saves\" must be \"none\", \"mean_invstd\" or \"mean_var\"");
  }
  if (std::string why = settle_convention_claim(info); !why.empty()) throw plugin_error(why);
  return info;
}

response parse_response(const std::string& line, std::int64_t id) {
  const json r = parse_line(line);
  if (r.is_discarded() || !r.is_object()) {
    throw protocol_error{"the response is not a JSON object (or nests deeper than " +
                             std::to_string(k_max_depth) + " levels): " + shown_line(line),
                         true};
  }
  if (!r.contains("id") || !r["id"].is_number_integer() || r["id"].get<std::int64_t>() != id) {
    throw protocol_error{
        "the response answers id " + (r.contains("id") ? brief(r["id"]) : std::string("(none)")) +
            ", expected " + std::to_string(id) + " (out of step; the kernel process was restarted)",
        true};
  }
  if (!r.contains("status") || !r["status"].is_string()) {
    throw protocol_error{"the response has no \"status\" string", false};
  }
  response out;
  const std::string status = r["status"].get<std::string>();
  out.message = r.contains("message") && r["message"].is_string()
                    ? valid_utf8(r["message"].get<std::string>().substr(0, k_max_message))
                    : "";
  if (status == "unsupported") {
    out.status = BNK_UNSUPPORTED;
  } else if (status == "refused") {
    out.status = BNK_REFUSED;
  } else if (status == "failed") {
    out.status = BNK_FAILED;
  } else if (status != "ok") {
    throw protocol_error{"unknown status " + brief(r["status"]), false};
  } else {
    if (!r.contains("outputs") || !r["outputs"].is_object()) {
      throw protocol_error{"status ok but no \"outputs\" object", false};
    }
    out.status = BNK_OK;
    out.outputs = r["outputs"];
  }
  return out;
}

std::int64_t take_counter(const json& outputs) {
  if (!outputs.contains("num_batches_tracked") ||
      !outputs["num_batches_tracked"].is_number_integer()) {
    throw protocol_error{"status ok but output \"num_batches_tracked\" (an integer) is missing",
                         false};
  }
  return outputs["num_batches_tracked"].get<std::int64_t>();
}

}  // namespace bnoracle::protocol
