// masked_lanes_centred (section family_tails).
// Defect: A row is processed in 16-wide lanes; the masked tail lanes hold 0 and are centred with
// the rest, so (0 − μ)² leaks into Σ(x − μ)². Imitates: Liger-Kernel PR #519 (issue #518: hidden
// size 1536 is fine, others not). Shows: rows whose length is not a multiple of 16 and whose mean
// is not 0.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(masked_lanes_centred)
