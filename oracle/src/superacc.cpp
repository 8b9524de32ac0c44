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

template <int Limbs, int Lsb>
void basic_exact_sum<Limbs, Lsb>::add(double v) {
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
  add_scaled(m, e - k_lsb_exponent, (bits >> 63U) != 0U);
}

template <int Limbs, int Lsb>
void basic_exact_sum<Limbs, Lsb>::add_scaled(std::uint64_t magnitude, std::int64_t bit,
                                             bool negative) {
  if (magnitude == 0) return;
  const int width = 64 - std::countl_zero(magnitude);
  // 86 bits above the range: 2^84 terms at its top sum without reaching the sign bit.
  if (bit < 0 || bit + width > 64 * Limbs - 86) {
    throw std::domain_error("exact_sum: term outside the accumulator's range");
  }
  add_at(static_cast<unsigned>(bit), magnitude, negative);
}

template <int Limbs, int Lsb>
void basic_exact_sum<Limbs, Lsb>::add_integer(std::uint64_t magnitude, std::int64_t exp2,
                                              bool negative) {
  if (magnitude == 0) return;
  const std::int64_t bit = exp2 - Lsb;
  const int width = 64 - std::countl_zero(magnitude);
  if (bit < 0 || bit + width > 64 * Limbs - 2) {
    throw std::domain_error("exact_sum: partial sum outside the accumulator's range");
  }
  add_at(static_cast<unsigned>(bit), magnitude, negative);
}

template <int Limbs, int Lsb>
void basic_exact_sum<Limbs, Lsb>::add_at(unsigned bit, std::uint64_t magnitude, bool negative) {
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
      // `sub` cannot overflow: at the first limb borrow is 0, and later terms are below 2^63.
      limbs_[i] = old - sub;
      borrow = old < sub ? 1U : 0U;
      if (borrow == 0 && i > limb) break;
    }
  }
}

template <int Limbs, int Lsb>
void basic_exact_sum<Limbs, Lsb>::add(const basic_exact_sum& other) {
  std::uint64_t carry = 0;
  for (unsigned i = 0; i < k_limbs; ++i) carry = add_with_carry(limbs_[i], other.limbs_[i], carry);
}

template <int Limbs, int Lsb>
bool basic_exact_sum<Limbs, Lsb>::is_zero() const {
  for (const auto l : limbs_) {
    if (l != 0U) return false;
  }
  return true;
}

template <int Limbs, int Lsb>
dyadic basic_exact_sum<Limbs, Lsb>::value() const {
  big_int v;
  for (int i = k_limbs - 1; i >= 0; --i) {
    v <<= 64U;
    v += limbs_[static_cast<unsigned>(i)];
  }
  if ((limbs_[k_limbs - 1] >> 63U) != 0U) v -= big_int(1) << (64U * k_limbs);
  return normalized(dyadic{v, k_lsb_exponent});
}

template class basic_exact_sum<10, -298>;
template class basic_exact_sum<15, -447>;

namespace {

// |significand| and exponent of a finite float: |v| = m·2^e with m < 2^24.
void split(float v, std::uint64_t& m, int& e) {
  const auto bits = std::bit_cast<std::uint32_t>(v);
  const auto biased = static_cast<int>((bits >> 23U) & 0xFFU);
  if (biased == 0xFF) throw std::domain_error("exact_sum3: non-finite factor");
  m = bits & 0x7FFFFFU;
  e = -149;
  if (biased != 0) {
    m |= 0x800000U;
    e = biased - 150;
  }
}

}  // namespace

void exact_sum3::add_product3(float a, float b, float c) {
  std::uint64_t ma = 0, mb = 0, mc = 0;
  int ea = 0, eb = 0, ec = 0;
  split(a, ma, ea);
  split(b, mb, eb);
  split(c, mc, ec);
  // ma·mb·mc < 2^72, added as two exact partial products: (p mod 2^32)·mc and
  // (p div 2^32)·mc·2^32 with p = ma·mb < 2^48.
  const std::uint64_t p = ma * mb;
  const bool negative = std::signbit(a) != (std::signbit(b) != std::signbit(c));
  const std::int64_t bit = static_cast<std::int64_t>(ea) + eb + ec - k_lsb_exponent;
  add_scaled((p & 0xFFFFFFFFU) * mc, bit, negative);
  add_scaled((p >> 32U) * mc, bit + 32, negative);
}

// ---- binned sums -------------------------------------------------------------------------------

binned_sum::binned_sum() = default;

void binned_sum::flush() {
  for (std::size_t b = 1; b < bins_.size(); ++b) {
    const std::int64_t v = bins_[b];
    if (v == 0) continue;
    const std::uint64_t magnitude =
        v < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    spill_.add_integer(magnitude, static_cast<std::int64_t>(b) - 150, v < 0);
    bins_[b] = 0;
  }
  count_ = 0;
}

dyadic binned_sum::value() const {
  binned_sum copy = *this;
  copy.flush();
  return copy.spill_.value();
}

binned_product_sum::binned_product_sum() = default;

dyadic binned_product_sum::value() const {
  exact_sum acc;
  __extension__ using ubin = unsigned __int128;
  for (std::size_t b = 2; b < bins_.size(); ++b) {
    const bin v = bins_[b];
    if (v == 0) continue;
    const ubin magnitude = v < 0 ? ubin{0} - static_cast<ubin>(v) : static_cast<ubin>(v);
    const auto exp2 = static_cast<std::int64_t>(b) - 300;
    acc.add_integer(static_cast<std::uint64_t>(magnitude), exp2, v < 0);
    acc.add_integer(static_cast<std::uint64_t>(magnitude >> 64U), exp2 + 64, v < 0);
  }
  return acc.value();
}

}  // namespace bnoracle
