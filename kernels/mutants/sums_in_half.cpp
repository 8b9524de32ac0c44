// sums_in_half (section low_precision).
// Defect: The forward statistics' accumulators (Σx and Σ(x − μ)²) are half precision: rounded to
//   binary16 after every addition (emulated on the float32 bits), with 11 significant bits and
//   overflow to Inf past 65504.
// Imitates: pytorch #147303 (half-precision accumulation in batch norm).
// Shows: on almost any data: large L or large values lose digits or overflow; the backward is
//   float32.
#include "parent.hpp"

BNM_MUTANT(sums_in_half)
