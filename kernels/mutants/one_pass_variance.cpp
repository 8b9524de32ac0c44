// one_pass_variance (section variance).
// Defect: The batch variance is the one-pass E[x²] − E[x]² in float32 (Σx² and Σx in one sweep)
//   instead of Σ(x − μ)²/L: it cancels catastrophically, even goes negative, when |mean| is large
//   against the spread.
// Imitates: tensorflow #118701 (XLA: NaN from offset 1e4), flax #1491, tensorflow #3290, tt-metal
//   #45968.
// Shows: only with offset data (mean/std above about 10^2); centred data passes.
#include "parent.hpp"

BNM_MUTANT(one_pass_variance)
