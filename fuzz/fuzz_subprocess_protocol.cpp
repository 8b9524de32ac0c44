// libFuzzer target for the subprocess protocol's parsing (adapters/src/subprocess_protocol.hpp):
// every input is read as a handshake line and as a response line, and a response's outputs are
// read as a tensor and a counter (tools/run-fuzz).
//
// plugin_error (a refused handshake) and protocol_error (a refused response) are the expected
// answers to bad input; anything else escaping (another exception type, a sanitizer report, a
// crash, a hang, an allocation past -malloc_limit_mb) is a finding.
#include "bnoracle/text.hpp"
#include "subprocess_protocol.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace bnoracle;
  const std::string line(reinterpret_cast<const char*>(data), size);
  try {
    const kernel_info info = protocol::parse_handshake(line);
    // An accepted handshake names a kernel in valid UTF-8 within the length limit.
    if (info.name.empty() || info.name.size() > protocol::k_max_name || !is_valid_utf8(info.name) ||
        !is_valid_utf8(info.version)) {
      std::abort();
    }
  } catch (const plugin_error& e) {
    if (!is_valid_utf8(e.what())) std::abort();  // messages reach the reports
  }
  try {
    const protocol::response r = protocol::parse_response(line, 1);
    if (r.message.size() > protocol::k_max_message + 3 || !is_valid_utf8(r.message)) std::abort();
    if (r.status == BNK_OK) {
      const auto& dst = r.outputs.contains("dst") ? r.outputs["dst"] : protocol::json();
      const std::size_t count = dst.is_array() ? dst.size() : 4;
      std::vector<float> values(count);
      protocol::take(r.outputs, "dst", count, [&](std::size_t i, float v) { values.at(i) = v; });
      (void)protocol::take_counter(r.outputs);
    }
  } catch (const protocol::protocol_error& e) {
    if (!is_valid_utf8(e.message)) std::abort();
  }
  return 0;
}
