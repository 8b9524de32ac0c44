// eps_default_ignored (section conventions).
// Defect: The kernel uses ε = 1e-5, its framework's default, whatever ε the problem passes.
// Imitates: tkDNN #167 (ported models change ε: defaults 1e-3, 1e-5, 1e-6 differ between
//   frameworks).
// Shows: only when the problem's ε is not 1e-5 and matters against the variance (ε = 0 with a
//   constant channel, ε near var).
#include "parent.hpp"

BNM_MUTANT(eps_default_ignored)
