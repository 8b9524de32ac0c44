// biased_running_var (section running_stats).
// Defect: The running variance is updated with the biased batch variance M2/L where the PyTorch
//   convention wants the unbiased M2/(L − 1).
// Imitates: keras #8982 (N = 2: 0.47 instead of 1.0), mlx PR #3817, tinygrad PR #807.
// Shows: in the running variance; a factor (L − 1)/L, so clearest at small L (L = 2 halves it),
//   ~1/L at large L.
#include "parent.hpp"

BNM_MUTANT(biased_running_var)
