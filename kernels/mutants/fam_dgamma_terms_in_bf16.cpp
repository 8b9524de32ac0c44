// fam_dgamma_terms_in_bf16 (section family_low_precision).
// Defect: Each term dy·x̂ of dγ is rounded to bfloat16 before it reaches the float32 accumulator.
// Imitates: Liger-Kernel PR #950.
// Shows: every dγ: 2^-8 relative per term.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_dgamma_terms_in_bf16)
