// rms_overflow_guard_signed (section family_variance).
// Defect: RMS norm squares x directly unless the row's largest value is huge, where it would
// scale first: the guard tests max(x) instead of max(|x|), so a row whose huge values are
// negative overflows Σx² to +Inf and normalizes to 0.
// Imitates: the overflow family of BUGS.md (sums of squares overflowing), with the overflow
// guard of an overflow-safe norm (LAPACK's nrm2 scales by the largest magnitude) mis-written.
// Shows: rows with |x| above 2^64 whose largest magnitudes are negative; x and -x disagree
// (rms_norm_sign_symmetry), and the exact reference gives a finite y.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(rms_overflow_guard_signed)
