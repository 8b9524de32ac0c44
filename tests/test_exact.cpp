// Unit tests of the exact core: dyadic decomposition, the exact accumulator, correct rounding to
// float32 and the certified square-root scale.
//
// Independent route: IEEE 754 requires +, ×, / and sqrt on float32 to be correctly rounded
// (nearest, ties to even), and x86-64 SSE provides exactly that. So for float operands the
// hardware result is an independently computed expectation for `round_to_float` and
// `round_affine`. (This file must not be compiled with -ffast-math; the build never sets it.)
#include "bnoracle/exact.hpp"
#include "bnoracle/scale.hpp"
#include "bnoracle/superacc.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <vector>

namespace bnoracle {
namespace {

// Random float32 by bit pattern: every finite value, all exponents equally likely.
float random_float(std::mt19937& rng) {
  for (;;) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isfinite(f)) return f;
  }
}

// Random float32 with exponent in [-e, e] (keeps products and quotients in range).
float random_moderate(std::mt19937& rng, int e) {
  std::uniform_real_distribution<float> mant(1.0F, 2.0F);
  std::uniform_int_distribution<int> ex(-e, e);
  const float v = std::ldexp(mant(rng), ex(rng));
  return (rng() & 1U) != 0U ? -v : v;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

TEST(Dyadic, FloatDecompositionIsExact) {
  // 1.5 = 3·2^-1, the smallest subnormal is 2^-149, FLT_MAX = (2^24 − 1)·2^104.
  EXPECT_EQ(to_rational(1.5F), rational(3, 2));
  EXPECT_EQ(to_rational(std::numeric_limits<float>::denorm_min()), rational(1, pow2(149)));
  EXPECT_EQ(to_rational(FLT_MAX), rational((pow2(24) - 1) * pow2(104)));
  EXPECT_EQ(to_rational(-0.0F), rational(0));
  EXPECT_THROW((void)to_dyadic(std::numeric_limits<float>::quiet_NaN()), std::domain_error);
}

TEST(ExactSum, EqualsRationalSumOfRandomFloats) {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 20; ++trial) {
    exact_sum acc;
    rational expect = 0;
    for (int i = 0; i < 200; ++i) {
      const float x = random_float(rng);
      acc.add(static_cast<double>(x));
      expect += to_rational(x);
    }
    ASSERT_EQ(to_rational(acc.value()), expect) << "seed 12345 trial " << trial;
  }
}

TEST(ExactSum, EqualsRationalSumOfProductsAcrossTheWholeRange) {
  std::mt19937 rng(777);
  exact_sum acc;
  rational expect = 0;
  for (int i = 0; i < 2000; ++i) {
    const float a = random_float(rng);
    const float b = random_float(rng);
    acc.add_product(a, b);
    expect += to_rational(a) * to_rational(b);
  }
  EXPECT_EQ(to_rational(acc.value()), expect) << "seed 777";
}

TEST(ExactSum, KeepsSmallTermsThatFloatCancellationLoses) {
  // 1e30 + 1 − 1e30 is 1 exactly; any float or double sum returns 0.
  exact_sum acc;
  acc.add(1e30);
  acc.add(1.0);
  acc.add(-1e30);
  EXPECT_EQ(to_rational(acc.value()), rational(1));
}

TEST(ExactSum, AcceptsTheExtremeProductsAndRejectsWhatIsNotAFloatProduct) {
  exact_sum acc;
  const float tiny = std::numeric_limits<float>::denorm_min();
  acc.add_product(tiny, tiny);  // 2^-298, the smallest non-zero product
  acc.add_product(FLT_MAX, FLT_MAX);
  acc.add_product(-FLT_MAX, FLT_MAX);
  EXPECT_EQ(to_rational(acc.value()), rational(1, pow2(298)));
  EXPECT_THROW(acc.add(std::ldexp(1.0, -299)), std::domain_error);
  EXPECT_THROW(acc.add(std::ldexp(1.0, 256)), std::domain_error);
  EXPECT_THROW(acc.add(std::numeric_limits<double>::infinity()), std::domain_error);
}

TEST(BinnedSum, EqualsTheRationalSumsOfFloatsAndProductsAcrossTheWholeRange) {
  // Every exponent, subnormals and both signs; the same dyadic as exact_sum's (value() is
  // normalized, so equal values are equal representations).
  std::mt19937 rng(4242);
  for (int trial = 0; trial < 10; ++trial) {
    binned_sum sum;
    binned_product_sum products;
    exact_sum sum_ref;
    exact_sum products_ref;
    rational expect_sum = 0;
    rational expect_products = 0;
    for (int i = 0; i < 3000; ++i) {
      const float a = random_float(rng);
      const float b = trial % 2 == 0 ? random_float(rng) : a;
      sum.add(a);
      products.add_product(a, b);
      sum_ref.add(static_cast<double>(a));
      products_ref.add_product(a, b);
      expect_sum += to_rational(a);
      expect_products += to_rational(a) * to_rational(b);
    }
    ASSERT_EQ(to_rational(sum.value()), expect_sum) << trial;
    ASSERT_EQ(to_rational(products.value()), expect_products) << trial;
    ASSERT_TRUE(sum.value() == sum_ref.value()) << trial;
    ASSERT_TRUE(products.value() == products_ref.value()) << trial;
  }
}

TEST(BinnedSum, BinsHoldingManyOfTheLargestProductsStayExact) {
  // One bin collects 2^12 products of FLT_MAX·FLT_MAX (2^256 each): a partial sum beyond one
  // term's range, which the accumulator still holds exactly.
  binned_product_sum products;
  binned_sum sum;
  for (int i = 0; i < 4096; ++i) {
    products.add_product(FLT_MAX, FLT_MAX);
    sum.add(FLT_MAX);
  }
  products.add_product(std::numeric_limits<float>::denorm_min(),
                       std::numeric_limits<float>::denorm_min());
  EXPECT_EQ(to_rational(products.value()),
            to_rational(FLT_MAX) * to_rational(FLT_MAX) * 4096 + rational(1, pow2(298)));
  EXPECT_EQ(to_rational(sum.value()), to_rational(FLT_MAX) * 4096);
}

TEST(ExactSum, MergingTwoAccumulatorsEqualsOneAccumulator) {
  std::mt19937 rng(99);
  exact_sum a;
  exact_sum b;
  exact_sum all;
  for (int i = 0; i < 500; ++i) {
    const float x = random_float(rng);
    ((i % 3) != 0 ? a : b).add(static_cast<double>(x));
    all.add(static_cast<double>(x));
  }
  a.add(b);
  EXPECT_EQ(to_rational(a.value()), to_rational(all.value()));
}

TEST(ExactSum3, EqualsRationalSumOfTripleProductsAcrossTheWholeRange) {
  // Products of three float32 span 2^-447 to 2^384: every random triple, then the extremes.
  std::mt19937 rng(778);
  exact_sum3 acc;
  rational expect = 0;
  for (int i = 0; i < 2000; ++i) {
    const float a = random_float(rng);
    const float b = random_float(rng);
    const float c = random_float(rng);
    acc.add_product3(a, b, c);
    expect += to_rational(a) * to_rational(b) * to_rational(c);
  }
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float huge = std::numeric_limits<float>::max();
  acc.add_product3(tiny, tiny, -tiny);
  acc.add_product3(huge, -huge, huge);
  acc.add_product3(huge, huge, huge);
  acc.add(-1.5);
  expect += -(to_rational(tiny) * to_rational(tiny) * to_rational(tiny)) - rational(3, 2);
  EXPECT_EQ(to_rational(acc.value()), expect) << "seed 778";
  exact_sum3 cancel;
  cancel.add_product3(0.1F, 0.2F, 0.3F);
  cancel.add_product3(-0.3F, 0.1F, 0.2F);
  EXPECT_TRUE(cancel.is_zero());
  EXPECT_THROW(cancel.add_product3(1.0F, std::numeric_limits<float>::infinity(), 1.0F),
               std::domain_error);
}

TEST(RoundToFloat, MatchesHardwareSumsProductsAndQuotients) {
  std::mt19937 rng(2024);
  for (int i = 0; i < 20000; ++i) {
    const float a = random_float(rng);
    const float b = random_float(rng);
    const rational qa = to_rational(a);
    const rational qb = to_rational(b);
    const float sum = a + b;
    const float prod = a * b;
    ASSERT_TRUE(same_bits(round_to_float(qa + qb).value, sum + 0.0F))
        << hex_float(a) << " + " << hex_float(b);
    // An exact zero is +0 in the reference while IEEE keeps the operands' sign; a non-zero value
    // that underflows keeps its sign in both.
    ASSERT_TRUE(same_bits(round_to_float(qa * qb).value, (qa * qb).is_zero() ? 0.0F : prod))
        << hex_float(a) << " * " << hex_float(b);
    if (b != 0.0F) {
      const float quot = a / b;
      ASSERT_TRUE(same_bits(round_to_float(qa / qb).value, qa.is_zero() ? 0.0F : quot))
          << hex_float(a) << " / " << hex_float(b);
    }
  }
}

TEST(RoundToFloat, TiesGoToEven) {
  // 1 + 2^-24 lies halfway between 1 and 1 + 2^-23: the even neighbour is 1.
  EXPECT_EQ(round_to_float(rational(1) + rational(1, pow2(24))).value, 1.0F);
  // 1 + 3·2^-24 lies halfway between 1 + 2^-23 and 1 + 2^-22: the even one is 1 + 2^-22.
  EXPECT_EQ(round_to_float(rational(1) + rational(3, pow2(24))).value, 1.0F + 0x1p-22F);
  // Halfway between the two smallest subnormals 2^-149 and 2^-148 is 3·2^-150: even is 2^-148.
  EXPECT_EQ(round_to_float(rational(3, pow2(150))).value, 0x1p-148F);
  // 2^-150 is halfway between 0 and 2^-149: it rounds to +0.
  EXPECT_EQ(round_to_float(rational(1, pow2(150))).value, 0.0F);
}

TEST(RoundToFloat, OverflowsExactlyAtTheMidpointAboveFltMax) {
  // FLT_MAX = 2^128 − 2^104; the midpoint to 2^128 is 2^128 − 2^103, which ties to even: 2^128,
  // i.e. +Inf. Just below it the value stays FLT_MAX.
  const rational mid = rational(pow2(128) - pow2(103));
  const golden at = round_to_float(mid);
  EXPECT_EQ(at.value, std::numeric_limits<float>::infinity());
  EXPECT_EQ(at.cls, golden_class::overflow);
  EXPECT_DOUBLE_EQ(at.residual, -0.5);  // 2^103 below 2^128, in units of 2^104
  const golden below = round_to_float(mid - 1);
  EXPECT_EQ(below.value, FLT_MAX);
  EXPECT_EQ(below.cls, golden_class::finite);
  EXPECT_EQ(round_to_float(-mid).value, -std::numeric_limits<float>::infinity());
}

TEST(RoundToFloat, ResidualPlacesTheExactValueBetweenNeighbours) {
  // 1/3 = 11184810.666…·2^-25 (2^25/3 = 11184810 + 2/3): it rounds up to 11184811·2^-25, so the
  // residual is −1/3 ulp with ulp = 2^-25.
  const golden g = round_to_float(rational(1, 3));
  EXPECT_EQ(g.value, 11184811.0F * 0x1p-25F);
  EXPECT_NEAR(g.residual, -1.0 / 3.0, 1e-15);
  EXPECT_EQ(g.ulp_exp, -25);
  // −1/3: mirror image.
  const golden n = round_to_float(rational(-1, 3));
  EXPECT_EQ(n.value, -g.value);
  EXPECT_NEAR(n.residual, 1.0 / 3.0, 1e-15);
}

// ---- Rounding to the narrow formats ------------------------------------------------------------
// Independent routes: GCC converts double to _Float16 with correct rounding (soft-fp or F16C),
// and bfloat16 — float32's exponent range with 8 significand bits — is rounded here by scaling the
// double to its quantum (an exact power-of-two scaling) and rounding to an integer, ties to even.

// The double `d` rounded to bfloat16 (nearest, ties to even), or ±Inf past the largest finite.
double bfloat16_of(double d) {
  if (d == 0) return 0;
  const int e = std::max(std::ilogb(d), k_bfloat16.emin);  // exponent of d's binade, clamped
  const int quantum = e - (k_bfloat16.precision - 1);
  const double r = std::ldexp(std::nearbyint(std::ldexp(d, -quantum)), quantum);
  return std::fabs(r) >= 0x1p128 ? std::copysign(HUGE_VAL, d) : r;
}

// Random doubles whose magnitudes cover `f`'s subnormals, normals and overflow, with up to 53
// significant bits (more than either narrow format keeps, so rounding is exercised).
double random_double_for(const float_format& f, std::mt19937& rng) {
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> ex(f.min_ulp_exponent() - 3, f.overflow_exponent() + 1);
  const double v = std::ldexp(mant(rng), ex(rng));
  return (rng() & 1U) != 0U ? -v : v;
}

TEST(RoundTo, Float16MatchesTheCompilersConversion) {
  std::mt19937 rng(16);
  for (int i = 0; i < 50000; ++i) {
    const double d = random_double_for(k_float16, rng);
    const auto expected = static_cast<float>(static_cast<_Float16>(d));
    const golden g = round_to(k_float16, to_rational(d));
    ASSERT_TRUE(same_bits(g.value, expected)) << std::hexfloat << d << " -> " << g.value;
    ASSERT_EQ(g.cls, std::isinf(expected) ? golden_class::overflow : golden_class::finite) << d;
  }
  // The edges: 65504 is the largest finite; the midpoint to 2^16, 65520, ties to even: +Inf.
  EXPECT_EQ(round_to(k_float16, rational(65519)).value, 65504.0F);
  EXPECT_EQ(round_to(k_float16, rational(65520)).value, std::numeric_limits<float>::infinity());
  // 2^-25 is halfway between 0 and the smallest subnormal 2^-24: it rounds to +0.
  EXPECT_EQ(round_to(k_float16, rational(1, pow2(25))).value, 0.0F);
  EXPECT_EQ(round_to(k_float16, rational(3, pow2(25))).value, 0x1p-23F);
}

TEST(RoundTo, Bfloat16MatchesQuantumRounding) {
  std::mt19937 rng(8);
  for (int i = 0; i < 50000; ++i) {
    const double d = random_double_for(k_bfloat16, rng);
    const auto expected = static_cast<float>(bfloat16_of(d));
    const golden g = round_to(k_bfloat16, to_rational(d));
    ASSERT_TRUE(same_bits(g.value, expected)) << std::hexfloat << d << " -> " << g.value;
    if (g.cls == golden_class::finite) {
      // The residual places the exact value: exact = value + residual · 2^ulp_exp.
      ASSERT_NEAR(static_cast<double>(g.value) + g.residual * std::ldexp(1.0, g.ulp_exp), d,
                  std::fabs(d) * 0x1p-50)
          << std::hexfloat << d;
    }
  }
  // 1 + 2^-8 ties between 1 and 1 + 2^-7: even is 1; 1 + 3·2^-8 rounds to 1 + 2^-6.
  EXPECT_EQ(round_to(k_bfloat16, rational(1) + rational(1, pow2(8))).value, 1.0F);
  EXPECT_EQ(round_to(k_bfloat16, rational(1) + rational(3, pow2(8))).value, 1.0F + 0x1p-6F);
}

TEST(RoundTo, Float32IsRoundToFloat) {
  std::mt19937 rng(32);
  for (int i = 0; i < 2000; ++i) {
    const rational q = to_rational(random_double_for(k_float32, rng));
    const golden a = round_to(k_float32, q);
    const golden b = round_to_float(q);
    ASSERT_TRUE(same_bits(a.value, b.value));
    ASSERT_EQ(a.residual, b.residual);
    ASSERT_EQ(a.ulp_exp, b.ulp_exp);
  }
}

TEST(Isqrt, IsTheFloorOfTheSquareRootAsBoostComputesIt) {
  // Random integers of 1 to 1200 bits, perfect squares and their neighbours.
  std::mt19937_64 rng(99);
  for (int i = 0; i < 3000; ++i) {
    big_int v = 0;
    const int bits = 1 + static_cast<int>(rng() % 1200);
    for (int k = 0; k < bits; k += 64) v = (v << 64) + big_int(rng());
    v >>= static_cast<unsigned>((bits + 63) / 64 * 64 - bits);
    ASSERT_EQ(isqrt(v), mp::sqrt(v)) << i;
    const big_int sq = v * v;
    ASSERT_EQ(isqrt(sq), v) << i;
    if (v > 0) {  // (v − 1)² <= v² − 1 < v² + 1 < (v + 1)²
      ASSERT_EQ(isqrt(sq - 1), v - 1) << i;
      ASSERT_EQ(isqrt(sq + 1), v) << i;
    }
  }
  for (std::uint64_t v = 0; v < 5000; ++v) ASSERT_EQ(isqrt(big_int(v)), mp::sqrt(big_int(v)));
  EXPECT_THROW((void)isqrt(big_int(-1)), std::domain_error);
}

TEST(SqrtScale, RecognizesRationalSquareRootsExactly) {
  // 3/sqrt(9/4) = 2 exactly; 1/sqrt(2) is irrational.
  const sqrt_scale exact(rational(3), rational(9, 4));
  ASSERT_TRUE(exact.exact().has_value());
  EXPECT_EQ(*exact.exact(), rational(2));
  EXPECT_FALSE(sqrt_scale(rational(1), rational(2)).exact().has_value());
  EXPECT_THROW(sqrt_scale(rational(1), rational(0)), std::domain_error);
}

TEST(SqrtScale, EnclosureContainsTheValueAndHasTheRequestedWidth) {
  // |h| = 1/sqrt(2): lo·2^exp <= |h| < (lo + 1)·2^exp  ⇔  lo² <= 2^(−2·exp)/2 < (lo + 1)².
  const sqrt_scale h(rational(1), rational(2));
  for (const std::int64_t bits : {64, 200, 1000}) {
    const auto& e = h.enclose(bits);
    ASSERT_FALSE(e.exact);
    ASSERT_LT(e.exp, 0);
    const big_int target = pow2(-2 * e.exp - 1);
    EXPECT_LE(e.lo * e.lo, target);
    EXPECT_GT((e.lo + 1) * (e.lo + 1), target);
    EXPECT_GE(bit_length(e.lo), bits);
  }
}

TEST(RoundAffine, MatchesHardwareSquareRoot) {
  // sqrt(x) = x / sqrt(x) = a + c·h with a = 0, c = 1, h = x/sqrt(x): the hardware sqrt is the
  // independent correctly rounded expectation.
  std::mt19937 rng(31337);
  for (int i = 0; i < 3000; ++i) {
    const float x = std::fabs(random_float(rng));
    if (x == 0.0F) continue;
    const sqrt_scale h(to_rational(x), to_rational(x));
    const golden g = round_affine(dyadic{big_int(0), 0}, dyadic{big_int(1), 0}, h);
    ASSERT_TRUE(same_bits(g.value, std::sqrt(x))) << "sqrt(" << hex_float(x) << ")";
    ASSERT_LE(std::fabs(g.residual), 0.5);
  }
}

TEST(RoundAffine, MatchesHardwareOnAffineFormsWithExactSquareRoots) {
  // a + c·sqrt(q²) = a + c·q for float a, c, q: when c·q is exact in float (few-bit operands),
  // the hardware sum a + (c·q) is correctly rounded, so it is the expectation.
  std::mt19937 rng(4242);
  std::uniform_int_distribution<int> small(-2048, 2048);
  for (int i = 0; i < 3000; ++i) {
    const float a = random_moderate(rng, 20);
    const float c = static_cast<float>(small(rng));
    const float q = std::ldexp(static_cast<float>(std::abs(small(rng)) + 1), small(rng) % 10);
    const sqrt_scale h(rational(1), rational(1) / (to_rational(q) * to_rational(q)));  // h = q
    const golden g = round_affine(to_dyadic(a), to_dyadic(c), h);
    const float expect = a + c * q;  // c·q is exact: at most 12 + 12 significant bits
    ASSERT_TRUE(same_bits(g.value, expect == 0.0F ? 0.0F : expect))
        << hex_float(a) << " + " << hex_float(c) << " * " << hex_float(q);
  }
}

TEST(RoundAffine, DecidesDeepCancellationAgainstAHighPrecisionCheck) {
  // a + c·h with a ≈ −c·h to 80 bits: a = −round(c·sqrt(2)·2^80)·2^-80; the value is tiny but
  // non-zero (sqrt(2) is irrational). A 2000-bit route (independent of the integer square roots
  // of the reference) must agree with the hp value to 2^-240 relative and with the golden's
  // residual: (exact − golden)/ulp = residual, |residual| <= 1/2 (nearest).
  using wide = mp::number<mp::cpp_bin_float<2000, mp::digit_base_2>, mp::et_off>;
  const sqrt_scale h(rational(1), rational(1, 2));  // sqrt(2)
  const wide c = 12345;
  const wide root2 = mp::sqrt(wide(2));
  const wide approx = mp::round(mp::ldexp(c * root2, 80));
  const dyadic a{-approx.convert_to<big_int>(), -80};
  const dyadic cd{big_int(12345), 0};
  const wide second = c * root2 - mp::ldexp(approx, -80);
  const wide exact = wide(hp_affine(a, cd, h));
  EXPECT_LT(mp::abs(exact - second), mp::abs(second) * mp::ldexp(wide(1), -240));
  const golden g = round_affine(a, cd, h);
  const wide residual = mp::ldexp(second - wide(g.value), -g.ulp_exp);
  EXPECT_LE(mp::abs(residual), wide(0.5));
  EXPECT_NEAR(residual.convert_to<double>(), g.residual, 1e-9);
}

TEST(RoundAffine, MatchesHardwareSquareRootInFloat16AndBfloat16) {
  // sqrt(x) for x of the narrow format, as above. The expectation rounds the hardware float32
  // sqrt (correctly rounded, 24 bits) to the narrow format: a double rounding that is innocuous
  // for the square root when 24 >= 2p + 2 (p = 11 and 8), so it is the correctly rounded sqrt.
  std::mt19937 rng(1616);
  for (const float_format* f : {&k_float16, &k_bfloat16}) {
    for (int i = 0; i < 3000; ++i) {
      const golden xg = round_to(*f, to_rational(std::fabs(random_double_for(*f, rng))));
      const float x = xg.value;
      if (x == 0.0F || std::isinf(x)) continue;
      const sqrt_scale h(to_rational(x), to_rational(x));
      const golden g = round_affine(dyadic{big_int(0), 0}, dyadic{big_int(1), 0}, h, *f);
      const float expect = round_to(*f, to_rational(std::sqrt(x))).value;
      ASSERT_TRUE(same_bits(g.value, expect)) << f->name << " sqrt(" << hex_float(x) << ")";
      ASSERT_LE(std::fabs(g.residual), 0.5);
    }
  }
}

TEST(RoundSum, RoundsToFloat16AndBfloat16AsAHighPrecisionSumDoes) {
  // Σ c_k/sqrt(w_k) in 600-bit binary floats, converted exactly to a rational and rounded to the
  // narrow format (round_to, checked against the compiler above), against round_sum in that
  // format; the residual in the format's ulps against the 600-bit value.
  using wide = mp::number<mp::cpp_bin_float<600, mp::digit_base_2>, mp::et_off>;
  const auto to_exact = [](const wide& v) {
    int e = 0;
    const wide m = mp::frexp(v, &e);  // v = m·2^e, |m| in [1/2, 1)
    const big_int mant = mp::ldexp(m, 600).convert_to<big_int>();
    return e >= 600 ? rational(mant * (big_int(1) << static_cast<unsigned>(e - 600)))
                    : rational(mant, big_int(1) << static_cast<unsigned>(600 - e));
  };
  std::mt19937 rng(1717);
  for (const float_format* f : {&k_float16, &k_bfloat16}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<scaled_term> terms;
      wide expect = 0;
      for (int k = 0; k < 1 + trial % 9; ++k) {
        const float c = random_moderate(rng, 4);
        const float w = std::fabs(random_moderate(rng, 6));
        terms.push_back(
            {to_dyadic(c), std::make_shared<const sqrt_scale>(rational(1), to_rational(w))});
        expect += wide(c) / mp::sqrt(wide(w));
      }
      const golden g = round_sum(dyadic{big_int(0), 0}, terms, *f);
      const golden r = round_to(*f, to_exact(expect));
      ASSERT_TRUE(same_bits(g.value, r.value)) << f->name << " trial " << trial;
      const wide residual = mp::ldexp(expect - wide(g.value), -g.ulp_exp);
      ASSERT_LE(mp::abs(residual), wide(0.5)) << f->name << " trial " << trial;
      ASSERT_NEAR(residual.convert_to<double>(), g.residual, 1e-9) << trial;
    }
  }
}

TEST(RoundSum, OneTermIsTheAffineRounding) {
  std::mt19937 rng(4343);
  for (int i = 0; i < 500; ++i) {
    const float a = random_moderate(rng, 20);
    const float c = random_moderate(rng, 20);
    const float w = std::fabs(random_moderate(rng, 30));
    auto h = std::make_shared<const sqrt_scale>(rational(1), to_rational(w));
    const std::vector<scaled_term> terms{{to_dyadic(c), h}};
    const golden s = round_sum(to_dyadic(a), terms);
    const golden f = round_affine(to_dyadic(a), to_dyadic(c), *h);
    ASSERT_TRUE(same_bits(s.value, f.value)) << i;
    ASSERT_NEAR(s.residual, f.residual, std::ldexp(1.0, -40)) << i;
  }
}

TEST(RoundSum, AgreesWithAHighPrecisionSumOfManyTerms) {
  // Σ c_k/sqrt(w_k) against the same sum in 600-bit binary floats (independent square roots).
  using wide = mp::number<mp::cpp_bin_float<600, mp::digit_base_2>, mp::et_off>;
  std::mt19937 rng(4444);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<scaled_term> terms;
    wide expect = 0;
    for (int k = 0; k < 1 + trial % 17; ++k) {
      const float c = random_moderate(rng, 10);
      const float w = std::fabs(random_moderate(rng, 10));
      terms.push_back(
          {to_dyadic(c), std::make_shared<const sqrt_scale>(rational(1), to_rational(w))});
      expect += wide(c) / mp::sqrt(wide(w));
    }
    const golden g = round_sum(dyadic{big_int(0), 0}, terms);
    const wide residual = mp::ldexp(expect - wide(g.value), -g.ulp_exp);
    ASSERT_LE(mp::abs(residual), wide(0.5)) << trial;
    ASSERT_NEAR(residual.convert_to<double>(), g.residual, 1e-9) << trial;
    const wide hp = wide(hp_sum(dyadic{big_int(0), 0}, terms));
    ASSERT_LT(mp::abs(hp - expect), mp::abs(expect) * mp::ldexp(wide(1), -240)) << trial;
  }
}

TEST(RoundSum, DecidesSumsThatAreRationalOnARoundingBoundary) {
  // 3/sqrt(2) − 6/sqrt(8) = 0 and 1/sqrt(3) − 2/sqrt(12) = 0 (commensurable square roots that
  // cancel), plus a = 1 and a term 2^-24/sqrt(1): the sum is 1 + 2^-24, the midpoint between 1
  // and its successor, which rounds to even.
  const auto scale = [](std::int64_t num, std::int64_t den) {
    return std::make_shared<const sqrt_scale>(rational(1), rational(num, den));
  };
  const std::vector<scaled_term> terms{{dyadic{big_int(3), 0}, scale(2, 1)},
                                       {dyadic{big_int(-6), 0}, scale(8, 1)},
                                       {dyadic{big_int(1), 0}, scale(3, 1)},
                                       {dyadic{big_int(-2), 0}, scale(12, 1)},
                                       {dyadic{big_int(1), -24}, scale(1, 1)}};
  const golden g = round_sum(dyadic{big_int(1), 0}, terms);
  EXPECT_TRUE(same_bits(g.value, 1.0F));
  EXPECT_EQ(g.residual, 0.5);
  EXPECT_EQ(hp_sum(dyadic{big_int(1), 0}, terms), hp_float(1) + mp::ldexp(hp_float(1), -24));
  // Without a and the rational term, an exact zero: +0, residual 0.
  const golden z = round_sum(dyadic{big_int(0), 0}, std::span(terms).first(4));
  EXPECT_TRUE(same_bits(z.value, 0.0F));
  EXPECT_EQ(z.residual, 0.0);
  EXPECT_EQ(hp_sum(dyadic{big_int(0), 0}, std::span(terms).first(4)), 0);
}

TEST(RoundSum, MergesEveryTermOfACommensurableClassWithItsOwnRatio) {
  // The terms are ±c_i/sqrt(w·m_i²) = ±(c_i/m_i)/sqrt(w): one class of commensurable square
  // roots, several terms per square and of either sign. The coefficients are chosen so that
  // Σ ±c_i/m_i = 0; with a rational term 2a/sqrt(4) the sum is exactly a (a float). The rational
  // term keeps the rounding off its fast path (which would decide a + tiny enclosure at once):
  // it must return a itself, which only a reduction that scales every term by its own ratio to
  // the class gets right.
  std::mt19937 rng(4545);
  const std::int64_t ms[] = {1, 2, 3, 2, 1, 3};
  for (int trial = 0; trial < 200; ++trial) {
    const rational w = to_rational(std::fabs(random_moderate(rng, 10)));
    const float a = random_moderate(rng, 10);
    std::vector<scaled_term> terms;
    rational total(0);  // Σ ±c_i/m_i so far
    const int n = 3 + trial % 4;
    for (int i = 0; i < n; ++i) {
      const std::int64_t m = ms[(trial + i) % 6];
      const int sign = ((rng() & 1U) != 0U) ? -1 : 1;
      const auto h = std::make_shared<const sqrt_scale>(rational(sign), w * m * m);
      dyadic c = to_dyadic(random_moderate(rng, 8));
      if (i == n - 1) {
        // The closing term −total/sqrt(w): its coefficient goes into the scale (k = −total).
        terms.push_back({dyadic{big_int(1), 0}, std::make_shared<const sqrt_scale>(-total, w)});
        break;
      }
      total += to_rational(c) * sign / m;
      terms.push_back({std::move(c), h});
    }
    terms.push_back(
        {to_dyadic(2 * a), std::make_shared<const sqrt_scale>(rational(1), rational(4))});
    const dyadic zero{big_int(0), 0};
    const golden g = round_sum(zero, terms);
    ASSERT_TRUE(same_bits(g.value, a)) << trial << ": " << g.value << " vs " << a;
    ASSERT_EQ(g.residual, 0.0) << trial;
    ASSERT_EQ(hp_sum(zero, terms), hp_float(a)) << trial;
  }
}

TEST(HexFloat, PrintsBitExactSpellings) {
  EXPECT_EQ(hex_float(1.5F), "0x1.8p+0");
  EXPECT_EQ(hex_float(-0.0F), "-0x0p+0");
  EXPECT_EQ(hex_float(std::numeric_limits<float>::denorm_min()), "0x1p-149");
  EXPECT_EQ(hex_float(-std::numeric_limits<float>::infinity()), "-inf");
  EXPECT_EQ(hex_float(std::numeric_limits<float>::quiet_NaN()), "nan");
}

}  // namespace
}  // namespace bnoracle
