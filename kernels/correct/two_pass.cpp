// two_pass: the textbook float32 kernel. Every reduction is one float accumulator summed left to
// right in logical order; the variance is Σ(x − μ)²/L over a second pass (no cancellation of
// E[x²] − E[x]²). Error of a sum of L terms: up to (L − 1)·u relative to Σ|term| (lenient level).
#include "common/norm_kernel.hpp"

namespace {

struct sequential {
  template <class Term>
  static float sum(const bnoracle::kernels::channel_view& ch, const Term& term) {
    return bnoracle::kernels::sequential_sum(ch, 0, ch.size(), term);
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<sequential, bnoracle::kernels::k_all_ops>("two_pass");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
