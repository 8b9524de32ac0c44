// vector_tail_dropped (section vector_tails).
// Defect: The statistics loop runs 4 elements at a time and the remainder loop is missing, yet the
//   sums are divided by L: the last L % 4 elements are ignored, a bias of about (L % 4)/L.
// Imitates: torch-xpu-ops PR #1238.
// Shows: only when L % 4 != 0; about a 1% bias at L ≈ 100-300, which loose tolerances hide.
#include "parent.hpp"

BNM_MUTANT(vector_tail_dropped)
