// Certified evaluation of the only irrational quantities batch norm has.
//
// Every output of batch norm that involves a square root has the form `a + c·h` with a and c
// exact dyadic numbers and a per-channel scale `h = k / sqrt(w)`, k and w exact rationals, w > 0
// (for instance y = β + (x − μ)·γ/sqrt(σ² + ε)). `sqrt_scale` keeps h symbolically and encloses
// it, to any requested precision, between two consecutive multiples of a power of two computed by
// an integer square root — a rigorous bound with no floating-point error analysis to trust.
// `round_affine` then decides the float32 rounding of `a + c·h` from the enclosure (Ziv's
// strategy: refine until both ends of the enclosure round to the same float32), falling back to
// exact rational arithmetic when h is rational, where the value can sit exactly on a rounding
// boundary.
#pragma once

#include "bnoracle/exact.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>

namespace bnoracle {

class sqrt_scale {
 public:
  // h = k / sqrt(w). Throws std::domain_error unless w > 0.
  sqrt_scale(const rational& k, const rational& w);

  // |h| lies in [lo, lo + (exact ? 0 : 1)] · 2^exp.
  struct enclosure {
    big_int lo;
    bool exact = false;
    std::int64_t exp = 0;
  };

  [[nodiscard]] int sign() const { return sign_; }
  // h as a rational when k^2/w is the square of a rational (then h is exactly known).
  [[nodiscard]] const std::optional<rational>& exact() const { return exact_; }
  // An enclosure whose lower end has at least `bits` significant bits (relative width 2^-bits).
  // Results are cached per precision; a `sqrt_scale` is not safe for concurrent use.
  [[nodiscard]] const enclosure& enclose(std::int64_t bits) const;
  // h to the precision of hp_float.
  [[nodiscard]] hp_float to_hp() const;

  // h², exactly (a canonical rational: equal squares compare equal).
  [[nodiscard]] rational square() const;
  // h / other as a rational when it is one (h²/other² is the square of a rational), else empty.
  [[nodiscard]] std::optional<rational> ratio_to(const sqrt_scale& other) const;
  // q·h.
  [[nodiscard]] sqrt_scale scaled(const rational& q) const;

 private:
  int sign_ = 0;
  big_int f_;  // |h| = sqrt(f_ / g_) with f_, g_ positive integers
  big_int g_;
  std::optional<rational> exact_;
  mutable std::deque<std::pair<std::int64_t, enclosure>> cache_;  // deque: references stay valid
};

// The exact real `a + c·h` correctly rounded to format `f` (float32 by default; a float16 or
// bfloat16 value is carried in a float), with its residual in ulps of `f`.
[[nodiscard]] golden round_affine(const dyadic& a, const dyadic& c, const sqrt_scale& h,
                                  const float_format& f = k_float32);
// The exact real `a + c·h` to the precision of hp_float (relative error below 2^-250).
[[nodiscard]] hp_float hp_affine(const dyadic& a, const dyadic& c, const sqrt_scale& h);

// One term c·h of a sum of scaled square roots.
struct scaled_term {
  dyadic c;
  std::shared_ptr<const sqrt_scale> h;
};

// The correctly rounded float32 value of `a + Σ c_k·h_k`, with its residual, and the same sum to
// the precision of hp_float. This is the exact value of a parameter gradient that adds up
// statistic groups with different variances (dγ of layer, group and instance norm).
//
// The enclosures of the terms decide almost every sum at the first rungs. A sum can, however, be
// rational — terms that cancel exactly, or whose square roots are rational multiples of each
// other — and then lie exactly on a rounding boundary, where no enclosure decides. So when the
// first rungs fail, the terms are reduced: terms whose h are rational multiples of each other are
// merged into one (h_k/h_l rational is decided exactly), rational h are moved into a. After the
// reduction the remaining square roots are pairwise incommensurable irrationals, which are
// linearly independent over the rationals together with 1 (Besicovitch 1940): the sum is then
// either exactly a (no term left) or irrational, and refinement terminates.
// Rounded to format `f` (float32 by default).
[[nodiscard]] golden round_sum(const dyadic& a, std::span<const scaled_term> terms,
                               const float_format& f = k_float32);
[[nodiscard]] hp_float hp_sum(const dyadic& a, std::span<const scaled_term> terms);

}  // namespace bnoracle
