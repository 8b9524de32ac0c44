// fold_ignores_bias (section folding).
// Defect: Folding drops the layer's own bias: b' = β − μ·s instead of (b − μ)·s + β.
// Imitates: tt-metal PR #5317 (folding wrong when the conv has a bias).
// Shows: only when the layer has a non-zero bias.
#include "parent.hpp"

BNM_MUTANT(fold_ignores_bias)
