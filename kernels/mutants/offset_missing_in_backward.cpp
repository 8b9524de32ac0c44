// offset_missing_in_backward (section weight_offset).
// Defect: The backward pass scales g = γ·dy with w instead of 1 + w; the forward pass is right.
// Imitates: the weight-offset family of BUGS.md, in the backward kernel.
// Shows: diff_src of every RMS norm case with the weight offset.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(offset_missing_in_backward)
