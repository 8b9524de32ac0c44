// fam_one_pass_variance (section family_variance).
// Defect: The row variance is E[x²] − E[x]² in float32.
// Imitates: pytorch PR #55044 (fixing #51102), torch-xpu-ops PR #1374.
// Shows: rows with an offset far above their spread (offset 1e4, tiny, near-overflow), where E[x²]
// and E[x]² agree to most of their digits.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_one_pass_variance)
