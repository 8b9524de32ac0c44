// A program whose bnoracle::gtest tests must fail: a bundled kernel with a wrong running
// variance and a crash in backward inference, and one that claims no layout (nothing judged).
// tests/gtest_failing.cmake runs it and checks that the failures name the case, the mode, the
// output and a reproduction command.
#include "bnoracle/gtest.hpp"

#include <cstdlib>
#include <memory>
#include <string>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must point at the bundled kernels"
#endif

namespace {

// The two_pass kernel with two defects.
class defective : public bnoracle::bn_kernel {
 public:
  defective()
      : inner_(bnoracle::load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_two_pass.so")) {}
  [[nodiscard]] const bnoracle::kernel_info& info() const override { return inner_->info(); }
  bnk_status run(bnoracle::bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    if (mode == bnoracle::bn_mode::backward_inference) std::abort();
    const bnk_status s = inner_->run(mode, problem, buffers, message);
    if (s == BNK_OK && mode == bnoracle::bn_mode::forward_training && problem.track_running != 0) {
      for (std::int64_t c = 0; c < problem.shape.dims[1]; ++c) buffers.running_var[c] *= 0.75F;
    }
    return s;
  }

 private:
  std::unique_ptr<bnoracle::bn_kernel> inner_;
};

std::unique_ptr<bnoracle::bn_kernel> make_defective() {
  return std::make_unique<defective>();
}

// The two_pass kernel claiming no layout: every call is skipped, nothing is judged.
class no_layouts : public bnoracle::bn_kernel {
 public:
  no_layouts()
      : inner_(bnoracle::load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_two_pass.so")),
        info_(inner_->info()) {
    info_.layouts = 0;
  }
  [[nodiscard]] const bnoracle::kernel_info& info() const override { return info_; }
  bnk_status run(bnoracle::bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    return inner_->run(mode, problem, buffers, message);
  }

 private:
  std::unique_ptr<bnoracle::bn_kernel> inner_;
  bnoracle::kernel_info info_;
};

std::unique_ptr<bnoracle::bn_kernel> make_no_layouts() {
  return std::make_unique<no_layouts>();
}

}  // namespace

BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(DefectiveCatalog, make_defective, .properties = false,
                                        .filter = "exact/basic/nchw");
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(DefectiveProperty, make_defective, .property_cases = 30,
                                        .catalog = false, .filter = "property/momentum_convention");
BNORACLE_CONFORMANCE_SUITE_WITH_OPTIONS(NothingJudged, make_no_layouts, .properties = false,
                                        .filter = "exact/basic");
