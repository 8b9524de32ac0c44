// ignores_strides (section layouts).
// Defect: Every tensor in a named layout is read and written with dense NCHW strides whatever the
//   layout says (the strided path is right): NHWC and NDHWC data are reduced over the wrong
//   elements.
// Imitates: pytorch #62594, #63224, deeplearning4j #8597, tfjs #1106.
// Shows: only in NHWC and NDHWC (and only with C > 1 and spatial > 1).
#include "parent.hpp"

BNM_MUTANT(ignores_strides)
