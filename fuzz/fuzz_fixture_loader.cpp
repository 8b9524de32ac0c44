// libFuzzer target for the fixture and results loaders (tools/run-fuzz).
//
// Every input goes through parse_fixture and parse_results. A fixture_error is the expected
// answer to bad input; anything else escaping (another exception type, a sanitizer report, a
// crash, a hang, an allocation past -rss_limit_mb/-malloc_limit_mb) is a finding.
#include "bnoracle/fixture.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

// The loaders' contract for accepted input: the lengths they validated hold.
void check(const bnoracle::fixture& f) {
  for (const auto& out : f.expected) {
    const std::size_t n = out.values.size();
    if (out.classes.size() != n || out.exact.size() != n || out.ulp_exp.size() != n ||
        out.bound[0].size() != n || out.bound[1].size() != n || out.bound[2].size() != n) {
      std::abort();
    }
  }
  if (f.kind == "batch_norm" && f.inputs.count("src") == 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    check(bnoracle::parse_fixture(text, "fuzz.json"));
  } catch (const bnoracle::fixture_error&) {
  }
  try {
    (void)bnoracle::parse_results(text, "fuzz.json");
  } catch (const bnoracle::fixture_error&) {
  }
  return 0;
}
