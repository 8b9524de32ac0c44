// unbiased_normalization (section running_stats).
// Defect: The output (and the saved invstd) is normalized with the unbiased variance M2/(L − 1)
//   instead of the biased M2/L: y is too small by a factor √((L − 1)/L), about 1/(2L) relative —
//   0.1% at L = 512. The running variance is right.
// Imitates: the biased/unbiased confusion of mxnet #18751 and tensorflow #55545 (CPU and GPU
//   disagree on the estimator), here on the normalizing side.
// Shows: everywhere, but only ~1/(2L) relative: it needs exact data or tight bounds at large L (a
//   loose rtol misses it).
#include "parent.hpp"

BNM_MUTANT(unbiased_normalization)
