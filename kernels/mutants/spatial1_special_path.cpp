// spatial1_special_path (section degenerate).
// Defect: When the spatial size is 1 (NC, or N×C×1×1) a special N×C path normalizes with a var()
//   helper whose default is the unbiased M2/(N − 1) instead of M2/N; the other shapes take the
//   general path and are right.
// Imitates: oneDNN #14, MIOpen #248, rocm-libraries PR #2193 (1×256×1×1): spatial size 1 takes
//   special code paths that break.
// Shows: only when the spatial size is 1; largest at N = 2 (y off by √2).
#include "parent.hpp"

BNM_MUTANT(spatial1_special_path)
