// dy_read_dense (section layouts).
// Defect: The backward reads diff_dst as dense NCHW whatever the layout, while src and diff_src use
//   the problem's strides: x and dy in different memory formats.
// Imitates: pytorch #64039.
// Shows: only in the channels-last named layouts (NHWC, NDHWC), both backward modes.
#include "parent.hpp"

BNM_MUTANT(dy_read_dense)
