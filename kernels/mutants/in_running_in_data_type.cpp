// in_running_in_data_type (section family_low_precision).
// Defect: instance norm's updated running statistics are rounded to the data type before they are
// averaged and stored in their float32 buffers. Imitates: running statistics narrowed to half
// (pytorch #195701 / #147303 family), in instance norm with track_running_stats. Shows: only with
// narrow data (bf16_mixed): running_mean and running_var off by up to 2^-9 relative. With float32
// data it is the correct kernel.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_running_in_data_type)
