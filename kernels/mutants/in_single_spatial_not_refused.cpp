// in_single_spatial_not_refused (section instance_running).
// Defect: Instance norm trains on one spatial element per instance instead of refusing, as PyTorch
// does. Imitates: PyTorch's _verify_spatial_size, batch norm's single_value_not_refused in instance
// norm. Shows: instance norm training with spatial size 1.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_single_spatial_not_refused)
