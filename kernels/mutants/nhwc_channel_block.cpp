// nhwc_channel_block (section layouts).
// Defect: In channels-last layouts the statistics reduce 4 channels at a time over blocks of 256
//   rows; when C is not a multiple of 4 the last, partial channel vector is skipped by the cross-
//   block step, so those channels' statistics come from the first 256 rows only.
// Imitates: apex #1768 (C = 65, H = W = 100 wrong, correct at 10×10).
// Shows: only in NHWC/NDHWC, only for the last C % 4 channels, only when L > 256.
#include "parent.hpp"

BNM_MUTANT(nhwc_channel_block)
