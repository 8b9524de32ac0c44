// gn_backward_w_for_hw (section family_strides).
// Defect: Group norm's backward takes the group size as (C/G)·W, the last extent only, where
// (C/G)·H·W was meant. Imitates: Liger-Kernel PR #1376. Shows: group norm backward with two or more
// spatial axes.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(gn_backward_w_for_hw)
