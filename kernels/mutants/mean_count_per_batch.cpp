// mean_count_per_batch (section variance).
// Defect: The element count of a channel is taken as N, the batch extent, instead of L = N·spatial:
//   the mean is Σx/N and the variance M2/N (and M2/(N − 1) for the running one).
// Imitates: the count-per-batch family of keras #8982 and tt-metal #55438 (BUGS.md: count taken per
//   batch instead of per channel).
// Shows: only when the spatial size is > 1; NC inputs (spatial 1) are right.
#include "parent.hpp"

BNM_MUTANT(mean_count_per_batch)
