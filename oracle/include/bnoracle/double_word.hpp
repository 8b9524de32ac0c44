// Double-word ("double-double") arithmetic: a value carried as the unevaluated sum hi + lo of two
// doubles, about 106 bits of precision, at the cost of a few double operations.
//
// The reference's certified fast path (reference.cpp, docs/reference.md "The certified fast
// path") evaluates each per-element output with these operations and a rigorous bound on the
// absolute error, and accepts the result only when the bound proves the rounding to the output
// format. The relative error bounds of the building blocks are those proved by Joldes, Muller and
// Popescu, "Tight and rigorous error bounds for basic building blocks of double-word arithmetic",
// ACM TOMS 44(2), 2017, for round-to-nearest without underflow or overflow:
//   add(dword, double)  (their Algorithm 4, DWPlusFP)          2u²
//   add(dword, dword)   (Algorithm 6, AccurateDWPlusDW)        3u² + 13u³
//   mul(dword, double)  (Algorithm 7, DWTimesFP1)              1.5u² + 4u³
//   mul(dword, dword)   (Algorithm 10, DWTimesDW1)             7u²
// with u = 2^-53. `k_op_error` (8u²) bounds each of them. Underflow adds at most a few units of
// 2^-1074 per operation; `k_op_underflow` (2^-1000) bounds that generously. Callers keep every
// magnitude below 2^900, so Dekker's splitting (which multiplies by 2^27 + 1) cannot overflow.
//
// The algorithms need every operation rounded once: no fused multiply-add may be formed from
// `a * b + c`. Translation units that include this header are compiled with
// -ffp-contract=off (oracle/CMakeLists.txt); two_prod uses Dekker's splitting, not std::fma,
// which would be a slow library call on a CPU without an FMA unit.
#pragma once

#include <cmath>

namespace bnoracle::dw {

struct dword {
  double hi = 0.0;
  double lo = 0.0;
};

inline constexpr double k_op_error = 0x1p-103;       // 8u², u = 2^-53
inline constexpr double k_op_underflow = 0x1p-1000;  // absolute, per operation

// s + e = a + b exactly (Knuth's TwoSum).
[[nodiscard]] inline dword two_sum(double a, double b) {
  const double s = a + b;
  const double bb = s - a;
  const double e = (a - (s - bb)) + (b - bb);
  return {s, e};
}

// s + e = a + b exactly, for |a| >= |b| or a = 0 (Dekker's Fast2Sum).
[[nodiscard]] inline dword fast_two_sum(double a, double b) {
  const double s = a + b;
  const double e = b - (s - a);
  return {s, e};
}

// a = hi + lo with hi and lo of 26 bits at most (Veltkamp's splitting).
[[nodiscard]] inline dword split(double a) {
  constexpr double c = 134217729.0;  // 2^27 + 1
  const double t = c * a;
  const double hi = t - (t - a);
  return {hi, a - hi};
}

// p + e = a·b exactly (Dekker's TwoProd), without underflow.
[[nodiscard]] inline dword two_prod(double a, double b) {
  const double p = a * b;
  const dword as = split(a);
  const dword bs = split(b);
  const double e = (((as.hi * bs.hi - p) + as.hi * bs.lo) + as.lo * bs.hi) + as.lo * bs.lo;
  return {p, e};
}

[[nodiscard]] inline dword add(dword x, double y) {
  const dword s = two_sum(x.hi, y);
  const double v = x.lo + s.lo;
  return fast_two_sum(s.hi, v);
}

[[nodiscard]] inline dword add(dword x, dword y) {
  const dword s = two_sum(x.hi, y.hi);
  const dword t = two_sum(x.lo, y.lo);
  const double c = s.lo + t.hi;
  const dword v = fast_two_sum(s.hi, c);
  const double w = t.lo + v.lo;
  return fast_two_sum(v.hi, w);
}

[[nodiscard]] inline dword neg(dword x) {
  return {-x.hi, -x.lo};
}

[[nodiscard]] inline dword mul(dword x, double y) {
  const dword c = two_prod(x.hi, y);
  const double cl2 = x.lo * y;
  const dword t = fast_two_sum(c.hi, cl2);
  const double tl2 = t.lo + c.lo;
  return fast_two_sum(t.hi, tl2);
}

[[nodiscard]] inline dword mul(dword x, dword y) {
  const dword c = two_prod(x.hi, y.hi);
  const double tl = x.hi * y.lo;
  const double cl2 = tl + x.lo * y.hi;
  const double cl3 = c.lo + cl2;
  return fast_two_sum(c.hi, cl3);
}

// An upper bound of |x.hi + x.lo| (|lo| <= ulp(hi)/2, so |hi|·(1 + 2^-52) covers it).
[[nodiscard]] inline double magnitude(dword x) {
  return std::fabs(x.hi) * (1.0 + 0x1p-52);
}

}  // namespace bnoracle::dw
