// fam_dgamma_accumulated_in_bf16 (section family_low_precision).
// Defect: dγ's accumulator across rows and groups is bfloat16.
// Imitates: llm.c PR #476 (dγ accumulated with bfloat16 atomics).
// Shows: every dγ over more than a few terms.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_dgamma_accumulated_in_bf16)
