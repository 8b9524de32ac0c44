// gn_group_padding (section family_tails).
// Defect: Group norm's channel loop runs to the next power of two of C/G, so a group's statistics
// read the next group's channels. Imitates: FlagGems #4984 (max error 0.59). Shows: group norm with
// C/G not a power of two (48 channels in 16 groups of 3), every group but
//   the last.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(gn_group_padding)
