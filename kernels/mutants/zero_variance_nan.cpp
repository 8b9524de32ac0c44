// zero_variance_nan (section nan).
// Defect: The normalization is split as x̂ = (x − μ)/√var, then y = γ·x̂·√(var/(var + ε)) + β: for
//   a constant channel (var = 0) x̂ = 0/0 = NaN where the answer is β.
// Imitates: ROCm/pytorch #657 (zero-variance channels producing NaN on one backend).
// Shows: only for a channel of variance exactly 0 (constant data, or a running variance of 0 in
//   eval).
#include "parent.hpp"

BNM_MUTANT(zero_variance_nan)
