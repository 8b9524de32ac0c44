// fam_unbiased_variance (section family_variance).
// Defect: The normalizing variance is M2/(L − 1), as a hand-written layer norm gets from x.var()'s
// unbiased default. Imitates: the unbiased-normalization family of BUGS.md, in layer and group
// norm. Shows: every row: the relative error L/(L − 1) − 1 is 2.5% at L = 40, thousands of ulps.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_unbiased_variance)
