// rms_eps_dropped (section family_variance).
// Defect: RMS norm forgets ε: 1/√mean(x²).
// Imitates: the eps-ignored family of BUGS.md, in RMS norm.
// Shows: rows whose mean square is not large against ε: ε = 0.5, ε near the mean square, tiny rows,
// and any row of zeros.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(rms_eps_dropped)
