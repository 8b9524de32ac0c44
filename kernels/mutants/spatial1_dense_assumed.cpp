// spatial1_dense_assumed (section layouts).
// Defect: When the spatial size is 1 the statistics reduction assumes the channel stride is 1 (true
//   of dense NC and of NHWC) and reads element (n, c) at n·stride_N + c: a transposed or channel-
//   padded strided view gives the statistics of the wrong elements (padding included). The
//   normalization writes through the real strides.
// Imitates: rocm-libraries PR #2193 (1×256×1×1), oneDNN #14; with the strided-view class of pytorch
//   #62594.
// Shows: only with spatial size 1 and a strided view whose channel stride is not 1.
#include "parent.hpp"

BNM_MUTANT(spatial1_dense_assumed)
