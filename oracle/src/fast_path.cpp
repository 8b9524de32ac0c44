#include "bnoracle/fast_path.hpp"

#include <cmath>
#include <limits>

namespace bnoracle::fast {

namespace {

// GCC's and Clang's 128-bit integers (`__extension__` keeps -pedantic quiet).
__extension__ using u128 = unsigned __int128;
__extension__ using i128 = __int128;

constexpr std::int64_t k_range = 400;  // constants within 2^±400 (fast_path.hpp)

u128 to_u128(const big_int& q) {
  const big_int mask = (big_int(1) << 64) - 1;
  const auto lo = static_cast<std::uint64_t>(big_int(q & mask));
  const auto hi = static_cast<std::uint64_t>(big_int(q >> 64));
  return (static_cast<u128>(hi) << 64) | lo;
}

// The approx of (q + [0, slack))·2^exp2 for an integer 0 <= q < 2^127: hi is q rounded to a
// double, lo the remainder rounded, err what lo misses plus the slack, all scaled exactly.
approx from_integer(const big_int& q, std::int64_t exp2, bool negative, double slack) {
  const u128 v = to_u128(q);
  const auto hi = static_cast<double>(v);  // correctly rounded (libgcc's __floatuntidf)
  const i128 rem = static_cast<i128>(v) - static_cast<i128>(static_cast<u128>(hi));
  const auto lo = static_cast<double>(rem);
  const i128 miss = rem - static_cast<i128>(lo);
  const double err_units = static_cast<double>(miss < 0 ? -miss : miss) + slack;
  const int e = static_cast<int>(exp2);
  approx a;
  a.v = {std::ldexp(negative ? -hi : hi, e), std::ldexp(negative ? -lo : lo, e)};
  // err_units is at most 2^21 + slack, exactly held or rounded up by one part in 2^52 at most.
  a.err = std::ldexp(err_units, e) * (1.0 + 0x1p-50);
  return a;
}

}  // namespace

std::optional<approx> approx_of(const big_int& num, const big_int& den, std::int64_t exp2) {
  if (num.is_zero()) return approx{};
  // num/den lies in [2^(s−1), 2^(s+1)); scaled by 2^k its integer part has 124 to 126 bits.
  const std::int64_t s = bit_length(num) - bit_length(den);
  if (s + exp2 > k_range || s + exp2 < -k_range) return std::nullopt;
  const std::int64_t k = 125 - s;
  const big_int n = mp::abs(num);
  const big_int q = k >= 0 ? big_int((n << static_cast<unsigned>(k)) / den)
                           : big_int(n / (den << static_cast<unsigned>(-k)));
  // The truncated quotient misses less than one unit of 2^(exp2 − k).
  return from_integer(q, exp2 - k, num.sign() < 0, 1.0);
}

std::optional<approx> approx_of(const rational& q) {
  return approx_of(mp::numerator(q), mp::denominator(q), 0);
}

std::optional<approx> approx_of(const dyadic& d) {
  return approx_of(d.mant, big_int(1), d.exp);
}

std::optional<approx> approx_rsqrt(const rational& w) {
  const big_int& wn = mp::numerator(w);
  const big_int& wd = mp::denominator(w);
  if (wn.sign() <= 0) return std::nullopt;
  // 1/sqrt(w) = sqrt(wd/wn) ≈ 2^(b/2) with b = bl(wd) − bl(wn); scaled by 2^t it has about
  // 125 bits: t = 125 − b/2.
  const std::int64_t b = bit_length(wd) - bit_length(wn);
  if (b / 2 > k_range || b / 2 < -k_range) return std::nullopt;
  const std::int64_t t = 125 - b / 2 - 1;
  // sqrt(wd·4^t/wn) lies in [isqrt(m), isqrt(m) + 1) with m = floor(wd·4^t/wn) (t may be
  // negative: then m = floor(wd/(wn·4^−t))).
  const big_int m = t >= 0 ? big_int((wd << static_cast<unsigned>(2 * t)) / wn)
                           : big_int(wd / (wn << static_cast<unsigned>(-2 * t)));
  const big_int root = isqrt(m);
  if (bit_length(root) > 127) return std::nullopt;
  return from_integer(root, -t, false, 1.0);
}

}  // namespace bnoracle::fast
