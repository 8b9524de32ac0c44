// dgamma_uncentered (section backward).
// Defect: The sum behind dγ is Σdy·x instead of Σdy·(x − μ): dγ is off by r·μ·Σdy, and dx, which
//   uses mean(dy·x̂) = dγ/L, inherits the error. Both backward modes.
// Imitates: the backward section of BUGS.md (pytorch #82493: dγ = Σdy·x̂ cancels and needs absolute
//   bounds); a centring forgotten.
// Shows: only when μ ≠ 0 and Σdy ≠ 0 per channel; centred data hide it.
#include "parent.hpp"

BNM_MUTANT(dgamma_uncentered)
