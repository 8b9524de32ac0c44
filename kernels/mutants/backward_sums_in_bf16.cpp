// backward_sums_in_bf16 (section low_precision).
// Defect: The backward reductions Σdy and Σdy·(x − μ) accumulate in bfloat16 (rounded to 8
//   significant bits after every addition), so dβ, dγ and the mean terms of dx carry errors of
//   about 2^-9 per addition.
// Imitates: pytorch PR #126525 (low-precision partial sums in the backward), #195701.
// Shows: in both backward modes, more with larger L; the forward is exact float32.
#include "parent.hpp"

BNM_MUTANT(backward_sums_in_bf16)
