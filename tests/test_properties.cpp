// The property suite: every property holds for every bundled correct kernel, at the standard
// level, 100 generated cases each. The seed is 1 unless BNORACLE_SEED says otherwise; it is
// printed either way, so any failure in CI reproduces with the command the failure prints.
#include "bnoracle/properties.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must point at the bundled kernels"
#endif

namespace bnoracle {
namespace {

class CorrectKernel : public ::testing::TestWithParam<const char*> {};

TEST_P(CorrectKernel, EveryPropertyHolds) {
  const std::string path = std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + GetParam() + ".so";
  auto kernel = load_plugin(path);
  property_options o;
  o.cases = 100;
  o.seed = 1;
  if (const char* env = std::getenv("BNORACLE_SEED"); env != nullptr && *env != '\0') {
    o.seed = std::strtoull(env, nullptr, 10);
  }
  std::printf("kernel %s, property seed %llu, %d cases per property\n", GetParam(),
              static_cast<unsigned long long>(o.seed), o.cases);
  o.kernel_path = path;
  for (const auto& p : property_list()) {
    const property_result r = check_property(p.name, *kernel, o);
    EXPECT_NE(r.verdict, property_verdict::fail) << r.name << ": " << r.reason << "\n"
                                                 << r.counterexample << "\nrepro: " << r.repro;
    std::printf("%-26s %s %3d cases %.2f s %s\n", r.name.c_str(),
                r.verdict == property_verdict::pass   ? "pass"
                : r.verdict == property_verdict::fail ? "FAIL"
                                                      : "skip",
                r.cases, r.seconds, r.verdict == property_verdict::skip ? r.reason.c_str() : "");
  }
}

INSTANTIATE_TEST_SUITE_P(Bundled, CorrectKernel,
                         ::testing::Values("two_pass", "welford", "pairwise", "blocked_threads",
                                           "compensated", "minimal"));

}  // namespace
}  // namespace bnoracle
