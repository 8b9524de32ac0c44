// Measuring a float32 result against a golden.
//
// Errors are in units of ulp(exact) — the spacing of float32 numbers in the binade of the exact
// value (Goldberg's definition, 2^-149 below the normal range) — and fractional: a correctly
// rounded result has |error| <= 0.5. Non-finite results follow explicit rules (see `error_ulps`).
// `bit_equal` compares encodings, so +0 and −0 differ; `same_value` treats them alike.
#pragma once

#include "bnoracle/exact.hpp"

#include <cstdint>

namespace bnoracle {

// Exponent k such that ulp(exact) = 2^k, as the golden records it.
[[nodiscard]] std::int64_t ulp_exponent(const golden& g);

// The signed error (got − exact)/ulp(exact). Rules for special values:
// - expected `finite`/`overflow`: a NaN result, or an infinite one where the golden is finite,
//   is an infinite error (+Inf); the infinity of the golden's sign where it overflowed is no
//   error (it is the correctly rounded result), a finite result is measured against ±2^128;
// - expected `infinite`: 0 for the same infinity, +Inf otherwise;
// - expected `undefined`: 0 for any non-finite result (NaN or ±Inf), +Inf for a finite one — a
//   finite number where the mathematics has none means the kernel lost the poison;
// - expected `unspecified`: 0.
[[nodiscard]] double error_ulps(float got, const golden& expected);

// Encodings equal (tells −0 from +0; NaNs equal only with the same payload and sign).
[[nodiscard]] bool bit_equal(float a, float b);
// Numerically equal, with NaN equal to NaN and +0 equal to −0.
[[nodiscard]] bool same_value(float a, float b);

}  // namespace bnoracle
