// biased_sum: a deliberately wrong float32 kernel, built only for the campaign's own tests
// (tests/CMakeLists.txt). It is the bundled two-pass kernel with every reduction 1% too large,
// for every op of the family, so its means, variances, dγ and dβ are wrong while nothing crashes:
// the campaign must fail it (exit 1) in every op's stream, which shows that the campaign is able
// to fail.
#include "common/norm_kernel.hpp"

namespace {

struct biased_sum {
  template <class Term>
  static float sum(const bnoracle::kernels::channel_view& ch, const Term& term) {
    return bnoracle::kernels::sequential_sum(ch, 0, ch.size(), term) * 1.01F;
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<biased_sum, bnoracle::kernels::k_all_ops>("biased_sum");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
