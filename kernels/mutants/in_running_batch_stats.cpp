// in_running_batch_stats (section instance_running).
// Defect: Instance norm updates its running statistics with the channel's statistics over every (n,
// spatial) element, as batch norm would: the between-instance variance leaks into the running
// variance. Imitates: instance norm implemented through batch norm with the wrong reshape. Shows:
// instance norm with running statistics whose instances have different means.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_running_batch_stats)
