// row_index_flattened (section family_strides).
// Defect: A row's base is its flattened index over the leading axes times stride(0), right for 2-D
// input only. Imitates: vllm-xpu-kernels PR #397, FlagGems #5392 (backward assuming 2-D input).
// Shows: layer and RMS norm of 3-D input over the last axis.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(row_index_flattened)
