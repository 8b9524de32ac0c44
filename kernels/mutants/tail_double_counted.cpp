// tail_double_counted (section vector_tails).
// Defect: The scalar remainder loop starts at the last full vector instead of after it: when L % 4
//   != 0 and L > 4, four elements are added twice to Σx and Σ(x − μ)².
// Imitates: torch-xpu-ops PR #1238 (remainders misread).
// Shows: only when L % 4 != 0 and L > 4.
#include "parent.hpp"

BNM_MUTANT(tail_double_counted)
