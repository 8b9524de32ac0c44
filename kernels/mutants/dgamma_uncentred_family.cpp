// dgamma_uncentred_family (section family_backward).
// Defect: dγ = Σ dy·x·r: x is not centred.
// Imitates: batch norm's dgamma_uncentered (pytorch #82493's family), in the family.
// Shows: every centred op whose group means are not 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(dgamma_uncentred_family)
