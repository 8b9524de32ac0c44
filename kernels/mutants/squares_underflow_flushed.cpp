// squares_underflow_flushed (section overflow).
// Defect: The squares (x − μ)² of the variance pass are flushed to zero when they fall below
//   FLT_MIN (what FTZ hardware does to subnormal results), so a channel whose spread is below about
//   1e-19 gets variance 0.
// Imitates: tt-metal #52614 (squares underflow for |x − μ| < 1e-19).
// Shows: only with a tiny spread (|x − μ| < 1.1e-19) and an ε small against the true variance (ε =
//   0 shows it best).
#include "parent.hpp"

BNM_MUTANT(squares_underflow_flushed)
