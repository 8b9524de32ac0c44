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

}  // namespace bnoracle
