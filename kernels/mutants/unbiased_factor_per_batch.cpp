// unbiased_factor_per_batch (section running_stats).
// Defect: The unbiased correction of the running variance uses the batch extent: var·N/(N − 1)
//   instead of var·L/(L − 1) with L = N·spatial.
// Imitates: tt-metal #55438.
// Shows: only when the spatial size is > 1 (then the factor differs; N = 1 gives Inf); NC inputs
//   are right.
#include "parent.hpp"

BNM_MUTANT(unbiased_factor_per_batch)
