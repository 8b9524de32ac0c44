// fam_sums_in_half (section family_low_precision).
// Defect: The row sums Σx and Σ(x − μ)² accumulate in float16.
// Imitates: LeetCUDA PR #335 (a float32-accumulating launcher dispatching the float16-accumulating
// kernel), llama #1048. Shows: as soon as a partial sum needs more than 11 bits or passes 65504:
// any long or offset row.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_sums_in_half)
