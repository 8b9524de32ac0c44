// offset_in_bf16 (section weight_offset).
// Defect: 1 + w is rounded to bfloat16 (8 bits) before it scales x̂.
// Imitates: vllm PR #3653, PR #29810 (a weight of 15.8125 rounds).
// Shows: weights whose 1 + w has more than 8 significant bits: most random weights.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(offset_in_bf16)
