// nan_poisons_all_channels (section nan).
// Defect: Forward training keeps one found-non-finite flag per call: a NaN or Inf in any channel
//   makes every channel's output NaN, where NaN must stay in its own channel.
// Imitates: the NaN-confinement rule of BUGS.md 'Determinism and NaN' (ROCm/pytorch #657's
//   neighbourhood: non-finite values escaping their channel).
// Shows: only when some channel holds a NaN or Inf.
#include "parent.hpp"

BNM_MUTANT(nan_poisons_all_channels)
