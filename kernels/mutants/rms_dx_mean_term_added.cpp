// rms_dx_mean_term_added (section family_backward).
// Defect: RMS norm's dx subtracts mean(γ·dy): layer norm's backward used for RMS norm.
// Imitates: RMSNorm/LayerNorm backward mix-ups of the BUGS.md family sections.
// Shows: every RMS norm backward whose mean(γ·dy) is not 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(rms_dx_mean_term_added)
