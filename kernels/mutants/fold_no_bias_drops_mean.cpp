// fold_no_bias_drops_mean (section folding).
// Defect: When the layer has no bias the fold writes b' = β ("no bias to fold into"), dropping the
//   −μ·s term.
// Imitates: tt-metal PR #5317 (folding wrong when the conv has no bias).
// Shows: only when the layer has no bias and the running mean is not 0.
#include "parent.hpp"

BNM_MUTANT(fold_no_bias_drops_mean)
