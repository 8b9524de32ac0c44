// fam_normalized_in_bf16 (section family_low_precision).
// Defect: x̂ is cast to bfloat16 before γ multiplies it (the casting order of TransformerEngine
// #1132 and vllm #42325, in a float32 kernel). Imitates: TransformerEngine #1132, vllm #42325.
// Shows: every dst: 2^-8 relative.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_normalized_in_bf16)
