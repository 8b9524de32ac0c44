// Exact numbers and the one rounding to a float format (format.hpp).
//
// Every float32 is a dyadic rational m·2^e, so sums, products and differences of float32 values
// are exact as big integers with a binary exponent (`dyadic`). Quotients are exact as rationals.
// Only square roots are irrational; they are handled by `scale.hpp` with certified enclosures.
// This header provides the number types and the correctly rounded conversion to float32, which
// also reports where the exact value lies between float32 neighbours (the residual in ulps).
#pragma once

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <boost/multiprecision/cpp_int.hpp>

#include "bnoracle/format.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace bnoracle {

namespace mp = boost::multiprecision;

// Arbitrary-size signed integer and rational. Values up to 512 bits live inline (no heap
// allocation), which covers the per-element work of typical data; larger ones spill to the heap.
// Expression templates are off: intermediates are named, which keeps the code readable and
// avoids dangling temporaries.
using big_int_backend =
    mp::cpp_int_backend<512, 0, mp::signed_magnitude, mp::unchecked, std::allocator<mp::limb_type>>;
using big_int = mp::number<big_int_backend, mp::et_off>;
using rational = mp::number<mp::rational_adaptor<big_int_backend>, mp::et_off>;

// High-precision binary float used to carry "exact" values out of the reference (for printing
// at 40+ significant digits and for error measurement). 256 bits is about 77 decimal digits;
// values are produced from certified enclosures whose relative width is below 2^-250.
using hp_float = mp::number<mp::cpp_bin_float<256, mp::digit_base_2>, mp::et_off>;

// A dyadic rational `mant · 2^exp`. Exact for every float32 and for every finite sum, difference
// or product of them. Not normalized: the same value has many representations.
struct dyadic {
  big_int mant;
  std::int64_t exp = 0;

  [[nodiscard]] bool is_zero() const { return mant.is_zero(); }
  [[nodiscard]] int sign() const { return mant.sign(); }
};

// Exact decomposition of a finite float (any of float, double). Throws on NaN or Inf.
[[nodiscard]] dyadic to_dyadic(float x);
[[nodiscard]] dyadic to_dyadic(double x);

[[nodiscard]] dyadic operator+(const dyadic& a, const dyadic& b);
[[nodiscard]] dyadic operator-(const dyadic& a, const dyadic& b);
[[nodiscard]] dyadic operator*(const dyadic& a, const dyadic& b);
[[nodiscard]] dyadic operator-(const dyadic& a);
[[nodiscard]] bool operator==(const dyadic& a, const dyadic& b);
// The same value with an odd mantissa (or 0·2^0): keeps later alignments and products small.
[[nodiscard]] dyadic normalized(dyadic d);

[[nodiscard]] rational to_rational(const dyadic& d);
[[nodiscard]] rational to_rational(float x);   // exact; throws on NaN/Inf
[[nodiscard]] rational to_rational(double x);  // exact; throws on NaN/Inf

// `2^k` as an integer (k >= 0).
[[nodiscard]] big_int pow2(std::int64_t k);

// Number of bits of |v| (0 for v == 0).
[[nodiscard]] std::int64_t bit_length(const big_int& v);

// floor(sqrt(v)) for v >= 0 (throws std::domain_error for v < 0): Newton's iteration on
// integers from an overestimate taken from the double square root of v's leading bits, a few
// divisions instead of boost's bit-by-bit root.
[[nodiscard]] big_int isqrt(const big_int& v);

// What kind of value a golden holds.
enum class golden_class : std::uint8_t {
  finite,       // `value` is the correctly rounded exact value, `residual` is meaningful.
  overflow,     // the exact value is finite but rounds to ±Inf in its format.
  infinite,     // the mathematical value is ±Inf (e.g. eval mode with an infinite input).
  undefined,    // no mathematical value (0/0, 0·Inf, NaN input, convention-undefined); value NaN.
  unspecified,  // the convention does not say what this output is; any value is acceptable.
};

// One expected result: the exact value rounded once to nearest-even in a format F (float32 unless
// said otherwise; the value of every format fits a float exactly), plus where the exact value
// sits relative to that rounding. For `finite` and `overflow` values,
// `exact = value + residual · ulp(exact)`, where `ulp(exact) = 2^max(e − p + 1, emin − p + 1)`
// for `2^e <= |exact| < 2^(e+1)` (for float32 2^max(e−23, −149); no upper clamp; for `overflow`,
// `value` is read as ±2^(emax+1), 2^128 for float32, in that formula). |residual| <= 0.5 for
// `finite`. The residual is accurate to 2^-40 ulp while |residual| <= 2^12; an `overflow`
// residual can be larger (it is the distance to 2^(emax+1)), and is then accurate to 2^-52
// relative.
struct golden {
  double residual = 0.0;
  float value = 0.0F;
  std::int16_t ulp_exp = -149;  // ulp(exact) = 2^ulp_exp (finite and overflow classes)
  golden_class cls = golden_class::finite;
  format_id format = format_id::float32;  // F: what `value`, `ulp_exp` and overflow refer to

  [[nodiscard]] static golden undefined_value();
  [[nodiscard]] static golden infinity(int sign);
  [[nodiscard]] static golden unspecified_value();
};

// Correct rounding (nearest, ties to even) of the exact rational `num / den · 2^exp2` to format
// `f`, with the residual. `den` must be positive. An exact zero gives +0.
[[nodiscard]] golden round_to(const float_format& f, const big_int& num, const big_int& den,
                              std::int64_t exp2);
[[nodiscard]] golden round_to(const float_format& f, const dyadic& d);
[[nodiscard]] golden round_to(const float_format& f, const rational& q);
// The same for float32.
[[nodiscard]] golden round_to_float(const big_int& num, const big_int& den, std::int64_t exp2);
[[nodiscard]] golden round_to_float(const dyadic& d);
[[nodiscard]] golden round_to_float(const rational& q);

// The exponent of ulp(v) in format `f` for an exact non-zero `num/den·2^exp2`, in the sense
// above; `min_ulp_exponent()` for zero.
[[nodiscard]] std::int64_t ulp_exponent(const float_format& f, const big_int& num,
                                        const big_int& den, std::int64_t exp2);
// The same for float32.
[[nodiscard]] std::int64_t float_ulp_exponent(const big_int& num, const big_int& den,
                                              std::int64_t exp2);

// Conversions of exact values to the high-precision carrier.
[[nodiscard]] hp_float to_hp(const rational& q);
[[nodiscard]] hp_float to_hp(const dyadic& d);

// Decimal scientific notation with `digits` significant digits, e.g. "-1.2345e-07".
[[nodiscard]] std::string to_decimal(const hp_float& v, int digits = 45);

// Hexadecimal float as C's "%a" prints it for the float32 value, e.g. "0x1.8p+1", "-0x0p+0",
// "inf", "-inf", "nan". Bit-exact for every float32 except NaN payloads.
[[nodiscard]] std::string hex_float(float v);

}  // namespace bnoracle
