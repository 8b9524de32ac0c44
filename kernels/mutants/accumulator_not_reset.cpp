// accumulator_not_reset (section nan).
// Defect: The Σx accumulator (a block's shared-memory slot) is reused for the next channel without
//   being zeroed: channel c's sum starts from channel c − 1's, so statistics — and any NaN — leak
//   from one channel into the next.
// Imitates: the channel-independence class of BUGS.md 'Determinism and NaN' (ROCm/pytorch #657: a
//   backend-specific reduction bug).
// Shows: only with C > 1, from the second channel on; NaN/Inf leaks into later channels.
#include "parent.hpp"

BNM_MUTANT(accumulator_not_reset)
