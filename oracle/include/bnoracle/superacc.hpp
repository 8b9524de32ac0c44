// Exact accumulation of float32 values and of products of two or three float32 values.
//
// A product of two float32 has a 48-bit significand and an exponent in [−298, 255], so it is an
// exact double and an exact multiple of 2^−298 below 2^256 in magnitude. `exact_sum` is a
// fixed-point two's-complement accumulator (Kulisch style) with its least significant bit at
// 2^−298 and 640 bits in all: it adds at least 2^84 such terms without rounding or overflow.
// Adding is a handful of integer operations, which is what keeps the reference's statistics pass
// near the speed of a plain loop; the result converts to an exact `dyadic`.
#pragma once

#include "bnoracle/exact.hpp"

#include <array>
#include <bit>
#include <cstdint>

namespace bnoracle {

// A fixed-point two's-complement accumulator of `Limbs` 64-bit limbs whose least significant bit
// is 2^Lsb.
template <int Limbs, int Lsb>
class basic_exact_sum {
 public:
  static constexpr int k_limbs = Limbs;
  static constexpr int k_lsb_exponent = Lsb;

  // Adds `v` exactly. `v` must be finite, a multiple of 2^Lsb and below 2^(64·Limbs + Lsb − 86)
  // in magnitude (exact_sum: 2^256, enough for every float32 and every product of two float32
  // computed in double). Throws std::domain_error otherwise, so a misuse can never round
  // silently.
  void add(double v);
  void add_product(float a, float b) { add(static_cast<double>(a) * static_cast<double>(b)); }

  // Adds another accumulator (for shard merging and parallel reductions).
  void add(const basic_exact_sum& other);

  [[nodiscard]] dyadic value() const;
  [[nodiscard]] bool is_zero() const;

  // Adds ±magnitude·2^exp2 exactly, a multiple of 2^Lsb that is itself a partial sum of terms
  // `add` takes (binned_sum's bins): it may exceed one term's range, since the accumulator's
  // headroom is counted in terms, but must stay below its sign bit. Throws std::domain_error
  // otherwise.
  void add_integer(std::uint64_t magnitude, std::int64_t exp2, bool negative);

 protected:
  // Adds ±magnitude·2^(Lsb + bit); throws std::domain_error beyond the accumulator's range.
  void add_scaled(std::uint64_t magnitude, std::int64_t bit, bool negative);

 private:
  void add_at(unsigned bit, std::uint64_t magnitude, bool negative);
  std::array<std::uint64_t, static_cast<std::size_t>(Limbs)> limbs_{};
};

// Sums of float32 values and of products of two float32.
using exact_sum = basic_exact_sum<10, -298>;

// Sums of products of three float32 (γ·dy·x of the normalizations whose γ varies inside a
// statistic group): a 72-bit significand and an exponent in [−447, 383], so the least
// significant bit is 2^−447 and 15 limbs take 2^84 terms below 2^427.
class exact_sum3 : public basic_exact_sum<15, -447> {
 public:
  void add_product3(float a, float b, float c);
};

// Exact sums of float32 values and of products of two float32 values, binned by exponent: each
// term's integer significand is added to the bin of its exponent, a few integer instructions per
// term with no carry chain, and `value()` combines the bins in an `exact_sum`. The result is the
// same exact dyadic as `exact_sum`'s. This is the accumulator of the reference's statistics pass.
//
// A float32 is ±m·2^(b − 150) with m < 2^24 and b = max(biased exponent, 1), so a value bin is an
// int64 indexed by b (2^39 terms cannot overflow it; `add` flushes the bins before that); a
// product of two is ±(m_a·m_b)·2^(b_a + b_b − 300) with m_a·m_b < 2^48, so a product bin is a
// 128-bit integer indexed by b_a + b_b (2^79 terms).
class binned_sum {
 public:
  binned_sum();
  // x must be finite.
  void add(float x) {
    const auto bits = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t biased = (bits >> 23U) & 0xFFU;
    const std::uint32_t m = (bits & 0x7FFFFFU) | (biased != 0 ? 0x800000U : 0U);
    const auto sm = static_cast<std::int64_t>(m);
    bins_[biased != 0 ? biased : 1U] += (bits >> 31U) != 0 ? -sm : sm;
    if (++count_ == k_flush_after) flush();
  }
  [[nodiscard]] dyadic value() const;

 private:
  static constexpr std::int64_t k_flush_after = std::int64_t{1} << 38;
  void flush();
  std::array<std::int64_t, 256> bins_{};
  std::int64_t count_ = 0;
  exact_sum spill_;
};

class binned_product_sum {
 public:
  binned_product_sum();
  // a and b must be finite.
  void add_product(float a, float b) {
    const auto ba = std::bit_cast<std::uint32_t>(a);
    const auto bb = std::bit_cast<std::uint32_t>(b);
    const std::uint32_t ea = (ba >> 23U) & 0xFFU;
    const std::uint32_t eb = (bb >> 23U) & 0xFFU;
    const std::uint64_t ma = (ba & 0x7FFFFFU) | (ea != 0 ? 0x800000U : 0U);
    const std::uint64_t mb = (bb & 0x7FFFFFU) | (eb != 0 ? 0x800000U : 0U);
    const auto p = static_cast<std::int64_t>(ma * mb);
    const std::uint32_t at = (ea != 0 ? ea : 1U) + (eb != 0 ? eb : 1U);
    bins_[at] += ((ba ^ bb) >> 31U) != 0 ? -p : p;
  }
  [[nodiscard]] dyadic value() const;

 private:
  __extension__ using bin = __int128;
  std::array<bin, 512> bins_{};
};

}  // namespace bnoracle
