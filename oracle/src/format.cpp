#include "bnoracle/format.hpp"

#include <array>

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

std::optional<format_id> parse_format(std::string_view name) {
  for (const float_format* f : k_formats) {
    if (f->name == name) return f->id;
  }
  return std::nullopt;
}

}  // namespace bnoracle
