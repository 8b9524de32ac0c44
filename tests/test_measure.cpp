// Error measurement in fractional ulps and the rules for special values.
#include "bnoracle/exact.hpp"
#include "bnoracle/measure.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>

namespace bnoracle {
namespace {

constexpr float k_inf = std::numeric_limits<float>::infinity();
constexpr float k_nan = std::numeric_limits<float>::quiet_NaN();

TEST(ErrorUlps, IsFractionalAndSignedAroundOneThird) {
  // 1/3 rounds to v = 11184811·2^-25 with exact − v = −1/3 ulp (see test_exact). So v has error
  // +1/3 ulp, its upper neighbour 1 + 1/3, its lower neighbour −1 + 1/3.
  const golden g = round_to_float(rational(1, 3));
  EXPECT_NEAR(error_ulps(g.value, g), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(error_ulps(std::nextafter(g.value, 1.0F), g), 4.0 / 3.0, 1e-12);
  EXPECT_NEAR(error_ulps(std::nextafter(g.value, 0.0F), g), -2.0 / 3.0, 1e-12);
}

TEST(ErrorUlps, UsesTheUlpOfTheExactValueBelowAPowerOfTwo) {
  // exact = 1 − 2^-26 lies in the binade [1/2, 1) where ulp = 2^-24; it rounds up to 1
  // (residual −1/4). The float just below 1 (1 − 2^-24) is then 3/4 ulp away below.
  const golden g = round_to_float(rational(1) - rational(1, pow2(26)));
  EXPECT_EQ(g.value, 1.0F);
  EXPECT_EQ(g.ulp_exp, -24);
  EXPECT_NEAR(error_ulps(1.0F, g), 0.25, 1e-12);
  EXPECT_NEAR(error_ulps(1.0F - 0x1p-24F, g), -0.75, 1e-12);
}

TEST(ErrorUlps, MeasuresOverflowAgainstTwoToThe128) {
  // exact = 2^128: golden +Inf (overflow), ulp(exact) = 2^(128−23). FLT_MAX = 2^128 − 2^104 is
  // half an ulp below; +Inf counts as 2^128, i.e. no error.
  const golden g = round_to_float(rational(pow2(128)));
  ASSERT_EQ(g.cls, golden_class::overflow);
  EXPECT_EQ(error_ulps(k_inf, g), 0.0);
  EXPECT_NEAR(error_ulps(FLT_MAX, g), -0.5, 1e-12);
  EXPECT_TRUE(std::isinf(error_ulps(-k_inf, g)));
}

TEST(ErrorUlps, FollowsTheRulesForNonFiniteValues) {
  const golden one = round_to_float(rational(1));
  EXPECT_TRUE(std::isinf(error_ulps(k_nan, one)));
  EXPECT_TRUE(std::isinf(error_ulps(k_inf, one)));
  const golden undef = golden::undefined_value();
  EXPECT_EQ(error_ulps(k_nan, undef), 0.0);
  EXPECT_EQ(error_ulps(-k_inf, undef), 0.0);
  EXPECT_TRUE(std::isinf(error_ulps(0.0F, undef))) << "a finite result loses the poison";
  const golden plus_inf = golden::infinity(1);
  EXPECT_EQ(error_ulps(k_inf, plus_inf), 0.0);
  EXPECT_TRUE(std::isinf(error_ulps(-k_inf, plus_inf)));
  EXPECT_TRUE(std::isinf(error_ulps(FLT_MAX, plus_inf)));
  EXPECT_EQ(error_ulps(123.0F, golden::unspecified_value()), 0.0);
}

TEST(ErrorUlps, CountsSubnormalsInUnitsOfTwoToTheMinus149) {
  const golden g = round_to_float(rational(5, pow2(149)));  // 5·2^-149 exactly
  EXPECT_EQ(error_ulps(std::ldexp(7.0F, -149), g), 2.0);
  EXPECT_EQ(error_ulps(0.0F, g), -5.0);
}

TEST(BitEqual, TellsNegativeZeroFromPositiveZero) {
  EXPECT_FALSE(bit_equal(0.0F, -0.0F));
  EXPECT_TRUE(bit_equal(-0.0F, -0.0F));
  EXPECT_TRUE(same_value(0.0F, -0.0F));
  EXPECT_TRUE(same_value(k_nan, k_nan));
  EXPECT_FALSE(same_value(1.0F, k_nan));
}

}  // namespace
}  // namespace bnoracle
