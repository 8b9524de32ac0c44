#include "bnoracle/superacc.hpp"

#include <bit>
#include <cmath>
#include <stdexcept>

namespace bnoracle {

namespace {

// limb += term + carry_in; returns the carry out (0 or 1).
std::uint64_t add_with_carry(std::uint64_t& limb, std::uint64_t term, std::uint64_t carry_in) {
  std::uint64_t s = 0;
  const bool c1 = __builtin_add_overflow(limb, term, &s);
  const bool c2 = __builtin_add_overflow(s, carry_in, &limb);
  return (c1 || c2) ? 1U : 0U;
}

}  // namespace

void exact_sum::add(double v) {
  const auto bits = std::bit_cast<std::uint64_t>(v);
  const auto biased = static_cast<int>((bits >> 52U) & 0x7FFU);
  if (biased == 0x7FF) throw std::domain_error("exact_sum: non-finite term");
  std::uint64_t m = bits & ((std::uint64_t{1} << 52U) - 1U);
  int e = -1074;
  if (biased != 0) {
    m |= std::uint64_t{1} << 52U;
    e = biased - 1075;
  }
  if (m == 0) return;
  // Drop trailing zero bits so that the position check below accepts every multiple of 2^-298.
  const int tz = std::countr_zero(m);
  m >>= static_cast<unsigned>(tz);
  e += tz;
  const int pos = e - k_lsb_exponent;
  if (pos < 0 || e + (64 - std::countl_zero(m)) > 256) {
    throw std::domain_error("exact_sum: term outside the range of float32 products");
  }
  add_at(static_cast<unsigned>(pos), m, (bits >> 63U) != 0U);
}

void exact_sum::add_at(unsigned bit, std::uint64_t magnitude, bool negative) {
  const unsigned limb = bit / 64U;
  const unsigned offset = bit % 64U;
  const std::uint64_t lo = magnitude << offset;
  const std::uint64_t hi = offset == 0U ? 0U : magnitude >> (64U - offset);
  if (!negative) {
    std::uint64_t carry = 0;
    for (unsigned i = limb; i < k_limbs; ++i) {
      const std::uint64_t term = i == limb ? lo : (i == limb + 1U ? hi : 0U);
      carry = add_with_carry(limbs_[i], term, carry);
      if (carry == 0 && i > limb) break;
    }
  } else {
    std::uint64_t borrow = 0;
    for (unsigned i = limb; i < k_limbs; ++i) {
      const std::uint64_t term = i == limb ? lo : (i == limb + 1U ? hi : 0U);
      const std::uint64_t old = limbs_[i];
      const std::uint64_t sub = term + borrow;
      // `sub` cannot overflow: at the first limb borrow is 0, and later terms are below 2^53.
      limbs_[i] = old - sub;
      borrow = old < sub ? 1U : 0U;
      if (borrow == 0 && i > limb) break;
    }
  }
}

void exact_sum::add(const exact_sum& other) {
  std::uint64_t carry = 0;
  for (unsigned i = 0; i < k_limbs; ++i) carry = add_with_carry(limbs_[i], other.limbs_[i], carry);
}

bool exact_sum::is_zero() const {
  for (const auto l : limbs_) {
    if (l != 0U) return false;
  }
  return true;
}

dyadic exact_sum::value() const {
  big_int v;
  for (int i = k_limbs - 1; i >= 0; --i) {
    v <<= 64U;
    v += limbs_[static_cast<unsigned>(i)];
  }
  if ((limbs_[k_limbs - 1] >> 63U) != 0U) v -= big_int(1) << (64U * k_limbs);
  return normalized(dyadic{v, k_lsb_exponent});
}

}  // namespace bnoracle
