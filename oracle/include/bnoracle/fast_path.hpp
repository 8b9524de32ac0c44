// The reference's certified fast path: per-element outputs evaluated in double-word arithmetic
// with a rigorous bound on the absolute error, accepted only when the bound proves the correctly
// rounded result.
//
// Every per-element output of the normalizations is one of three expressions of a few exact
// per-group constants (docs/reference.md "The certified fast path"):
//   y  = β + γ·(x − μ)·r                 dst (training and inference)
//   dx = r·((g − a) − (x − μ)·k)          diff_src in backward training, g = γ·dy
//   dx = g·r                              diff_src in backward inference
// with μ the mean (0 for an op that does not centre), r = 1/sqrt(w), a = Σg/L and
// k = J/(L²·w). The constants are exact rationals (and one square root); each is converted once
// per group to a double word with an error bound (`approx`, below 2^-104 relative). The
// evaluators then propagate the bound through every operation (double_word.hpp gives each
// operation's) and `certify` accepts the rounding when the whole interval [y − E, y + E] lies
// strictly inside one rounding interval of the output format, away from powers of two (where
// ulp changes) and in the format's normal range, and narrow enough (2^-42 ulp) for the golden's
// residual contract (exact.hpp: accurate to 2^-40 ulp). Anything else — a value close to a
// rounding boundary, an exact zero, subnormal or overflowing results, constants beyond 2^±400 —
// is left to the exact path, which decides every case; the caller counts those fallbacks.
#pragma once

#include "bnoracle/double_word.hpp"
#include "bnoracle/exact.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>

namespace bnoracle::fast {

// A value known to lie within `err` of v.hi + v.lo.
struct approx {
  dw::dword v;
  double err = 0.0;
};

// num/den·2^exp2 (den > 0) as an approx of relative error below 2^-104 (what a double word
// holds); nullopt when its magnitude is outside [2^-400, 2^400] (0 is exact).
[[nodiscard]] std::optional<approx> approx_of(const big_int& num, const big_int& den,
                                              std::int64_t exp2);
[[nodiscard]] std::optional<approx> approx_of(const rational& q);
[[nodiscard]] std::optional<approx> approx_of(const dyadic& d);
// 1/sqrt(w) for w > 0, relative error below 2^-104; nullopt outside [2^-400, 2^400].
[[nodiscard]] std::optional<approx> approx_rsqrt(const rational& w);

// The golden of a value known to lie within `err` of y, when that decides its rounding to `f`
// (see above); nullopt otherwise. Inline: it runs once per element.
[[nodiscard]] inline std::optional<golden> certify(dw::dword y, double err, const float_format& f) {
  // Exponent and powers of two from the bits (this runs once per element): y.hi is a normal
  // double whenever it passes the range check, as are ulp and 1/ulp.
  const auto bits = std::bit_cast<std::uint64_t>(y.hi);
  const auto biased = static_cast<int>((bits >> 52U) & 0x7FFU);
  const int e = biased - 1023;
  if (biased == 0 || biased == 0x7FF || e < f.emin || e > f.emax || !(err <= 0x1p900)) {
    return std::nullopt;
  }
  const int ulp_exp = e - (f.precision - 1);
  const auto pow2 = [](int k) {
    return std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52U);
  };
  const double ulp = pow2(ulp_exp);
  // y.hi rounded to p bits, nearest with ties to even: y.hi/ulp lies in [2^(p−1), 2^p) and
  // adding and subtracting 1.5·2^52 rounds it to an integer in the current (nearest) mode.
  constexpr double k_round = 0x1.8p52;
  const double t = y.hi * pow2(-ulp_exp);
  const double m = (t + k_round) - k_round;
  const double am = std::fabs(m);
  // A power of two (including a rounding up to the next binade): ulp(exact) is not decided.
  if (am == pow2(f.precision - 1) || am == pow2(f.precision)) return std::nullopt;
  const double value = m * ulp;
  // y.hi and value lie in one binade, so y.hi − value is exact (Sterbenz); adding lo rounds once.
  const double rho = ((y.hi - value) + y.lo) * pow2(-ulp_exp);
  const double e_rho = err * pow2(-ulp_exp);
  if (!(e_rho <= 0x1p-42) || !(std::fabs(rho) + e_rho + 0x1p-50 < 0.5)) return std::nullopt;
  golden g;
  g.value = static_cast<float>(value);
  g.residual = rho;
  g.ulp_exp = static_cast<std::int16_t>(ulp_exp);
  g.cls = golden_class::finite;
  g.format = f.id;
  return g;
}

// The margin every accumulated bound is multiplied by: the bounds themselves are computed in
// double and each of their few dozen roundings can lose 2^-53 relative.
inline constexpr double k_bound_margin = 1.0 + 0x1p-40;

// y = β + γ·(x − μ)·r, γ exact as a double word (1 + w with the weight offset).
[[nodiscard]] inline std::optional<golden> normalized_affine(float x, const approx& mu,
                                                             dw::dword gamma, const approx& r,
                                                             float beta, const float_format& f) {
  using dw::magnitude;
  constexpr double c = dw::k_op_error;
  constexpr double eta = dw::k_op_underflow;
  const dw::dword d = dw::add(dw::neg(mu.v), static_cast<double>(x));
  const double md = magnitude(d);
  const double ed = mu.err + c * md + eta;
  const dw::dword p = dw::mul(d, gamma);
  const double mp = magnitude(p);
  const double ep = magnitude(gamma) * ed + c * mp + eta;
  const dw::dword q = dw::mul(p, r.v);
  const double mq = magnitude(q);
  const double eq = ep * (magnitude(r.v) + r.err) + (mp + ep) * r.err + c * mq + eta;
  const dw::dword y = dw::add(q, static_cast<double>(beta));
  const double ey = eq + c * magnitude(y) + eta;
  return certify(y, ey * k_bound_margin, f);
}

// dx = r·((g − a) − (x − μ)·k), g = γ·dy exact as a double word.
[[nodiscard]] inline std::optional<golden> coupled_gradient(dw::dword g, float x, const approx& a,
                                                            const approx& mu, const approx& k,
                                                            const approx& r,
                                                            const float_format& f) {
  using dw::magnitude;
  constexpr double c = dw::k_op_error;
  constexpr double eta = dw::k_op_underflow;
  const dw::dword t1 = dw::add(g, dw::neg(a.v));
  const double e1 = a.err + c * magnitude(t1) + eta;
  const dw::dword d = dw::add(dw::neg(mu.v), static_cast<double>(x));
  const double md = magnitude(d);
  const double ed = mu.err + c * md + eta;
  const dw::dword t3 = dw::mul(d, k.v);
  const double e3 = ed * (magnitude(k.v) + k.err) + md * k.err + c * magnitude(t3) + eta;
  const dw::dword t4 = dw::add(t1, dw::neg(t3));
  const double m4 = magnitude(t4);
  const double e4 = e1 + e3 + c * m4 + eta;
  const dw::dword dx = dw::mul(t4, r.v);
  const double e = e4 * (magnitude(r.v) + r.err) + m4 * r.err + c * magnitude(dx) + eta;
  return certify(dx, e * k_bound_margin, f);
}

// dx = g·r, g exact as a double word.
[[nodiscard]] inline std::optional<golden> scaled(dw::dword g, const approx& r,
                                                  const float_format& f) {
  const dw::dword dx = dw::mul(g, r.v);
  const double e =
      dw::magnitude(g) * r.err + dw::k_op_error * dw::magnitude(dx) + dw::k_op_underflow;
  return certify(dx, e * k_bound_margin, f);
}

// γ as applied, exactly: w, or 1 + w with the weight offset (Knuth's TwoSum is exact).
[[nodiscard]] inline dw::dword applied_gamma(float w, bool offset) {
  return offset ? dw::two_sum(1.0, static_cast<double>(w)) : dw::dword{static_cast<double>(w), 0.0};
}

// g = γ·dy exactly: a product of two floats is exact in double; with the weight offset
// (1 + w)·dy = dy + w·dy, a TwoSum of two exact doubles.
[[nodiscard]] inline dw::dword gradient_term(float w, bool offset, float dy) {
  const double wdy = static_cast<double>(w) * static_cast<double>(dy);
  return offset ? dw::two_sum(static_cast<double>(dy), wdy) : dw::dword{wdy, 0.0};
}

}  // namespace bnoracle::fast
