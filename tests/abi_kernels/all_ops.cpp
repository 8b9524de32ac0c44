// A test plugin: the bundled kernel template (kernels/common/norm_kernel.hpp) with the sequential
// policy of `two_pass`, declaring every op of the family, for tests/test_abi.cpp's identities
// between the ops' statistic groups. The bundled kernels declare batch norm only, the one op the
// reference judges.
#include "common/norm_kernel.hpp"

namespace {

struct sequential {
  template <class Term>
  static float sum(const bnoracle::kernels::group_view& g, const Term& term) {
    return bnoracle::kernels::sequential_sum(g, 0, g.size(), term);
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<sequential, bnoracle::kernels::k_all_ops>("all_ops");

// A version-1 table as well: a library exporting both is loaded as version 2.
constexpr bnk_kernel k_table_v1 = bnoracle::kernels::make_table<sequential>("all_ops_v1");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}

BNK_EXPORT const bnk_kernel* bnoracle_kernel_v1(void) {
  return &k_table_v1;
}
