// syncbn_no_between_term (section syncbn).
// Defect: The SyncBN merge combines variances as Σ nₖ·vₖ/n, forgetting the between-shard term Σ
//   nₖ·(mₖ − mean)²: the merged variance is too small when the shard means differ.
// Imitates: the SyncBN merging class of PaddlePaddle #32464 and apex #387 (statistics combined
//   without the parallel-variance correction).
// Shows: only when the shard means differ.
#include "parent.hpp"

BNM_MUTANT(syncbn_no_between_term)
