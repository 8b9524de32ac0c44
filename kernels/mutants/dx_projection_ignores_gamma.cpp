// dx_projection_ignores_gamma (section family_backward).
// Defect: dx's projection term mean(g·x̂) uses dy where g = γ·dy is meant; the other term uses g.
// Imitates: backward kernels ported from batch norm, where γ factors out of the row (BUGS.md's
// backward section). Shows: layer, RMS and group norm with γ not 1.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(dx_projection_ignores_gamma)
