// offset_doubled (section weight_offset).
// Defect: The offset is applied twice: 2 + w, as when a checkpoint's folded +1 is not undone.
// Imitates: vllm PR #31464.
// Shows: every RMS norm case with the weight offset.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(offset_doubled)
