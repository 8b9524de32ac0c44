#include "bnoracle/scale.hpp"

#include <boost/multiprecision/integer.hpp>

#include <bit>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <vector>

namespace bnoracle {

namespace {

bool is_square(const big_int& v, big_int& root) {
  root = isqrt(v);
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
  e.lo = isqrt(num / den);
  e.exact = e.lo * e.lo * den == num;
  e.exp = -t;
  cache_.emplace_back(bits, std::move(e));
  return cache_.back().second;
}

hp_float sqrt_scale::to_hp() const {
  return hp_affine(dyadic{big_int(0), 0}, dyadic{big_int(1), 0}, *this);
}

rational sqrt_scale::square() const {
  return rational(f_, g_);
}

std::optional<rational> sqrt_scale::ratio_to(const sqrt_scale& other) const {
  if (sign_ == 0) return rational(0);
  if (other.sign_ == 0) return std::nullopt;
  const rational q2(f_ * other.g_, g_ * other.f_);
  big_int rn;
  big_int rd;
  if (!is_square(mp::numerator(q2), rn) || !is_square(mp::denominator(q2), rd)) {
    return std::nullopt;
  }
  const rational q(rn, rd);
  return sign_ * other.sign_ < 0 ? -q : q;
}

sqrt_scale sqrt_scale::scaled(const rational& q) const {
  if (sign_ == 0 || q.is_zero()) return sqrt_scale(rational(0), rational(1));
  // q·h = (±q)·sqrt(f/g) = k/sqrt(w) with k = ±q and w = g/f.
  return sqrt_scale(sign_ < 0 ? rational(-q) : q, rational(g_, f_));
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

golden round_affine(const dyadic& a, const dyadic& c, const sqrt_scale& h, const float_format& f) {
  if (c.is_zero() || h.sign() == 0) return round_to(f, a);
  if (h.exact()) return round_to(f, to_rational(a) + to_rational(c) * *h.exact());
  for (std::int64_t bits = k_first_bits; bits <= k_max_bits; bits *= 2) {
    const bounds b = affine_bounds(a, c, h.sign(), h.enclose(bits));
    if (b.exact) return round_to(f, b.lo);
    if (b.lo.is_zero() || b.hi.is_zero() || b.lo.sign() != b.hi.sign()) continue;
    const golden rlo = round_to(f, b.lo);
    const golden rhi = round_to(f, b.hi);
    if (!same_float(rlo.value, rhi.value)) continue;
    // The residual must be accurate to 2^-40 ulp: the enclosure must be that narrow.
    const std::int64_t fraction_bits = f.precision - 1;
    const std::int64_t min_ulp = f.min_ulp_exponent();
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

// ---- sums of scaled square roots ------------------------------------------------------------

namespace {

// [lo, hi] ∋ Σ c_k·h_k from enclosures of relative width 2^-bits.
struct term_bounds {
  dyadic lo;
  dyadic hi;
  bool exact = true;
};

term_bounds enclose_terms(std::span<const scaled_term> terms, std::int64_t bits) {
  term_bounds t{dyadic{big_int(0), 0}, dyadic{big_int(0), 0}, true};
  const dyadic zero{big_int(0), 0};
  for (const scaled_term& term : terms) {
    const bounds b = affine_bounds(zero, term.c, term.h->sign(), term.h->enclose(bits));
    t.lo = t.lo + b.lo;
    t.hi = t.hi + b.hi;
    t.exact = t.exact && b.exact;
  }
  return t;
}

// hi − lo < 2^result.
std::int64_t width_exponent(const dyadic& lo, const dyadic& hi) {
  const dyadic w = hi - lo;
  if (w.is_zero()) return std::numeric_limits<std::int64_t>::min() / 2;
  return bit_length(w.mant) + w.exp;
}

// The rounding of a value known to lie in [lo, hi] (rounded to rlo and rhi), when the interval
// decides it: one float, one binade, a width below 2^-40 ulp for the residual.
std::optional<golden> decide(const golden& rlo, int sign_lo, const golden& rhi, int sign_hi,
                             std::int64_t width_exp) {
  if (sign_lo == 0 || sign_hi == 0 || sign_lo != sign_hi) return std::nullopt;
  if (!same_float(rlo.value, rhi.value) || rlo.ulp_exp != rhi.ulp_exp) return std::nullopt;
  if (width_exp > rlo.ulp_exp - 40) return std::nullopt;
  golden g = rlo;
  g.residual = 0.5 * (rlo.residual + rhi.residual);
  return g;
}

// Rungs tried on the terms as given before the reduction.
constexpr std::int64_t k_sum_fast_rungs = 2;

// The terms with their square roots made pairwise incommensurable, and a with the rational ones.
struct reduced_sum {
  rational a;
  std::vector<scaled_term> terms;  // c = 1: the coefficient lives in h
};

reduced_sum reduce(const dyadic& a, std::span<const scaled_term> terms) {
  reduced_sum r{to_rational(a), {}};
  struct cls {
    const sqrt_scale* rep;
    rational coeff;
  };
  std::vector<cls> classes;
  // h² → the class of the first term with that square, h = q·rep for that term, and its sign
  // (a later term with the same square is ±q·rep, by its own sign).
  struct known {
    std::size_t cls;
    rational q;
    int sign;
  };
  std::map<rational, known> by_square;
  for (const scaled_term& t : terms) {
    if (t.c.is_zero() || t.h->sign() == 0) continue;
    const rational c = to_rational(t.c);
    if (t.h->exact()) {
      r.a += c * *t.h->exact();
      continue;
    }
    const rational sq = t.h->square();
    const auto found = by_square.find(sq);
    if (found != by_square.end()) {
      const known& k = found->second;
      classes[k.cls].coeff += t.h->sign() == k.sign ? rational(c * k.q) : rational(-c * k.q);
      continue;
    }
    bool merged = false;
    for (std::size_t i = 0; i < classes.size() && !merged; ++i) {
      if (const std::optional<rational> q = t.h->ratio_to(*classes[i].rep)) {
        classes[i].coeff += c * *q;
        by_square.emplace(sq, known{i, *q, t.h->sign()});
        merged = true;
      }
    }
    if (!merged) {
      by_square.emplace(sq, known{classes.size(), rational(1), t.h->sign()});
      classes.push_back({t.h.get(), c});
    }
  }
  for (const cls& k : classes) {
    if (k.coeff.is_zero()) continue;
    r.terms.push_back(
        {dyadic{big_int(1), 0}, std::make_shared<const sqrt_scale>(k.rep->scaled(k.coeff))});
  }
  return r;
}

int sign_of(const rational& q) {
  return q.sign();
}

}  // namespace

golden round_sum(const dyadic& a, std::span<const scaled_term> terms, const float_format& f) {
  bool any_exact = false;
  bool any_term = false;
  for (const scaled_term& t : terms) {
    if (t.c.is_zero() || t.h->sign() == 0) continue;
    any_term = true;
    any_exact = any_exact || t.h->exact().has_value();
  }
  if (!any_term) return round_to(f, a);
  if (!any_exact) {
    std::int64_t bits = k_first_bits;
    for (std::int64_t rung = 0; rung < k_sum_fast_rungs; ++rung, bits *= 2) {
      const term_bounds t = enclose_terms(terms, bits);
      const dyadic lo = a + t.lo;
      const dyadic hi = a + t.hi;
      if (const auto g = decide(round_to(f, lo), lo.sign(), round_to(f, hi), hi.sign(),
                                width_exponent(lo, hi))) {
        return *g;
      }
    }
  }
  const reduced_sum r = reduce(a, terms);
  if (r.terms.empty()) return round_to(f, r.a);
  for (std::int64_t bits = k_first_bits; bits <= k_max_bits; bits *= 2) {
    const term_bounds t = enclose_terms(r.terms, bits);
    const rational lo = r.a + to_rational(t.lo);
    const rational hi = r.a + to_rational(t.hi);
    if (const auto g = decide(round_to(f, lo), sign_of(lo), round_to(f, hi), sign_of(hi),
                              width_exponent(t.lo, t.hi))) {
      return *g;
    }
  }
  throw std::logic_error("round_sum: rounding not decided at 2^20 bits (internal error)");
}

namespace {

// The midpoint of [lo, hi] when its relative width is below 2^-262 (the midpoint is then within
// 2^-263 relative of any value inside).
std::optional<hp_float> isolated(const rational& lo, const rational& hi, std::int64_t width_exp) {
  if (sign_of(lo) == 0 || sign_of(hi) == 0 || sign_of(lo) != sign_of(hi)) return std::nullopt;
  int e = 0;
  (void)mp::frexp(to_hp(lo), &e);  // |lo| >= 2^(e - 1), to within hp_float's rounding
  if (width_exp > e - 2 - 262) return std::nullopt;
  return to_hp(rational((lo + hi) / 2));
}

}  // namespace

hp_float hp_sum(const dyadic& a, std::span<const scaled_term> terms) {
  bool any_exact = false;
  for (const scaled_term& t : terms) any_exact = any_exact || t.h->exact().has_value();
  if (!any_exact) {
    std::int64_t bits = k_first_bits * 2;
    for (std::int64_t rung = 0; rung < k_sum_fast_rungs; ++rung, bits *= 2) {
      const term_bounds t = enclose_terms(terms, bits);
      const rational lo = to_rational(a + t.lo);
      const rational hi = to_rational(a + t.hi);
      if (const auto v = isolated(lo, hi, width_exponent(t.lo, t.hi))) return *v;
    }
  }
  const reduced_sum r = reduce(a, terms);
  if (r.terms.empty()) return to_hp(r.a);
  for (std::int64_t bits = k_first_bits * 2; bits <= k_max_bits; bits *= 2) {
    const term_bounds t = enclose_terms(r.terms, bits);
    const rational lo = r.a + to_rational(t.lo);
    const rational hi = r.a + to_rational(t.hi);
    if (const auto v = isolated(lo, hi, width_exponent(t.lo, t.hi))) return *v;
  }
  throw std::logic_error("hp_sum: value not isolated at 2^20 bits (internal error)");
}

}  // namespace bnoracle
