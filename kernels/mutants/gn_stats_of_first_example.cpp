// gn_stats_of_first_example (section family_tails).
// Defect: Group norm computes each group's statistics for example 0 and uses them for every
// example, as a launch grid that covers one example would. Imitates: tt-metal #26622 (correct on
// one grid, wrong on another), tt-metal #14222. Shows: group norm with N ≥ 2 and examples that
// differ.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(gn_stats_of_first_example)
