// eval_uses_batch_stats (section train_eval).
// Defect: Forward inference normalizes with the batch's own mean and biased variance instead of
//   running_mean and running_var: an example's output depends on its batchmates.
// Imitates: tvm #19574, pytorch/xla PR #806, keras #6127.
// Shows: in every forward inference whose running statistics differ from the batch's.
#include "parent.hpp"

BNM_MUTANT(eval_uses_batch_stats)
