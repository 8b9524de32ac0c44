// running_var_includes_eps (section running_stats).
// Defect: The batch variance fed into the running average includes ε (the value that was under the
//   square root): running_var drifts up by f·ε per step.
// Imitates: keras-contrib PR #287.
// Shows: in the running variance; invisible when ε is negligible against the variance (the default
//   1e-5 with var ≈ 1 is off by 1e-5 relative).
#include "parent.hpp"

BNM_MUTANT(running_var_includes_eps)
