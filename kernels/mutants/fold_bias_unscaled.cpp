// fold_bias_unscaled (section folding).
// Defect: Folding adds the layer's bias without scaling it: b' = b + β − μ·s instead of (b − μ)·s +
//   β.
// Imitates: tt-metal PR #5317.
// Shows: only when the layer has a non-zero bias and s ≠ 1.
#include "parent.hpp"

BNM_MUTANT(fold_bias_unscaled)
