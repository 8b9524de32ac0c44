// eps_outside_sqrt (section conventions).
// Defect: ε is added outside the square root: invstd = 1/(√var + ε) instead of 1/√(var + ε), in
//   every mode and in the merge and the fold.
// Imitates: ncnn PR #311.
// Shows: when ε is not negligible against √var, i.e. small variances or a large ε; with var ≈ 1 and
//   ε = 1e-5 the difference is ~1e-5 relative.
#include "parent.hpp"

BNM_MUTANT(eps_outside_sqrt)
