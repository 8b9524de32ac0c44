// momentum_swapped (section conventions).
// Defect: The momentum is read in the Keras sense (weight of the old value) although the convention
//   claimed is PyTorch's: the new batch is weighed 1 − m instead of m. momentum = None is
//   unaffected.
// Imitates: pytorch/examples #289, pytorch2keras #70, onnxscript PR #1289.
// Shows: in the running statistics, unless m = 0.5 (the symmetric default hides nothing else: 0.1
//   vs 0.9 is large).
#include "parent.hpp"

BNM_MUTANT(momentum_swapped)
