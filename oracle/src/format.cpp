#include "bnoracle/format.hpp"

#include <algorithm>
#include <array>
#include <cmath>

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

}  // namespace bnoracle
