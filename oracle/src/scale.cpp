#include "bnoracle/scale.hpp"

#include <boost/multiprecision/integer.hpp>

#include <bit>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace bnoracle {

namespace {

bool is_square(const big_int& v, big_int& root) {
  root = mp::sqrt(v);
  return root * root == v;
}

big_int shl(const big_int& v, std::int64_t k) {
  return v << static_cast<unsigned>(k);
}

// Exponent e with 2^e <= |v| < 2^(e+1), for a non-zero dyadic.
std::int64_t binade(const dyadic& v) {
  return bit_length(v.mant) - 1 + v.exp;
}

// Precision ladder for Ziv's loop. The first rung settles all but pathological cases: it leaves
// 2^-40 ulp of margin even when `a` and `c·h` cancel by 2^80.
constexpr std::int64_t k_first_bits = 160;
constexpr std::int64_t k_max_bits = std::int64_t{1} << 20;

bool same_float(float x, float y) {
  std::uint32_t bx = 0;
  std::uint32_t by = 0;
  std::memcpy(&bx, &x, sizeof bx);
  std::memcpy(&by, &y, sizeof by);
  return bx == by;
}

}  // namespace

sqrt_scale::sqrt_scale(const rational& k, const rational& w) {
  if (w.sign() <= 0) throw std::domain_error("sqrt_scale: w must be positive");
  sign_ = k.sign();
  const big_int& kn = mp::numerator(k);
  const big_int& kd = mp::denominator(k);
  f_ = kn * kn * mp::denominator(w);
  g_ = kd * kd * mp::numerator(w);
  if (sign_ == 0) {
    exact_ = rational(0);
    return;
  }
  const big_int common = mp::gcd(f_, g_);
  big_int rf;
  big_int rg;
  if (is_square(f_ / common, rf) && is_square(g_ / common, rg)) {
    exact_ = sign_ < 0 ? rational(-rf, rg) : rational(rf, rg);
  }
}

const sqrt_scale::enclosure& sqrt_scale::enclose(std::int64_t bits) const {
  for (const auto& [b, e] : cache_) {
    if (b >= bits) return e;
  }
  // |h|·2^t = sqrt(f·4^t / g) has about (bl(f) − bl(g))/2 + t bits before the point.
  const std::int64_t t = bits - (bit_length(f_) - bit_length(g_)) / 2 + 2;
  big_int num = f_;
  big_int den = g_;
  if (t >= 0) {
    num = shl(f_, 2 * t);
  } else {
    den = shl(g_, -2 * t);
  }
  // floor(sqrt(floor(num/den))) == floor(sqrt(num/den)) for positive integers.
  enclosure e;
  e.lo = mp::sqrt(num / den);
  e.exact = e.lo * e.lo * den == num;
  e.exp = -t;
  cache_.emplace_back(bits, std::move(e));
  return cache_.back().second;
}

hp_float sqrt_scale::to_hp() const {
  return hp_affine(dyadic{big_int(0), 0}, dyadic{big_int(1), 0}, *this);
}

namespace {

// Bounds of a + c·h from an enclosure of |h|: [lo, hi] as dyadics, and the width exponent bound.
struct bounds {
  dyadic lo;
  dyadic hi;
  std::int64_t width_bits_exp = 0;  // (hi − lo) < 2^width_bits_exp
  bool exact = false;
};

bounds affine_bounds(const dyadic& a, const dyadic& c, int h_sign, const sqrt_scale::enclosure& e) {
  const int s = c.sign() * h_sign;
  const big_int cm = mp::abs(c.mant);
  const std::int64_t ce = c.exp + e.exp;
  dyadic low_mag{cm * e.lo, ce};
  bounds b;
  b.exact = e.exact;
  if (e.exact) {
    b.lo = s > 0 ? a + low_mag : a - low_mag;
    b.hi = b.lo;
    b.width_bits_exp = std::numeric_limits<std::int64_t>::min() / 2;
    return b;
  }
  dyadic high_mag{cm * (e.lo + 1), ce};
  if (s > 0) {
    b.lo = a + low_mag;
    b.hi = a + high_mag;
  } else {
    b.lo = a - high_mag;
    b.hi = a - low_mag;
  }
  b.width_bits_exp = bit_length(cm) + ce;
  return b;
}

}  // namespace

golden round_affine(const dyadic& a, const dyadic& c, const sqrt_scale& h) {
  if (c.is_zero() || h.sign() == 0) return round_to_float(a);
  if (h.exact()) return round_to_float(to_rational(a) + to_rational(c) * *h.exact());
  for (std::int64_t bits = k_first_bits; bits <= k_max_bits; bits *= 2) {
    const bounds b = affine_bounds(a, c, h.sign(), h.enclose(bits));
    if (b.exact) return round_to_float(b.lo);
    if (b.lo.is_zero() || b.hi.is_zero() || b.lo.sign() != b.hi.sign()) continue;
    const golden rlo = round_to_float(b.lo);
    const golden rhi = round_to_float(b.hi);
    if (!same_float(rlo.value, rhi.value)) continue;
    // The residual must be accurate to 2^-40 ulp: the enclosure must be that narrow.
    constexpr std::int64_t fraction_bits = k_float32.precision - 1;
    constexpr std::int64_t min_ulp = k_float32.min_ulp_exponent();
    const std::int64_t ulp_lo = std::max<std::int64_t>(binade(b.lo) - fraction_bits, min_ulp);
    const std::int64_t ulp_hi = std::max<std::int64_t>(binade(b.hi) - fraction_bits, min_ulp);
    // Both ends in one binade, so that ulp(exact) is known (the value is irrational, so
    // refinement separates it from any power of two).
    if (ulp_lo != ulp_hi || b.width_bits_exp > ulp_lo - 40) continue;
    golden g = rlo;
    g.residual = 0.5 * (rlo.residual + rhi.residual);
    return g;
  }
  throw std::logic_error("round_affine: rounding not decided at 2^20 bits (internal error)");
}

hp_float hp_affine(const dyadic& a, const dyadic& c, const sqrt_scale& h) {
  if (c.is_zero() || h.sign() == 0) return to_hp(a);
  if (h.exact()) return to_hp(to_rational(a) + to_rational(c) * *h.exact());
  for (std::int64_t bits = k_first_bits * 2; bits <= k_max_bits; bits *= 2) {
    const bounds b = affine_bounds(a, c, h.sign(), h.enclose(bits));
    if (b.exact) return to_hp(b.lo);
    if (b.lo.is_zero() || b.hi.is_zero() || b.lo.sign() != b.hi.sign()) continue;
    // Relative width below 2^-262: then the midpoint is within 2^-263 relative of the value.
    if (b.width_bits_exp > std::min(binade(b.lo), binade(b.hi)) - 262) continue;
    const dyadic sum = b.lo + b.hi;
    return to_hp(dyadic{sum.mant, sum.exp - 1});
  }
  throw std::logic_error("hp_affine: value not isolated at 2^20 bits (internal error)");
}

}  // namespace bnoracle
