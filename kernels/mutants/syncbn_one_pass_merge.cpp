// syncbn_one_pass_merge (section syncbn).
// Defect: The SyncBN merge rebuilds Σx² from each shard (nₖ·(vₖ + mₖ²)) and takes M2 = Σx² −
//   n·mean²: one-pass cancellation when the mean is large against the spread.
// Imitates: PaddlePaddle PR #16121 (SyncBN merge), with tensorflow #118701.
// Shows: only with offset data across the shards.
#include "parent.hpp"

BNM_MUTANT(syncbn_one_pass_merge)
