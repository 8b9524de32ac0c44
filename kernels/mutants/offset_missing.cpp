// offset_missing (section weight_offset).
// Defect: Gemma's weight offset is missing: γ is applied as w, not 1 + w.
// Imitates: Liger-Kernel #74, executorch PR #19901.
// Shows: every RMS norm case with the weight offset.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(offset_missing)
