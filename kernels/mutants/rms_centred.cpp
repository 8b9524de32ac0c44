// rms_centred (section family_variance).
// Defect: RMS norm subtracts the row mean before the mean square: layer norm passed off as RMS
// norm. Imitates: RMSNorm/LayerNorm confusions of the BUGS.md family sections. Shows: every row
// whose mean is not 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(rms_centred)
