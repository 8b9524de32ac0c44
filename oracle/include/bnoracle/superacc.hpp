// Exact accumulation of float32 values and of products of two float32 values.
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

class exact_sum {
 public:
  static constexpr int k_limbs = 10;
  static constexpr int k_lsb_exponent = -298;

  // Adds `v` exactly. `v` must be finite, a multiple of 2^−298 and below 2^256 in magnitude —
  // true of every float32 and of every product of two float32 computed in double. Throws
  // std::domain_error otherwise, so a misuse can never round silently.
  void add(double v);
  void add_product(float a, float b) { add(static_cast<double>(a) * static_cast<double>(b)); }

  // Adds another accumulator (for shard merging and parallel reductions).
  void add(const exact_sum& other);

  [[nodiscard]] dyadic value() const;
  [[nodiscard]] bool is_zero() const;

 private:
  void add_at(unsigned bit, std::uint64_t magnitude, bool negative);
  std::array<std::uint64_t, k_limbs> limbs_{};
};

}  // namespace bnoracle
