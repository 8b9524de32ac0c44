// counter_per_channel (section running_stats).
// Defect: The num_batches_tracked increment sits inside the channel loop: one call counts the batch
//   C times, and with momentum = None channel c is weighed 1/(t + c) instead of 1/t.
// Imitates: the running-statistics family of BUGS.md (mxnet #14357: running statistics wrong on one
//   code path); the ABI says the counter moves once per call, not per channel.
// Shows: only with C > 1: the counter always, the running statistics only with momentum = None.
#include "parent.hpp"

BNM_MUTANT(counter_per_channel)
