// in_eval_uses_input_stats (section instance_running).
// Defect: Instance norm with running statistics normalizes in inference by the input's own
// statistics. Imitates: use_input_stats ignored (batch norm's eval_uses_batch_stats, in instance
// norm). Shows: instance norm inference with running statistics.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(in_eval_uses_input_stats)
