#include "bnoracle/format.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace bnoracle {

namespace {

constexpr std::array<const float_format*, 3> k_formats{&k_float32, &k_float16, &k_bfloat16};

// The constants every caller relies on, checked where they are defined.
static_assert(k_float32.u() == 0x1p-24 && k_float32.eta() == 0x1p-149);
static_assert(k_float32.min_ulp_exponent() == -149 && k_float32.overflow_exponent() == 128);
static_assert(k_float16.min_ulp_exponent() == -24 && k_float16.overflow_exponent() == 16);
static_assert(k_bfloat16.u() == 0x1p-8 && k_bfloat16.min_ulp_exponent() == -133);

}  // namespace

const float_format& format_of(format_id id) {
  for (const float_format* f : k_formats) {
    if (f->id == id) return *f;
  }
  return k_float32;
}

bool representable(const float_format& f, float v) {
  if (!std::isfinite(v) || v == 0.0F || f.id == format_id::float32) return true;
  int e = 0;
  (void)std::frexp(v, &e);  // 2^(e−1) <= |v| < 2^e
  if (e > f.overflow_exponent()) return false;
  // ulp of v's binade in f: 2^max(e − p, emin − p + 1); v must be an integer multiple of it.
  const int ulp_exp = std::max(e - f.precision, f.min_ulp_exponent());
  const double scaled = std::ldexp(static_cast<double>(v), -ulp_exp);
  return scaled == std::trunc(scaled);
}

std::optional<format_id> parse_format(std::string_view name) {
  for (const float_format* f : k_formats) {
    if (f->name == name) return f->id;
  }
  return std::nullopt;
}

float round_to_format(const float_format& f, float v, bool saturate) {
  if (!std::isfinite(v) || v == 0.0F || f.id == format_id::float32) return v;
  int e = 0;
  (void)std::frexp(v, &e);  // 2^(e−1) <= |v| < 2^e
  const int ulp_exp = std::max(e - f.precision, f.min_ulp_exponent());
  // v·2^-ulp_exp is exact in double; nearbyint rounds it to nearest even (the default mode).
  const double rounded =
      std::ldexp(std::nearbyint(std::ldexp(static_cast<double>(v), -ulp_exp)), ulp_exp);
  const double largest = std::ldexp(1.0 - std::ldexp(1.0, -f.precision), f.overflow_exponent());
  if (std::fabs(rounded) > largest) {
    const double limit = saturate ? largest : std::numeric_limits<double>::infinity();
    return static_cast<float>(std::copysign(limit, rounded));
  }
  return static_cast<float>(rounded);
}

namespace {

void require_half(const float_format& f) {
  if (f.id == format_id::float32) {
    throw std::invalid_argument("encode_half/decode_half: float32 is not a 16-bit format");
  }
}

}  // namespace

std::uint16_t encode_half(const float_format& f, float v) {
  require_half(f);
  if (!representable(f, v)) {
    throw std::invalid_argument("encode_half: " + std::to_string(v) + " is not a " +
                                std::string(f.name) + " value");
  }
  const auto u = std::bit_cast<std::uint32_t>(v);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000U);
  // bfloat16 is the upper half of a float32; a representable value has a zero lower half.
  if (f.id == format_id::bfloat16) {
    return std::isnan(v) ? static_cast<std::uint16_t>(sign | 0x7fc0U)
                         : static_cast<std::uint16_t>(u >> 16);
  }
  if (std::isnan(v)) return static_cast<std::uint16_t>(sign | 0x7e00U);
  if (std::isinf(v)) return static_cast<std::uint16_t>(sign | 0x7c00U);
  const double a = std::fabs(static_cast<double>(v));
  if (a == 0) return sign;
  int e = 0;
  (void)std::frexp(a, &e);  // 2^(e−1) <= a < 2^e: the value's exponent is e − 1
  const int exponent = e - 1;
  if (exponent < f.emin) {
    // Subnormal: a multiple of 2^(emin − p + 1).
    return static_cast<std::uint16_t>(
        sign | static_cast<std::uint16_t>(std::ldexp(a, -f.min_ulp_exponent())));
  }
  const int fraction_bits = f.precision - 1;
  const auto significand = static_cast<std::uint32_t>(std::ldexp(a, fraction_bits - exponent));
  const auto biased = static_cast<std::uint32_t>(exponent - f.emin + 1);
  return static_cast<std::uint16_t>(sign | (biased << fraction_bits) |
                                    (significand & ((1U << fraction_bits) - 1)));
}

float decode_half(const float_format& f, std::uint16_t bits) {
  require_half(f);
  if (f.id == format_id::bfloat16)
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  const bool negative = (bits & 0x8000U) != 0;
  const unsigned biased = (bits >> 10) & 0x1fU;
  const unsigned fraction = bits & 0x3ffU;
  float v = 0;
  if (biased == 0x1f) {
    v = fraction == 0 ? std::numeric_limits<float>::infinity()
                      : std::numeric_limits<float>::quiet_NaN();
  } else if (biased == 0) {
    v = std::ldexp(static_cast<float>(fraction), f.min_ulp_exponent());
  } else {
    v = std::ldexp(static_cast<float>(fraction | 0x400U),
                   static_cast<int>(biased) - 1 + f.emin - (f.precision - 1));
  }
  return negative ? -v : v;
}

}  // namespace bnoracle
