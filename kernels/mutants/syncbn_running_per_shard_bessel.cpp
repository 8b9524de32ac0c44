// syncbn_running_per_shard_bessel (section syncbn).
// Defect: The SyncBN running variance is made unbiased with the sum of the shards' own Bessel
//   denominators, M2/(n − K), instead of M2/(n − 1) over the total count.
// Imitates: the biased/unbiased and per-batch-count family of keras #8982 and tt-metal #55438, in
//   the SyncBN setting of PaddlePaddle #32464.
// Shows: only with K > 1 shards and track_running; ~(K − 1)/n relative, so small counts show it
//   best.
#include "parent.hpp"

BNM_MUTANT(syncbn_running_per_shard_bessel)
