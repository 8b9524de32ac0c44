// dgamma_last_row_only (section family_backward).
// Defect: Each group stores its partial dγ instead of adding to it, so only the last row's
// (example's) contribution remains. Imitates: the accumulate-versus-store family of BUGS.md's
// backward section. Shows: every dγ that spans more than one statistic group.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(dgamma_last_row_only)
