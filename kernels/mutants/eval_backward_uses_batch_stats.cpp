// eval_backward_uses_batch_stats (section backward).
// Defect: Backward inference ignores the running statistics and computes the training gradient
//   through the batch mean and variance recomputed from src.
// Imitates: pytorch/xla #913, torch/nn PR #768 (eval-mode backward wrong or reading statistics eval
//   never computed).
// Shows: in every backward inference whose running statistics differ from the batch's.
#include "parent.hpp"

BNM_MUTANT(eval_backward_uses_batch_stats)
