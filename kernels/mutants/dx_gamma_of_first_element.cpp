// dx_gamma_of_first_element (section family_backward).
// Defect: The backward pass applies γ of the group's first element to every element, batch norm's
// uniform γ assumed. Imitates: backward kernels ported from batch norm (BUGS.md's backward
// section). Shows: layer, RMS and group norm whose γ varies inside a group.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(dx_gamma_of_first_element)
