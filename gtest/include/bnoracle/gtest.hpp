// bnoracle's conformance suite as GoogleTest tests (docs/gtest-integration.md).
//
// One line in a user's test file registers every case of the conformance catalog and every
// property of the property suite as a GoogleTest test of their kernel:
//
//   #include <bnoracle/gtest.hpp>
//   BNORACLE_CONFORMANCE_SUITE(MyBatchNorm, [] { return std::make_unique<my_batch_norm>(); });
//
// and link `bnoracle::gtest` and `GTest::gtest_main`. The tests are registered during static
// initialization, before main(), so `--gtest_list_tests`, `--gtest_filter`, ctest's
// gtest_discover_tests and test sharding see them like any TEST().
//
// Each test creates a fresh kernel with the factory, and (by default) runs every kernel call in
// a forked child (bnoracle/isolation.hpp): a crash, hang or out-of-bounds write fails that test
// with a reason and the rest of the suite goes on.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/options.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace bnoracle {

// Creates the kernel under test. Called once per test, in the test process (never in the
// forked child); it may throw (the test then fails with the exception's message).
using kernel_factory = std::function<std::unique_ptr<bn_kernel>()>;

// conformance_options is check_options (options.hpp): its first fields, in their order, are
// level, property_cases, seed, isolate, timeout, catalog, properties, filter, convention,
// kernel_path; designated initializers in BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS follow it.

// Registers the conformance tests of the kernels `factory` creates as the GoogleTest test suite
// `suite` (characters other than ASCII letters and digits become '_'; empty: BnoracleConformance):
//   <suite>.<case name>            one per catalog case, e.g. exact_basic_nchw_4x3x5x5 for the
//                                  case "exact/basic/nchw_4x3x5x5": every mode and step of it
//   <suite>.property_<name>        one per property, e.g. property_bias_invariance
//   <suite>.evidence               last: fails when the tests judged nothing, or nothing of an
//                                  operation the kernel declares (every call skipped is not a
//                                  pass; docs/cli.md)
// Call it before RUN_ALL_TESTS() (the macros below call it during static initialization).
// It never throws: a configuration error (a malformed BNORACLE_SEED, an empty factory, a filter
// that matches nothing, a suite name registered twice) registers a single failing test
// <suite>.configuration that says what is wrong. Failures are reported at `file`:`line`, by default
// the caller's (GCC's and Clang's __builtin_FILE/LINE, which std::source_location needs Clang 15
// for).
void register_conformance_tests(const std::string& suite, kernel_factory factory,
                                const conformance_options& options = {},
                                const char* file = __builtin_FILE(), int line = __builtin_LINE());

// A factory that loads a kernel plugin (a shared library exporting `bnoracle_kernel_v2` or `_v1`,
// see docs/kernel-abi.md) with load_plugin(path). Loading fails the test, not the registration.
[[nodiscard]] kernel_factory plugin_factory(std::string path);

// The seed the suite runs with: BNORACLE_SEED when set (throws std::invalid_argument when it is
// not a decimal integer in [0, 2^64)), else `fallback`.
[[nodiscard]] std::uint64_t conformance_seed(std::uint64_t fallback);

// "exact/basic/nchw_4x3x5x5" -> "exact_basic_nchw_4x3x5x5": every character other than an ASCII
// letter or digit becomes '_'.
[[nodiscard]] std::string gtest_name(const std::string& name);

}  // namespace bnoracle

// Registers the conformance suite `SuiteName` (an identifier) of the kernels made by the
// factory expression (anything convertible to bnoracle::kernel_factory; it may contain commas).
#define BNORACLE_CONFORMANCE_SUITE(SuiteName, ...) \
  BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(SuiteName, (__VA_ARGS__), )

// The same with options: the trailing arguments initialise a bnoracle::conformance_options,
// either as an expression of that type or as designated initializers in declaration order:
//   BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(Strict, make_kernel,
//                                           .level = bnoracle::accuracy_level::strict,
//                                           .property_cases = 500);
// A factory expression with a top-level comma must be parenthesised here.
#define BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(SuiteName, factory_expr, ...)             \
  [[maybe_unused]] static const bool bnoracle_conformance_registered_##SuiteName = [] {   \
    ::bnoracle::register_conformance_tests(#SuiteName, factory_expr,                      \
                                           ::bnoracle::conformance_options{__VA_ARGS__}); \
    return true;                                                                          \
  }()
