// stride_dropped_in_normalize (section family_strides).
// Defect: The normalize pass of layer and RMS norm reads and writes rows as dense memory; the
// statistics pass honours the strides. Imitates: LightLLM #1467 (transposed input silently wrong).
// Shows: strided and transposed rows.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(stride_dropped_in_normalize)
