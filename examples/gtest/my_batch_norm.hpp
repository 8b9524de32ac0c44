// A small float32 batch-norm kernel, written the way a kernel author would, that implements
// bnoracle's C++ kernel interface so that bnoracle's conformance suite can test it in-process.
#pragma once

#include <bnoracle/kernel.hpp>

#include <string>

namespace example {

// Batch normalization over every channel of an N x C x spatial tensor in float32:
// - all four modes (forward and backward, training and inference);
// - PyTorch's running statistics: running = (1 - m)·running + m·batch with the unbiased
//   variance, m = momentum or, with momentum=None, 1/num_batches_tracked;
// - two-pass statistics (the mean, then Σ(x − mean)²), every sum pairwise in float;
// - any layout: NC, NCL, NCHW, NHWC, NCDHW, NDHWC and strided views, through the strides.
class my_batch_norm final : public bnoracle::bn_kernel {
 public:
  my_batch_norm();
  [[nodiscard]] const bnoracle::kernel_info& info() const override { return info_; }
  bnk_status run(bnoracle::bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override;

 private:
  bnoracle::kernel_info info_;
};

}  // namespace example
