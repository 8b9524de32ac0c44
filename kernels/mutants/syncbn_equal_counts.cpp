// syncbn_equal_counts (section syncbn).
// Defect: The SyncBN merge averages the shard means without weighing them by their counts: mean = Σ
//   mₖ/K instead of Σ nₖ·mₖ/n (the merged variance then spreads around that mean).
// Imitates: PaddlePaddle #32464, apex #387.
// Shows: only with unequal shard counts (or an empty shard).
#include "parent.hpp"

BNM_MUTANT(syncbn_equal_counts)
