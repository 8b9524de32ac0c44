// dx_mean_term_dropped (section family_backward).
// Defect: Layer, group and instance norm's dx omits the mean(γ·dy) term: RMS norm's backward used
// for a centred op. Imitates: RMSNorm/LayerNorm backward mix-ups of the BUGS.md family sections.
// Shows: every centred op whose mean(γ·dy) is not 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(dx_mean_term_dropped)
