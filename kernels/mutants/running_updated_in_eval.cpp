// running_updated_in_eval (section running_stats).
// Defect: Forward inference runs the training branch's momentum update after normalizing: it writes
//   running_mean and running_var, which are read-only inputs in eval. bnoracle maps inputs read-
//   only in the checking child, so the write is a fault there (and an input modification without
//   isolation).
// Imitates: mxnet #14357 family (running statistics updated in eval mode).
// Shows: in every forward inference with C > 0 and L > 0 (a fault, exit 3): the one mutant whose
//   bug is a write to an input.
#include "parent.hpp"

BNM_MUTANT(running_updated_in_eval)
