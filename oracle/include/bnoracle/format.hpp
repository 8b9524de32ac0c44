// Binary floating-point formats: what the reference rounds its outputs to and the error model
// measures in. A format is its precision and exponent range; everything else derives from them:
// the unit roundoff u = 2^-p, the spacing of subnormals η = 2^(emin − p + 1) (the absolute error
// of a rounding that underflows), the exponent of ulp(x), and where overflow starts (2^(emax+1)).
// Every float16 and bfloat16 value is a float32 value, so one `float` carries a value of any of
// the three formats exactly.
#pragma once

#include <bit>
#include <cassert>
#include <cstdint>
#include <optional>
#include <string_view>

namespace bnoracle {

enum class format_id : std::uint8_t { float32, float16, bfloat16 };

struct float_format {
  format_id id = format_id::float32;
  std::string_view name;
  int precision = 24;  // p: significand bits, the implicit one included
  int emin = -126;     // exponent of the smallest normal number
  int emax = 127;      // exponent of the largest finite binade

  // The unit roundoff of round to nearest, 2^-p.
  [[nodiscard]] constexpr double u() const { return pow2(-precision); }
  // The spacing of subnormals, 2^(emin − p + 1): the absolute error of a rounding that underflows.
  [[nodiscard]] constexpr double eta() const { return pow2(min_ulp_exponent()); }
  // The exponent of ulp(x) for |x| below 2^emin (and its floor above): −149 for float32.
  [[nodiscard]] constexpr int min_ulp_exponent() const { return emin - precision + 1; }
  // Values of magnitude 2^(emax+1) and above round to infinity (rounding to nearest: from
  // 2^(emax+1)·(1 − 2^-(p+1)) on, as the rounding itself decides).
  [[nodiscard]] constexpr int overflow_exponent() const { return emax + 1; }

 private:
  [[nodiscard]] static constexpr double pow2(int k) {
    double v = 1.0;
    for (; k > 0; --k) v *= 2.0;
    for (; k < 0; ++k) v *= 0.5;
    return v;
  }
};

// 2^k from its bits, for k in double's normal range [−1022, 1023]: what std::ldexp(1.0, k) gives,
// without a library call (the judge takes one or two per element).
[[nodiscard]] inline double exact_pow2(int k) {
  assert(k >= -1022 && k <= 1023);
  return std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52U);
}

inline constexpr float_format k_float32{format_id::float32, "float32", 24, -126, 127};
inline constexpr float_format k_float16{format_id::float16, "float16", 11, -14, 15};
inline constexpr float_format k_bfloat16{format_id::bfloat16, "bfloat16", 8, -126, 127};

[[nodiscard]] const float_format& format_of(format_id id);

// True when `v` is a value of format `f`: NaN, ±Inf, or a finite value with at most p significant
// bits, no finer than the format's smallest subnormal and below its overflow threshold. Every
// float is a float32 value.
[[nodiscard]] bool representable(const float_format& f, float v);
[[nodiscard]] std::optional<format_id> parse_format(std::string_view name);

// `v` rounded to nearest (ties to even) in format `f`. A finite value beyond the format's range
// becomes ±Inf, or with `saturate` the largest finite value of its sign; NaN and ±Inf stay.
[[nodiscard]] float round_to_format(const float_format& f, float v, bool saturate = false);

// The 16 bits of a float16 or bfloat16 value `v` (which must be representable in `f`; a NaN
// becomes the format's quiet NaN of the same sign), and the value of 16 bits of format `f`,
// exactly. Throws std::invalid_argument for a value the format does not hold or for float32.
[[nodiscard]] std::uint16_t encode_half(const float_format& f, float v);
[[nodiscard]] float decode_half(const float_format& f, std::uint16_t bits);

}  // namespace bnoracle
