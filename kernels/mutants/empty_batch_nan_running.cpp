// empty_batch_nan_running (section degenerate).
// Defect: An empty batch (L = 0) still runs the running update, with the undefined statistics 0/0 =
//   NaN: running_mean and running_var become NaN instead of staying.
// Imitates: pytorch #12013, #120803, sonnet #125.
// Shows: only for an empty batch (N = 0) with track_running.
#include "parent.hpp"

BNM_MUTANT(empty_batch_nan_running)
