// late_rstd (section overflow).
// Defect: The output is formed as (γ·(x − μ))·r + β: the product γ·(x − μ) is rounded before the
//   scaling by r, so it overflows to ±Inf for |x| near FLT_MAX (or a large γ) while the true y is
//   finite. Ordinary data give the same values within a rounding.
// Imitates: pytorch #162489 ((x − μ)² overflowing for |x| ≈ 1e30) — the same class: an intermediate
//   leaves float32's range that the result does not.
// Shows: only with huge magnitudes (|γ·(x − μ)| > FLT_MAX), in either forward mode.
#include "parent.hpp"

BNM_MUTANT(late_rstd)
