// block_remainder_dropped (section vector_tails).
// Defect: For L > 256 the statistics are reduced in blocks of 256 and the partial last block is
//   dropped (the sums are still divided by L).
// Imitates: torch-xpu-ops PR #1238 (block remainders misread), MIOpen #1109 (wrong only at large
//   sizes).
// Shows: only when L > 256 and L % 256 != 0 (L = 257 drops one element).
#include "parent.hpp"

BNM_MUTANT(block_remainder_dropped)
