// fam_count_in_half (section family_low_precision).
// Defect: the element count L of a row is held in float16 before the mean and the variance divide
// by it (a count cast to the data type). Imitates: the fp16 element count of ../shared/BUGS.md's
// low-precision family (a count of 2049 becomes 2048, one past 65504 becomes Inf). Shows: rows
// longer than 2048 whose length float16 does not hold, e.g. a hidden size of 2049.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_count_in_half)
