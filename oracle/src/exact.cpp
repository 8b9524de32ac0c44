#include "bnoracle/exact.hpp"

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace bnoracle {

namespace {

dyadic make_dyadic(bool negative, std::uint64_t significand, std::int64_t exp) {
  dyadic d{big_int(significand), exp};
  if (negative) d.mant = -d.mant;
  return d;
}

big_int shifted(const big_int& v, std::int64_t k) {
  // k >= 0 by construction at every call site.
  return v << static_cast<unsigned>(k);
}

}  // namespace

dyadic to_dyadic(float x) {
  if (!std::isfinite(x)) throw std::domain_error("to_dyadic: non-finite float");
  // The IEEE binary32 encoding: 1 sign bit, 8 exponent bits (bias 127), 23 fraction bits.
  constexpr int fraction_bits = k_float32.precision - 1;
  constexpr std::int64_t subnormal_exp = k_float32.min_ulp_exponent();
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const bool negative = (bits >> 31U) != 0U;
  const auto biased = static_cast<std::int64_t>((bits >> fraction_bits) & 0xFFU);
  std::uint64_t frac = bits & ((1U << fraction_bits) - 1U);
  if (biased == 0) return make_dyadic(negative, frac, subnormal_exp);
  frac |= 1U << fraction_bits;
  return make_dyadic(negative, frac, biased - 1 + subnormal_exp);
}

dyadic to_dyadic(double x) {
  if (!std::isfinite(x)) throw std::domain_error("to_dyadic: non-finite double");
  const auto bits = std::bit_cast<std::uint64_t>(x);
  const bool negative = (bits >> 63U) != 0U;
  const auto biased = static_cast<std::int64_t>((bits >> 52U) & 0x7FFU);
  std::uint64_t frac = bits & ((std::uint64_t{1} << 52U) - 1U);
  if (biased == 0) return make_dyadic(negative, frac, -1074);
  frac |= std::uint64_t{1} << 52U;
  return make_dyadic(negative, frac, biased - 1075);
}

dyadic operator+(const dyadic& a, const dyadic& b) {
  if (a.is_zero()) return b;
  if (b.is_zero()) return a;
  const std::int64_t e = std::min(a.exp, b.exp);
  return dyadic{shifted(a.mant, a.exp - e) + shifted(b.mant, b.exp - e), e};
}

dyadic operator-(const dyadic& a) {
  return dyadic{-a.mant, a.exp};
}

dyadic operator-(const dyadic& a, const dyadic& b) {
  return a + (-b);
}

dyadic operator*(const dyadic& a, const dyadic& b) {
  return dyadic{a.mant * b.mant, a.exp + b.exp};
}

bool operator==(const dyadic& a, const dyadic& b) {
  return (a - b).is_zero();
}

dyadic normalized(dyadic d) {
  if (d.mant.is_zero()) return dyadic{big_int(0), 0};
  const auto tz = mp::lsb(mp::abs(d.mant));
  if (tz > 0) {
    d.mant >>= tz;  // exact: the low `tz` bits are zero (arithmetic shift keeps the sign)
    d.exp += static_cast<std::int64_t>(tz);
  }
  return d;
}

big_int pow2(std::int64_t k) {
  if (k < 0) throw std::domain_error("pow2: negative exponent");
  return big_int(1) << static_cast<unsigned>(k);
}

std::int64_t bit_length(const big_int& v) {
  if (v.is_zero()) return 0;
  return static_cast<std::int64_t>(mp::msb(mp::abs(v))) + 1;
}

big_int isqrt(const big_int& v) {
  if (v.sign() < 0) throw std::domain_error("isqrt: negative argument");
  if (v.is_zero()) return v;
  // v = top·2^shift + rest with shift even and top below 2^64.
  std::int64_t shift = std::max<std::int64_t>(bit_length(v) - 64, 0);
  shift += shift % 2;
  const auto top = static_cast<std::uint64_t>(big_int(v >> static_cast<unsigned>(shift)));
  // sqrt(v) < sqrt(top + 1)·2^(shift/2) <= (sqrt(top) + 1)·2^(shift/2), and the double root of
  // the rounded top is within 2^-52 relative of sqrt(top): x0 below is an overestimate.
  const double root = std::sqrt(static_cast<double>(top)) * (1.0 + 0x1p-40);
  big_int x = big_int(static_cast<std::uint64_t>(root) + 2) << static_cast<unsigned>(shift / 2);
  // From any x >= floor(sqrt(v)), x ← (x + v/x)/2 decreases until it reaches floor(sqrt(v)).
  for (;;) {
    big_int y = (x + v / x) >> 1U;
    if (y >= x) return x;
    x = std::move(y);
  }
}

rational to_rational(const dyadic& d) {
  if (d.exp >= 0) return rational(shifted(d.mant, d.exp));
  return rational(d.mant, pow2(-d.exp));
}

rational to_rational(float x) {
  return to_rational(to_dyadic(x));
}
rational to_rational(double x) {
  return to_rational(to_dyadic(x));
}

golden golden::undefined_value() {
  return golden{0.0, std::numeric_limits<float>::quiet_NaN(), 0, golden_class::undefined};
}

golden golden::unspecified_value() {
  return golden{0.0, std::numeric_limits<float>::quiet_NaN(), 0, golden_class::unspecified};
}

golden golden::infinity(int sign) {
  const float inf = std::numeric_limits<float>::infinity();
  return golden{0.0, sign < 0 ? -inf : inf, 0, golden_class::infinite};
}

namespace {

// floor(log2(a/den)) + exp2 for a > 0, den > 0.
std::int64_t binade_exponent(const big_int& a, const big_int& den, std::int64_t exp2) {
  // a/den lies in (2^(k-1), 2^(k+1)) with k = bl(a) - bl(den), so floor(log2) is k-1 or k.
  const std::int64_t t = bit_length(a) - bit_length(den);  // candidate floor(log2) + 1
  // Is a >= den * 2^t ?
  bool ge = false;
  if (t >= 0) {
    ge = a >= shifted(den, t);
  } else {
    ge = shifted(a, -t) >= den;
  }
  return (ge ? t : t - 1) + exp2;
}

// r / d as a double in [0, 1), for 0 <= r < d.
double fraction(const big_int& r, const big_int& d) {
  if (r.is_zero()) return 0.0;
  const big_int scaled = (r << 64U) / d;  // < 2^64
  return std::ldexp(static_cast<double>(scaled.convert_to<std::uint64_t>()), -64);
}

}  // namespace

std::int64_t ulp_exponent(const float_format& f, const big_int& num, const big_int& den,
                          std::int64_t exp2) {
  if (num.is_zero()) return f.min_ulp_exponent();
  return std::max<std::int64_t>(binade_exponent(mp::abs(num), den, exp2) - (f.precision - 1),
                                f.min_ulp_exponent());
}

std::int64_t float_ulp_exponent(const big_int& num, const big_int& den, std::int64_t exp2) {
  return ulp_exponent(k_float32, num, den, exp2);
}

golden round_to(const float_format& f, const big_int& num, const big_int& den, std::int64_t exp2) {
  if (den.sign() <= 0) throw std::domain_error("round_to: non-positive denominator");
  if (num.is_zero()) {
    return golden{0.0, 0.0F, static_cast<std::int16_t>(f.min_ulp_exponent()), golden_class::finite,
                  f.id};
  }
  const bool negative = num.sign() < 0;
  const big_int a = mp::abs(num);
  const std::int64_t lsb = ulp_exponent(f, a, den, exp2);
  // q + r/D = a/den · 2^(exp2 − lsb), the exact value in units of ulp(exact).
  const std::int64_t sh = exp2 - lsb;
  big_int q;
  big_int r;
  bool up = false;
  double residual = 0.0;  // exact − truncated, in ulps, in [0, 1)
  if (den == 1 && sh < 0) {
    // Dyadic: the quotient and remainder are a shift and a mask; no division.
    const auto k = static_cast<unsigned>(-sh);
    q = a >> k;
    r = a & ((big_int(1) << k) - 1);
    if (!r.is_zero()) {
      const bool half_or_more = mp::bit_test(r, k - 1);
      const bool above_half = half_or_more && mp::lsb(r) < k - 1;
      up = above_half || (half_or_more && mp::bit_test(q, 0));
      // The top 64 bits of r/2^k give the fraction to 2^-64.
      const big_int top = k > 64 ? big_int(r >> (k - 64)) : big_int(r << (64 - k));
      residual = std::ldexp(static_cast<double>(top.convert_to<std::uint64_t>()), -64);
    }
  } else {
    const big_int n = sh >= 0 ? shifted(a, sh) : a;
    const big_int d = sh >= 0 ? den : shifted(den, -sh);
    mp::divide_qr(n, d, q, r);
    residual = fraction(r, d);
    const big_int twice_r = r << 1U;
    up = twice_r > d || (twice_r == d && mp::bit_test(q, 0));
  }
  if (up) {
    q += 1;
    residual -= 1.0;
  }
  // q <= 2^p fits a double and a float exactly.
  const auto qd = q.convert_to<double>();
  const std::int64_t top = lsb + bit_length(q) - 1;  // exponent of the rounded value
  const std::int64_t ovf = f.overflow_exponent();
  if (top >= ovf) {
    // Overflow: report the residual relative to 2^ovf in units of ulp(exact) (see golden).
    // exact = q + residual units (q possibly incremented, residual adjusted with it), and
    // 2^ovf = 2^(ovf − lsb) units with lsb >= ovf − p: the integer part q − 2^(ovf − lsb) is
    // exact in double (both below 2^(p+2)), so only the final addition rounds.
    // Far beyond 2^ovf (lsb > ovf) the offset is a fraction of a unit, negligible against q.
    const double over =
        lsb <= ovf ? static_cast<double>(q.convert_to<std::int64_t>() -
                                         (std::int64_t{1} << static_cast<unsigned>(ovf - lsb))) +
                         residual
                   : (qd - std::ldexp(1.0, static_cast<int>(ovf - lsb))) + residual;
    const float inf = std::numeric_limits<float>::infinity();
    return golden{negative ? -over : over, negative ? -inf : inf, static_cast<std::int16_t>(lsb),
                  golden_class::overflow, f.id};
  }
  const float magnitude = std::ldexp(static_cast<float>(qd), static_cast<int>(lsb));
  return golden{negative ? -residual : residual, negative ? -magnitude : magnitude,
                static_cast<std::int16_t>(lsb), golden_class::finite, f.id};
}

golden round_to(const float_format& f, const dyadic& d) {
  return round_to(f, d.mant, big_int(1), d.exp);
}

golden round_to(const float_format& f, const rational& q) {
  return round_to(f, mp::numerator(q), mp::denominator(q), 0);
}

golden round_to_float(const big_int& num, const big_int& den, std::int64_t exp2) {
  return round_to(k_float32, num, den, exp2);
}

golden round_to_float(const dyadic& d) {
  return round_to(k_float32, d);
}

golden round_to_float(const rational& q) {
  return round_to(k_float32, q);
}

hp_float to_hp(const rational& q) {
  return hp_float(mp::numerator(q)) / hp_float(mp::denominator(q));
}

hp_float to_hp(const dyadic& d) {
  return mp::ldexp(hp_float(d.mant), static_cast<int>(d.exp));
}

std::string to_decimal(const hp_float& v, int digits) {
  if (mp::isnan(v)) return "nan";
  if (mp::isinf(v)) return v < 0 ? "-inf" : "inf";
  return v.str(digits, std::ios_base::scientific);
}

std::string hex_float(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
  return buf;
}

}  // namespace bnoracle
