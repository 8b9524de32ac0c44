// fam_saved_stats_in_data_type (section family_low_precision).
// Defect: the saved mean and 1/sqrt(σ² + ε) are rounded to the data type before they are stored in
// their float32 buffers (statistics narrowed to half where the API keeps them in float32).
// Imitates: chainer PR #6323 (saved statistics in float16), in a mixed-precision layer norm.
// Shows: only with float16 or bfloat16 data (cudnn_mixed): save_mean and save_stat lose 13 or
// 16 bits. With float32 data it is the correct kernel.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_saved_stats_in_data_type)
