// single_value_not_refused (section degenerate).
// Defect: One value per channel in training is accepted instead of refused: the output is β (x − μ
//   = 0), the saved invstd 1/√ε, and the running variance takes M2/(L − 1) = 0/0 = NaN.
// Imitates: pytorch #1381, Flux PR #2716, tensorflow #34062.
// Shows: only when L = 1 in training (a 1×C×1×1 batch, N = 1 in NC).
#include "parent.hpp"

BNM_MUTANT(single_value_not_refused)
