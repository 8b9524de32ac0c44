// off_by_one_percent (test material, outside the catalog).
// Defect: y is 1% too large away from β: γ·(x − μ)·r·1.01 + β. No shipped bug is imitated; it is
//   the smallest systematic error a tolerance of 1e-2 (common in framework test suites) hides.
// Shows: in dst of both forward modes, at every element whose normalized value is not 0.
#include "mutants/parent.hpp"

BNM_MUTANT(off_by_one_percent)
