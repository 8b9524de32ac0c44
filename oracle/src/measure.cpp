#include "bnoracle/measure.hpp"

#include "bnoracle/format.hpp"

#include <bit>
#include <cmath>
#include <limits>

namespace bnoracle {

std::int64_t ulp_exponent(const golden& g) {
  return g.ulp_exp;
}

double error_ulps(float got, const golden& expected) {
  const double inf = std::numeric_limits<double>::infinity();
  switch (expected.cls) {
    case golden_class::unspecified:
      return 0.0;
    case golden_class::undefined:
      return std::isfinite(got) ? inf : 0.0;
    case golden_class::infinite:
      return bit_equal(got, expected.value) ? 0.0 : inf;
    case golden_class::finite:
    case golden_class::overflow:
      break;
  }
  if (std::isnan(got)) return inf;
  // An overflowing golden is measured against ±2^(emax+1) of its format (exact.hpp, golden).
  const double overflow = exact_pow2(format_of(expected.format).overflow_exponent());
  double reference = static_cast<double>(expected.value);
  if (expected.cls == golden_class::overflow) reference = expected.value < 0 ? -overflow : overflow;
  double g = static_cast<double>(got);
  if (std::isinf(got)) {
    // The infinity of the right sign is the correctly rounded result of an overflowing value,
    // however far beyond the range the exact value lies.
    if (expected.cls != golden_class::overflow || (got < 0) != (expected.value < 0)) return inf;
    return 0.0;
  }
  const int k = static_cast<int>(ulp_exponent(expected));
  // got − reference is exact in double for float32 operands of nearby magnitude; for distant
  // ones the relative rounding of double is far below any error worth reporting. Scaling it by
  // 2^−k is exact: a golden's ulp exponent lies well inside double's exponent range (below 2^±900
  // even for the overflow class of an unbounded r), and so does the product.
  return (g - reference) * exact_pow2(-k) - expected.residual;
}

bool bit_equal(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

bool same_value(float a, float b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

}  // namespace bnoracle
