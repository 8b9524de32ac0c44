// saved_stats_in_half (section low_precision).
// Defect: Forward training stores save_mean and save_stat (invstd) rounded to binary16; the forward
//   output itself uses the float32 values, but the saved statistics — and the backward that
//   consumes them — are only 11 bits accurate, and overflow to Inf for |μ| > 65504.
// Imitates: chainer PR #6323 (fp16 cache of the saved statistics).
// Shows: in save_mean/save_stat of forward training and in backward training with saved statistics.
#include "parent.hpp"

BNM_MUTANT(saved_stats_in_half)
