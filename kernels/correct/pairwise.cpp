// pairwise: every reduction (Σx, Σ(x − μ)², Σdy, Σdy·(x − μ)) is a pairwise (tree) sum in
// float32: element pairs, then pairs of pairs, ... — depth ⌈log2 L⌉, so the error of a sum grows
// like log2(L)·u instead of L·u. Computed in one streaming pass with a stack of partial sums (a
// binary counter): the partial at level k holds the sum of a block of 2^k consecutive elements.
#include "common/norm_kernel.hpp"

namespace {

struct pairwise {
  template <class Term>
  static float sum(const bnoracle::kernels::channel_view& ch, const Term& term) {
    float level[64];  // level[i] sums 2^(bits of the count) elements; 64 levels cover int64
    int top = 0;
    std::int64_t count = 0;
    ch.for_range(0, ch.size(), [&](bnoracle::kernels::element o) {
      float v = term(o);
      ++count;
      // Adding element number `count` completes one block per trailing zero bit of `count`.
      for (std::int64_t k = count; (k & 1) == 0; k >>= 1) v = level[--top] + v;
      level[top++] = v;
    });
    if (top == 0) return 0.0F;
    // What remains are blocks of decreasing size (the bits of L); add the smallest first.
    float s = level[--top];
    while (top > 0) s = level[--top] + s;
    return s;
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<pairwise, bnoracle::kernels::k_all_ops>("pairwise");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
