// inference_scale_shift (section overflow).
// Defect: Forward inference computes y = x·s + (β − μ·s) with s = γ·r. For |x| and |μ| near
//   FLT_MAX the products x·s and μ·s overflow (Inf − Inf = NaN, or ±Inf) where (x − μ)·s + β is
//   finite: the overflow class of pytorch #162489 (an intermediate overflows, the result would
//   not). Its rounding on offset data, u·|γ|r·(|x| + |μ|), is NOT a defect: the error model
//   accepts it (docs/error-model.md, "scale and shift", fwd_scale_shift), because PyTorch's CPU
//   kernel and oneDNN compute inference in this form.
// Imitates: the folded-affine inference path of many runtimes, at the top of the float range.
// Shows: only in forward inference with values near FLT_MAX (the property suite's inference
//   cases draw any float32).
#include "parent.hpp"

BNM_MUTANT(inference_scale_shift)
