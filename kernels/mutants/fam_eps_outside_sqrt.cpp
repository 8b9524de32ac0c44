// fam_eps_outside_sqrt (section family_variance).
// Defect: 1/(√var + ε) instead of 1/√(var + ε), the (x − mean)/(std + eps) of many hand-written
// layer norms. Imitates: ncnn PR #311's bug, in the family. Shows: rows whose variance is not large
// against ε: ε near the variance, ε = 0.5, tiny and constant rows.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(fam_eps_outside_sqrt)
