// in_running_first_instance (section instance_running).
// Defect: Instance norm's running statistics are the first example's updated copy, not the mean of
// all copies. Imitates: instance norm's track_running_stats in PyTorch (averaging the per-instance
// copies). Shows: instance norm with running statistics and N ≥ 2.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_running_first_instance)
