// in_running_biased (section instance_running).
// Defect: Instance norm's running variance uses M2/L, not M2/(L − 1).
// Imitates: batch norm's biased_running_var, in instance norm.
// Shows: every instance norm training step with running statistics.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_running_biased)
