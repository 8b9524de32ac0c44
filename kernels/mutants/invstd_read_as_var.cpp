// invstd_read_as_var (section backward).
// Defect: Backward training reads save_stat as the variance (what cuDNN names SaveInvVariance is
//   the inverse standard deviation): r = 1/√(invstd + ε) instead of invstd.
// Imitates: onnxruntime PR #8172, mxnet #9216.
// Shows: only in backward training with saved statistics; recomputing from src (save_stat NULL) is
//   right; invisible when var + ε = 1.
#include "parent.hpp"

BNM_MUTANT(invstd_read_as_var)
