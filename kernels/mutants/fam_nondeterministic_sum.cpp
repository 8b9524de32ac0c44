// fam_nondeterministic_sum (section determinism).
// Defect: every reduction over a statistic group (statistics and backward sums) adds three
//   block partial sums in an order that changes from process to process and from call to call
//   (scheduling.hpp), as an atomic-add reduction depends on the scheduler: each result is
//   accurate, but the bits change from run to run.
// Imitates: pytorch #53691 (results change from run to run under deterministic settings), in the
//   layer-norm family (split-row reductions with atomics).
// Shows: only as run-to-run differences (family_reproducibility); any single call is within the
//   error bounds.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_nondeterministic_sum)
