// instance_norm (section train_eval).
// Defect: Forward training normalizes each (n, c) instance with the mean and variance of its own
//   spatial positions — instance normalization — instead of the channel's statistics over batch and
//   space. The saved and running statistics are the channel's (right).
// Imitates: tvm PR #18609.
// Shows: only when N > 1: N = 1 is batch norm exactly (with spatial size 1 every y becomes β).
#include "parent.hpp"

BNM_MUTANT(instance_norm)
