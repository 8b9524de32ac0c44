// biased_sum: a deliberately wrong float32 kernel, built only for the campaign's own tests
// (tests/CMakeLists.txt). It is the bundled two-pass kernel with every reduction 1% too large,
// so its mean, variance, dγ and dβ are wrong while nothing crashes: the campaign must fail it
// (exit 1), which shows that the campaign is able to fail.
#include "common/norm_kernel.hpp"

namespace {

struct biased_sum {
  template <class Term>
  static float sum(const bnoracle::kernels::channel_view& ch, const Term& term) {
    return bnoracle::kernels::sequential_sum(ch, 0, ch.size(), term) * 1.01F;
  }
};

constexpr bnk_kernel k_table = bnoracle::kernels::make_table<biased_sum>("biased_sum");

}  // namespace

BNK_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {
  return &k_table;
}
