// rsqrt_max_var_eps (section conventions).
// Defect: ε is a floor rather than an addend: invstd = 1/√max(var, ε) instead of 1/√(var + ε).
// Imitates: ncnn PR #311.
// Shows: when ε is near or above the variance (the eps-near-var cases); var ≫ ε differs by
//   ε/(2·var) relative.
#include "parent.hpp"

BNM_MUTANT(rsqrt_max_var_eps)
