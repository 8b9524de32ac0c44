// backward_odd_size (section backward).
// Defect: The backward reductions Σdy and Σdy·(x − μ) are unrolled by 2 without a remainder: the
//   last element is dropped when L is odd.
// Imitates: MIOpen #1109 (N > 768), oneDNN #1725 (147×147): backward kernels wrong only at large or
//   odd sizes.
// Shows: only when L is odd (e.g. 147×147, 5×5×odd N); even L is exact.
#include "parent.hpp"

BNM_MUTANT(backward_odd_size)
