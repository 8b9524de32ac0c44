// backward_drops_stats (section backward).
// Defect: Backward training treats μ and σ as constants: dx = γ·r·dy, without the −mean(dy) and
//   −x̂·mean(dy·x̂) terms. dγ and dβ are right.
// Imitates: CrypTen PR #143.
// Shows: in diff_src of backward training, unless dy is constant per channel and uncorrelated with
//   x̂.
#include "parent.hpp"

BNM_MUTANT(backward_drops_stats)
