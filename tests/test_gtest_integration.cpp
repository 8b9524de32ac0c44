// bnoracle::gtest on a bundled kernel: the whole conformance suite registered by the macro (it
// must pass), a filtered in-process variant with options, and the helpers.
#include "bnoracle/gtest.hpp"

#include "bnoracle/catalog.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must point at the bundled kernels"
#endif

namespace {

const std::string k_pairwise = std::string(BNORACLE_KERNEL_DIR) + "/libbnk_pairwise.so";

}  // namespace

// Everything, with the defaults: the catalog and the property suite at the standard level.
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(PairwiseConformance, bnoracle::plugin_factory(k_pairwise),
                                        .kernel_path = k_pairwise);

// Options through designated initializers: in-process calls, strict level, one case family.
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(WelfordStrictInProcess,
                                        bnoracle::plugin_factory(std::string(BNORACLE_KERNEL_DIR) +
                                                                 "/libbnk_welford.so"),
                                        .level = bnoracle::accuracy_level::strict,
                                        .property_cases = 20, .isolate = false,
                                        .filter = "exact/basic*");

// Data types: the catalog's cases in bfloat16 (data and γ/β), judged with their own bounds.
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(
    PairwiseBfloat16, bnoracle::plugin_factory(k_pairwise),
    .level = bnoracle::accuracy_level::strict, .filter = "layer_norm/general/hidden_3*",
    .types = bnoracle::data_types{bnoracle::format_id::bfloat16, bnoracle::format_id::bfloat16,
                                  bnoracle::format_id::float32});

// Problems of the user's: only they run (the filter), four cases each.
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(PairwiseOwnProblems, bnoracle::plugin_factory(k_pairwise),
                                        .properties = false, .filter = "problem",
                                        .problems = {"nchw 2x3x5x7 eps=1e-3",
                                                     "nc 4x100 op=layer_norm"});

namespace bnoracle {
namespace {

TEST(GTestIntegration, ProblemsOfTheUsersBecomeCases) {
  const testing::UnitTest& u = *testing::UnitTest::GetInstance();
  const testing::TestSuite* own = nullptr;
  for (int i = 0; i < u.total_test_suite_count(); ++i) {
    if (std::string(u.GetTestSuite(i)->name()) == "PairwiseOwnProblems") own = u.GetTestSuite(i);
  }
  ASSERT_NE(own, nullptr);
  std::vector<std::string> names;
  for (int i = 0; i < own->total_test_count(); ++i) names.emplace_back(own->GetTestInfo(i)->name());
  const std::vector<std::string> expected{"problem1_exact_pairs_nchw_2x3x5x7",
                                          "problem1_general_mixed_nchw_2x3x5x7",
                                          "problem1_general_offset_1e4_nchw_2x3x5x7",
                                          "problem1_general_constant_nchw_2x3x5x7",
                                          "problem2_exact_pairs_nc_4x100",
                                          "problem2_general_mixed_nc_4x100",
                                          "problem2_general_offset_1e4_nc_4x100",
                                          "problem2_general_constant_nc_4x100",
                                          "evidence"};
  EXPECT_EQ(names, expected);
}

TEST(GTestIntegration, DataTypesReachTheCasesAndLeaveOutTheFloat32Properties) {
  const testing::UnitTest& u = *testing::UnitTest::GetInstance();
  const testing::TestSuite* half = nullptr;
  for (int i = 0; i < u.total_test_suite_count(); ++i) {
    if (std::string(u.GetTestSuite(i)->name()) == "PairwiseBfloat16") half = u.GetTestSuite(i);
  }
  ASSERT_NE(half, nullptr);
  int cases = 0;
  for (int i = 0; i < half->total_test_count(); ++i) {
    const std::string name = half->GetTestInfo(i)->name();
    EXPECT_EQ(name.rfind("property_", 0), std::string::npos) << name;
    cases += name.rfind("layer_norm_general_hidden_3", 0) == 0 ? 1 : 0;
  }
  int expected = 0;
  for (const case_spec& spec : default_catalog(1)) {
    expected += name_matches(spec.name, "layer_norm/general/hidden_3*") ? 1 : 0;
  }
  EXPECT_GT(expected, 0);
  EXPECT_EQ(cases, expected);
}

TEST(GTestIntegration, NamesBecomeGTestIdentifiers) {
  EXPECT_EQ(gtest_name("exact/basic/nchw_4x3x5x5"), "exact_basic_nchw_4x3x5x5");
  EXPECT_EQ(gtest_name("a-b.c d"), "a_b_c_d");
  EXPECT_EQ(gtest_name("x1_Y2"), "x1_Y2");
}

TEST(GTestIntegration, TheRegisteredTestsAreTheCatalogAndTheProperties) {
  const testing::UnitTest& u = *testing::UnitTest::GetInstance();
  const testing::TestSuite* all = nullptr;
  const testing::TestSuite* filtered = nullptr;
  for (int i = 0; i < u.total_test_suite_count(); ++i) {
    const testing::TestSuite* s = u.GetTestSuite(i);
    if (std::string(s->name()) == "PairwiseConformance") all = s;
    if (std::string(s->name()) == "WelfordStrictInProcess") filtered = s;
  }
  ASSERT_NE(all, nullptr);
  ASSERT_NE(filtered, nullptr);
  bool have_case = false;
  bool have_property = false;
  for (int i = 0; i < all->total_test_count(); ++i) {
    const std::string name = all->GetTestInfo(i)->name();
    have_case = have_case || name == "exact_basic_nchw_4x3x5x5";
    have_property = have_property || name == "property_bias_invariance";
  }
  EXPECT_TRUE(have_case);
  EXPECT_TRUE(have_property);
  EXPECT_GT(all->total_test_count(), 40);
  // "exact/basic*" matches the two exact/basic cases and no property; the evidence test follows
  // the catalog tests.
  ASSERT_EQ(filtered->total_test_count(), 3);
  EXPECT_EQ(std::string(filtered->GetTestInfo(2)->name()), "evidence");
}

TEST(GTestIntegration, SeedComesFromTheEnvironment) {
  ASSERT_EQ(unsetenv("BNORACLE_SEED"), 0);
  EXPECT_EQ(conformance_seed(7), 7U);
  ASSERT_EQ(setenv("BNORACLE_SEED", "18446744073709551615", 1), 0);
  EXPECT_EQ(conformance_seed(7), 18446744073709551615ULL);
  for (const char* bad : {"-1", "12x", "0x10", " 5", "18446744073709551616"}) {
    ASSERT_EQ(setenv("BNORACLE_SEED", bad, 1), 0);
    EXPECT_THROW((void)conformance_seed(7), std::invalid_argument) << bad;
  }
  ASSERT_EQ(unsetenv("BNORACLE_SEED"), 0);
}

}  // namespace
}  // namespace bnoracle
