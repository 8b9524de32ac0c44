// welford: the mean and M2 = Σ(x − μ)² of each channel by Welford's online update in float32,
// one pass in logical order:
//   k ← k + 1;  δ = x − μ;  μ ← μ + δ/k;  M2 ← M2 + δ·(x − μ)
// The backward sums (Σdy, Σdy·(x − μ)) are plain sequential float sums.
#include "common/norm_kernel.hpp"

namespace {

using bnoracle::kernels::channel_view;

struct welford {
  template <class Term>
  static float sum(const channel_view& ch, const Term& term) {
    return bnoracle::kernels::sequential_sum(ch, 0, ch.size(), term);
  }

  template <class X>
  static bnoracle::kernels::moments moments(const channel_view& ch, const X& x) {
    float mean = 0.0F;
    float m2 = 0.0F;
    float k = 0.0F;  // the count, as the float the update divides by
    ch.for_range(0, ch.size(), [&](bnoracle::kernels::element o) {
      k += 1.0F;
      const float delta = x[o] - mean;
      mean += delta / k;
      m2 += delta * (x[o] - mean);
    });
    return {mean, m2};
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<welford, bnoracle::kernels::k_all_ops>("welford");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
