// misaligned_head_double_counted (section vector_tails).
// Defect: The statistics sum a scalar head up to the first 16-byte boundary of the channel's first
//   element, then the vector body starts again at element 0: on a misaligned channel the head
//   elements count twice.
// Imitates: torch-xpu-ops PR #1238 (misaligned heads).
// Shows: only for channels whose first element is not 16-byte aligned: it depends on the buffer
//   address and on C·spatial, so it comes and goes with the sizes.
#include "parent.hpp"

BNM_MUTANT(misaligned_head_double_counted)
