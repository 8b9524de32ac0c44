// The subprocess protocol's parsing (docs/subprocess-protocol.md): everything bnoracle reads from
// a kernel process, as functions of the text alone, so that they can be fuzzed
// (fuzz/fuzz_subprocess_protocol.cpp) apart from processes and pipes. Not installed.
#pragma once

#include "bnoracle/kernel.hpp"

#include "bnoracle/format.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace bnoracle::protocol {

using json = nlohmann::json;

inline constexpr std::array<const char*, 4> k_mode_names{"forward_training", "forward_inference",
                                                         "backward_training", "backward_inference"};
inline constexpr std::array<std::pair<const char*, std::uint32_t>, 7> k_layout_names{{
    {"nc", BNK_LAYOUT_NC},
    {"ncl", BNK_LAYOUT_NCL},
    {"nchw", BNK_LAYOUT_NCHW},
    {"nhwc", BNK_LAYOUT_NHWC},
    {"ncdhw", BNK_LAYOUT_NCDHW},
    {"ndhwc", BNK_LAYOUT_NDHWC},
    {"strided", BNK_LAYOUT_STRIDED},
}};

// Limits on what a kernel process may send (docs/subprocess-protocol.md, "Limits").
// The handshake line: a few hundred bytes in practice.
inline constexpr std::size_t k_handshake_limit = 65536;
// A response line may hold the request's output values at up to this many bytes each (a hex
// float is at most 16 characters; quotes, a comma and a blank make 20) plus a fixed allowance for
// the id, the status, the keys and a message.
inline constexpr std::size_t k_bytes_per_value = 32;
inline constexpr std::size_t k_response_allowance = 65536;
// Nesting depth of any line: the protocol needs 3 (an object of lists); anything deeper is
// refused while parsing, before a value is built or printed.
inline constexpr int k_max_depth = 16;
// A kernel's message is cut to this many bytes.
inline constexpr std::size_t k_max_message = 4096;
// Longest name or kernel_version in a handshake, in bytes.
inline constexpr std::size_t k_max_name = 255;

// The longest response line a request with `values` output values allows.
[[nodiscard]] inline std::size_t response_limit(std::size_t values) {
  return k_response_allowance + k_bytes_per_value * values;
}

// One failed exchange: the message, and whether the process must be restarted before the next
// call (it is out of step, dead or misbehaving).
struct protocol_error {
  std::string message;
  bool restart = false;
};

// Parses one line; a discarded value when it is not JSON or nests deeper than k_max_depth.
[[nodiscard]] json parse_line(const std::string& line);

// A value for a message: its JSON text, cut to 80 bytes, valid UTF-8.
[[nodiscard]] std::string brief(const json& v);

// A received line for a message: cut to 200 bytes, valid UTF-8.
[[nodiscard]] std::string shown_line(const std::string& line);

// A double as the protocol writes it: a hex float, "nan", "inf" or "-inf".
[[nodiscard]] std::string hex_double(double v);

// A float32 as the protocol writes it; nullopt for anything that is not exactly a float32 value.
[[nodiscard]] std::optional<float> parse_f32(const std::string& s);

// The kernel the handshake line describes. Throws plugin_error for a malformed handshake, an
// unsupported version or an unknown convention.
[[nodiscard]] kernel_info parse_handshake(const std::string& line);

struct response {
  bnk_status status = BNK_FAILED;
  std::string message;  // cut to k_max_message bytes, valid UTF-8
  json outputs;         // the "outputs" object, when status is BNK_OK
};

// The response line to request `id`. Throws protocol_error for anything but a well-formed
// response to that request (restart set when the process is out of step).
[[nodiscard]] response parse_response(const std::string& line, std::int64_t id);

// Reads output `name` of `count` values of format `f` (float32 unless said) from an "outputs"
// object into put(i, value); throws protocol_error (no restart) when it is missing, of another
// length, or a value is not a float or not a value of `f`.
template <class Put>
void take(const json& outputs, const char* name, std::size_t count, Put put,
          const float_format& f = k_float32);

// The "num_batches_tracked" integer of an "outputs" object; throws protocol_error when missing.
[[nodiscard]] std::int64_t take_counter(const json& outputs);

// ---- implementation of the template ----------------------------------------------------------

template <class Put>
void take(const json& outputs, const char* name, std::size_t count, Put put,
          const float_format& f) {
  if (!outputs.contains(name)) {
    throw protocol_error{std::string("status ok but output \"") + name + "\" is missing", false};
  }
  const json& a = outputs[name];
  if (!a.is_array()) {
    throw protocol_error{std::string("output \"") + name + "\" is not a list", false};
  }
  if (a.size() != count) {
    throw protocol_error{std::string("output \"") + name + "\" has " + std::to_string(a.size()) +
                             " values, expected " + std::to_string(count),
                         false};
  }
  for (std::size_t i = 0; i < count; ++i) {
    const std::optional<float> v =
        a[i].is_string() ? parse_f32(a[i].get<std::string>()) : std::nullopt;
    if (!v) {
      throw protocol_error{std::string("output \"") + name + "\"[" + std::to_string(i) +
                               "] is not a float32 as a string (hex float, \"nan\", \"inf\", "
                               "\"-inf\"): " +
                               brief(a[i]),
                           false};
    }
    if (!representable(f, *v)) {
      throw protocol_error{std::string("output \"") + name + "\"[" + std::to_string(i) + "] is " +
                               brief(a[i]) + ", not a " + std::string(f.name) +
                               " value (the request's types say " + std::string(f.name) + ")",
                           false};
    }
    put(i, *v);
  }
}

}  // namespace bnoracle::protocol
