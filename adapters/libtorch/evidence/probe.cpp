// Runs hand-made cases beyond `bnoracle check`'s catalog (large L, a near-constant or constant
// channel, every PyTorch code path) through bnoracle's own runner, error model and report, against
// any plugin. Evidence for ../FINDINGS.md; not built by CMake. Build against a configured tree
// (one command; B=build/ci), from the repository root:
//
//   g++ -std=c++20 -O2 -Iadapters/include -Ifixtures/include -Ioracle/include
//       -Iproperties/include -Irunner/include adapters/libtorch/evidence/probe.cpp -o /tmp/probe
//       $B/tools/libbnoracle_runner.a $B/properties/libbnoracle_properties.a
//       $B/adapters/libbnoracle_adapters.a -ldl $B/fixtures/libbnoracle_fixtures.a
//       $B/oracle/libbnoracle_oracle.a /usr/lib/x86_64-linux-gnu/librapidcheck.a
//   /tmp/probe build/ci/adapters/libbna_libtorch.so standard [FILTER]
#include "bnoracle/catalog.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/report.hpp"
#include "bnoracle/runner.hpp"

#include <iostream>
#include <string>
#include <utility>
#include <vector>

using namespace bnoracle;

namespace {

case_spec make(std::string name, std::int64_t n, std::int64_t c, std::vector<std::int64_t> spatial,
               layout lay, std::vector<channel_recipe> recipes,
               std::vector<std::int64_t> strides = {}) {
  case_spec s;
  s.name = std::move(name);
  s.tier = data_tier::general;
  s.problem.n = n;
  s.problem.c = c;
  s.problem.spatial = std::move(spatial);
  s.problem.mem_layout = lay;
  s.problem.strides = std::move(strides);
  s.problem.eps = 1e-5;
  s.problem.momentum = 0.3;
  s.recipes = std::move(recipes);
  s.seed = 1;
  return s;
}

std::vector<case_spec> probe_cases() {
  using K = channel_kind;
  // Near-constant, large-offset, ordinary and tiny-spread channels.
  const std::vector<channel_recipe> drift = {{K::normal, 0.01, 1e-4},
                                             {K::normal, 1e3, 1.0},
                                             {K::normal, 0.3, 2.0},
                                             {K::normal, 1.0, 1e-3}};
  // A constant channel (every partial sum of a sequential float sum rounds the same way) and an
  // ordinary one.
  const std::vector<channel_recipe> cst = {{K::constant, 0.01, 0.0}, {K::normal, 0.3, 2.0}};
  std::vector<case_spec> v;
  for (const layout l : {layout::nchw, layout::nhwc}) {
    const std::string ln(to_string(l));
    v.push_back(make("probe/drift_L4096/" + ln + "_16x4x16x16", 16, 4, {16, 16}, l, drift));
    v.push_back(make("probe/drift_L65536/" + ln + "_64x4x32x32", 64, 4, {32, 32}, l, drift));
  }
  for (const layout l : {layout::ncdhw, layout::ndhwc}) {
    const std::string ln(to_string(l));
    v.push_back(make("probe/drift_L16384/" + ln + "_16x4x4x16x16", 16, 4, {4, 16, 16}, l, drift));
  }
  v.push_back(make("probe/drift_L65536/nc_65536x4", 65536, 4, {}, layout::nc, drift));
  v.push_back(make("probe/drift_L4096/nc_4096x4", 4096, 4, {}, layout::nc, drift));
  v.push_back(make("probe/drift_L4096/ncl_4096x4x1", 4096, 4, {1}, layout::ncl, drift));
  v.push_back(make("probe/drift_L4096/ncl_16x4x256", 16, 4, {256}, layout::ncl, drift));
  // NCHW with every row padded to 40 and NHWC with every pixel padded to 8 (non-dense strides).
  v.push_back(make("probe/drift_L65536/strided_padded_64x4x32x32", 64, 4, {32, 32}, layout::strided,
                   drift, {4 * 32 * 40, 32 * 40, 40, 1}));
  v.push_back(make("probe/drift_L65536/strided_nhwc_padded_64x4x32x32", 64, 4, {32, 32},
                   layout::strided, drift, {32 * 32 * 8, 1, 32 * 8, 8}));
  v.push_back(make("probe/const_L65536/nchw_64x2x32x32", 64, 2, {32, 32}, layout::nchw, cst));
  v.push_back(make("probe/const_L65536/nhwc_64x2x32x32", 64, 2, {32, 32}, layout::nhwc, cst));
  v.push_back(
      make("probe/const_L65536/ndhwc_64x2x4x16x16", 64, 2, {4, 16, 16}, layout::ndhwc, cst));
  v.push_back(make("probe/const_L65536/strided_padded_64x2x32x32", 64, 2, {32, 32}, layout::strided,
                   cst, {2 * 32 * 40, 32 * 40, 40, 1}));
  v.push_back(make("probe/const_L65536/strided_nhwc_padded_64x2x32x32", 64, 2, {32, 32},
                   layout::strided, cst, {32 * 32 * 4, 1, 32 * 4, 4}));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: probe PLUGIN.so [strict|standard|lenient] [FILTER]\n";
    return 2;
  }
  const std::string plugin = argv[1];
  const std::string filter = argc > 3 ? argv[3] : "";
  std::vector<case_spec> cases;
  for (case_spec& c : probe_cases()) {
    if (name_matches(c.name, filter)) cases.push_back(std::move(c));
  }
  auto kernel = load_plugin(plugin);
  run_options o;
  o.level = parse_level(argc > 2 ? argv[2] : "standard").value_or(accuracy_level::standard);
  o.kernel_path = plugin;
  o.properties = false;
  o.operations = false;
  o.timeout = std::chrono::milliseconds(600000);
  run_summary s = run_catalog(*kernel, cases, o, {});
  tally(s);
  write_report(std::cout, s, report_format::text, true);
  return s.exit_code();
}
