// masked_lanes_counted (section family_tails).
// Defect: The mean is divided by the padded row length (a multiple of 16), counting masked lanes.
// Imitates: Liger-Kernel #518's family.
// Shows: rows whose length is not a multiple of 16.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(masked_lanes_counted)
