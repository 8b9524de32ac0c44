// running_not_updated (section running_stats).
// Defect: Forward training with track_running computes everything but never stores the new running
//   mean and variance (num_batches_tracked is still incremented).
// Imitates: jax #139, mlx #1960 (running statistics never written).
// Shows: in every tracked training step whose update would change the running statistics.
#include "parent.hpp"

BNM_MUTANT(running_not_updated)
