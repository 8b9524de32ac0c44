// cumulative_count_before_increment (section running_stats).
// Defect: With momentum = None the weight of the new batch is taken from num_batches_tracked before
//   its increment, guarded against 0: 1/max(t − 1, 1) instead of 1/t. The first step is right
//   (weight 1), the second weighs 1 instead of 1/2, the third 1/2 instead of 1/3.
// Imitates: no single BUGS.md instance: PyTorch's cumulative average (1/num_batches_tracked after
//   the increment, BUGS.md 'Bessel correction and running statistics' and 'Conventions') read one
//   step early.
// Shows: only with momentum = None and from the second tracked step on: a one-step test passes.
#include "parent.hpp"

BNM_MUTANT(cumulative_count_before_increment)
