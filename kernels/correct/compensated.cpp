// compensated: every reduction is a Kahan–Babuška sum in Neumaier's form — a float32 running sum
// plus a float32 compensation that collects each addition's rounding error exactly (by the
// branch on magnitudes, TwoSum-style), added back at the end. The error of a sum is about
// 2u·Σ|term| + O(L·u²), independent of L to first order. The variance is two-pass.
// (This relies on IEEE evaluation: the project never builds with -ffast-math.)
#include "common/norm_kernel.hpp"

#include <cmath>

namespace {

struct neumaier {
  template <class Term>
  static float sum(const bnoracle::kernels::channel_view& ch, const Term& term) {
    float s = 0.0F;
    float comp = 0.0F;
    ch.for_range(0, ch.size(), [&](bnoracle::kernels::element o) {
      const float v = term(o);
      const float t = s + v;
      if (std::fabs(s) >= std::fabs(v)) {
        comp += (s - t) + v;  // the low-order bits of v lost in t
      } else {
        comp += (v - t) + s;  // the low-order bits of s lost in t
      }
      s = t;
    });
    return s + comp;
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<neumaier, bnoracle::kernels::k_all_ops>("compensated");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
