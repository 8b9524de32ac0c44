// nondeterministic_sum (section determinism).
// Defect: Every reduction adds three block partial sums in an order that changes from process
//   to process and from call to call (scheduling.hpp), as an atomic-add reduction depends on the
//   scheduler: each result is accurate, but the bits change from run to run.
// Imitates: pytorch #53691 (results change from run to run under deterministic settings).
// Shows: only as run-to-run differences of training statistics and backward sums; any single call
//   is within the error bounds.
#include "parent.hpp"

BNM_MUTANT(nondeterministic_sum)
