// fam_vector_tail_dropped (section family_tails).
// Defect: The statistics' reductions cover whole 8-lane vectors only; the last L mod 8 elements are
// missing from Σx and Σ(x − μ)². Imitates: the dropped-vector-tail family of BUGS.md (batch norm's
// vector_tail_dropped), in the family. Shows: rows and groups whose length is not a multiple of 8.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_vector_tail_dropped)
