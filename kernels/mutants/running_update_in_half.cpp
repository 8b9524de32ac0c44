// running_update_in_half (section low_precision).
// Defect: The updated running mean and running variance are rounded to binary16 before they are
//   stored (a half-precision running-statistics buffer): 11 significant bits and overflow past
//   65504.
// Imitates: the running-stat updates in low precision of pytorch #195701 and #147303.
// Shows: in every tracked forward training; values that are exact in 11 bits hide it.
#include "parent.hpp"

BNM_MUTANT(running_update_in_half)
