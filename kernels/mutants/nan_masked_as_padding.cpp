// nan_masked_as_padding (section nan).
// Defect: The statistics' reductions skip NaN terms, as a masked reduction skips padding lanes: a
//   channel holding a NaN gets finite statistics, so its other outputs are finite where they must
//   be NaN.
// Imitates: the NaN-propagation rule of BUGS.md 'Determinism and NaN' (ROCm/pytorch #657: NaN
//   behaviour that differs by backend).
// Shows: only when a channel holds a NaN.
#include "parent.hpp"

BNM_MUTANT(nan_masked_as_padding)
