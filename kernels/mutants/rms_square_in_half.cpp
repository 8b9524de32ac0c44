// rms_square_in_half (section family_low_precision).
// Defect: RMS norm's x² is computed in float16: it keeps 11 bits and overflows to Inf for |x| ≥
// 256. Imitates: pytorch PR #133085 (pow(x, 2) in float16 in a fused RMSNorm), TensorRT #2564.
// Shows: every RMS row: 2^-11 relative on the mean square; rows with |x| ≥ 256 give 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(rms_square_in_half)
