// one_pass_variance_clamped (section variance).
// Defect: The one-pass variance E[x²] − E[x]² clamped with max(·, 0): the "fix" removes the NaN
//   from a negative variance but not the cancellation, so offset data still get a variance with no
//   correct digits (often exactly 0, then y = (x − μ)/√ε).
// Imitates: keras PR #18795 (the clamp), on top of tensorflow #118701 / flax #1491.
// Shows: only with offset data; never NaN, so a NaN-only check misses it.
#include "parent.hpp"

BNM_MUTANT(one_pass_variance_clamped)
