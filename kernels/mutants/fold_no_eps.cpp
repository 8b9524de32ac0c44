// fold_no_eps (section folding).
// Defect: Folding computes s = γ/√var without ε.
// Imitates: PaddlePaddle PR #68170 (a converter test passed only because default values hid the
//   bug).
// Shows: only when ε matters against the running variance (small variances, large ε; var = 1 with ε
//   = 1e-5 hides it).
#include "parent.hpp"

BNM_MUTANT(fold_no_eps)
