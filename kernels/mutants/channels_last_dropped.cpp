// channels_last_dropped (section family_strides).
// Defect: Group and instance norm ignore the channels-last layout and read and write memory as
// NCHW. Imitates: pytorch #111824. Shows: every channels-last group or instance norm case.
#include "family_parent.hpp"

BNM_FAMILY_MUTANT(channels_last_dropped)
