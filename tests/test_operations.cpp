// The operations beside the four modes (kernel_abi.h): the SyncBN merge and folding, through the
// ABI's appended entry points, `invoke_syncbn_merge` and `invoke_fold`.
//
// What is asserted: how a table's size decides whether the appended entry points are read; that
// the bundled C++ kernels provide both operations and the minimal C kernel neither; bit-for-bit
// agreement with the reference's goldens on data where every float32 operation is exact (the
// derivations are next to each case); the empty merge; and that bad requests are rejected
// before any kernel runs. Accuracy on general data is the conformance catalog's business
// (`fold/...`, `syncbn/...` cases, judged with the error model).
#include "bnoracle/invoke.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must name the directory of the built kernels"
#endif

namespace bnoracle {
namespace {

std::unique_ptr<bn_kernel> load(const std::string& name) {
  return load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + name + ".so");
}

const char* const k_cpp_kernels[] = {"two_pass", "welford", "pairwise", "blocked_threads",
                                     "compensated"};

int merge_entry(const bnk_syncbn_problem* /*p*/, const bnk_syncbn_buffers* /*b*/, char* /*m*/,
                std::size_t /*n*/) {
  return BNK_OK;
}

int fold_entry(const bnk_fold_problem* /*p*/, const bnk_fold_buffers* /*b*/, char* /*m*/,
               std::size_t /*n*/) {
  return BNK_OK;
}

int mode_entry(const bnk_problem* /*p*/, const bnk_buffers* /*b*/, char* /*m*/, std::size_t /*n*/) {
  return BNK_OK;
}

bnk_kernel table_of_size(std::uint32_t size) {
  bnk_kernel t{};
  t.abi_version = BNK_ABI_VERSION;
  t.struct_size = size;
  t.name = "sized";
  t.convention = "pytorch";
  t.layouts = BNK_LAYOUT_NC;
  t.forward_inference = mode_entry;
  t.syncbn_merge = merge_entry;
  t.fold = fold_entry;
  return t;
}

TEST(KernelTable, AFirstVersionOneTableIsAcceptedWithoutTheAppendedOperations) {
  // A table compiled before syncbn_merge and fold existed: bnoracle must not read past it, so
  // whatever lies behind it (here: non-NULL pointers) is ignored.
  const bnk_kernel t = table_of_size(static_cast<std::uint32_t>(BNK_KERNEL_V1_BASE_SIZE));
  const auto k = wrap_table(&t);
  EXPECT_FALSE(k->info().syncbn_merge);
  EXPECT_FALSE(k->info().fold);
  std::string message;
  EXPECT_EQ(k->run_fold(bnk_fold_problem{}, bnk_fold_buffers{}, message), BNK_UNSUPPORTED);
  EXPECT_NE(message.find("not provided"), std::string::npos) << message;
}

TEST(KernelTable, AFullTableProvidesTheAppendedOperations) {
  const bnk_kernel t = table_of_size(sizeof(bnk_kernel));
  const auto k = wrap_table(&t);
  EXPECT_TRUE(k->info().syncbn_merge);
  EXPECT_TRUE(k->info().fold);
}

TEST(KernelTable, ATableSmallerThanTheFirstVersionOneTableIsRejected) {
  const bnk_kernel t = table_of_size(static_cast<std::uint32_t>(BNK_KERNEL_V1_BASE_SIZE - 8));
  EXPECT_THROW((void)wrap_table(&t), plugin_error);
}

TEST(Operations, TheCppKernelsProvideBothAndTheMinimalKernelNeither) {
  for (const char* name : k_cpp_kernels) {
    const auto k = load(name);
    EXPECT_TRUE(k->info().syncbn_merge) << name;
    EXPECT_TRUE(k->info().fold) << name;
  }
  const auto minimal = load("minimal");
  EXPECT_FALSE(minimal->info().syncbn_merge);
  EXPECT_FALSE(minimal->info().fold);
  fold_request f;
  f.out_channels = 1;
  f.fan_in = 1;
  f.weight = {1};
  f.gamma = {1};
  f.beta = {0};
  f.running_mean = {0};
  f.running_var = {1};
  EXPECT_EQ(invoke_fold(*minimal, f, {}).status, BNK_UNSUPPORTED);
}

// Shards where float32 arithmetic is exact: counts {2, 6}, means {1, 3}, variances {1, 1/2}.
// n = 8, Σ nₖmₖ = 2 + 18 = 20, mean = 2.5; M2 = 2·1 + 2·1.5² + 6·0.5 + 6·0.5² = 11,
// var = 1.375; every product, sum and quotient is a short dyadic number. A second channel has
// means {−4, −4} and variances {0, 0}: mean −4, var 0. ε = 0.25 makes invstd exact for channel 2
// (1/sqrt(0.25) = 2), and momentum 0.5 the running mean (0.5·old + 0.5·mean).
syncbn_request exact_merge() {
  syncbn_request q;
  q.channels = 2;
  q.counts = {2, 6};
  q.shard_mean = {1.0F, -4.0F, 3.0F, -4.0F};  // shard-major
  q.shard_var = {1.0F, 0.0F, 0.5F, 0.0F};
  q.eps = 0.25;
  q.momentum = 0.5;
  q.running_mean = {0.5F, 1.0F};
  q.running_var = {2.0F, 4.0F};
  q.num_batches_tracked = 3;
  return q;
}

TEST(Operations, AnExactMergeGivesTheGoldensBitForBit) {
  const syncbn_request q = exact_merge();
  bn_problem p;
  p.eps = q.eps;
  p.momentum = q.momentum;
  for (const char* name : k_cpp_kernels) {
    const auto k = load(name);
    const op_result r = invoke_syncbn_merge(*k, q, {});
    ASSERT_TRUE(r.ok()) << name << ": " << r.describe();
    EXPECT_EQ(r.num_batches_tracked, 4) << name;
    for (std::size_t c = 0; c < 2; ++c) {
      std::vector<shard_stats_f32> shards;
      for (std::size_t s = 0; s < 2; ++s) {
        shards.push_back({q.counts[s], q.shard_mean[s * 2 + c], q.shard_var[s * 2 + c]});
      }
      const syncbn_result ref =
          syncbn_merge(p, shards, q.running_mean[c], q.running_var[c], q.num_batches_tracked);
      EXPECT_EQ(r.outputs.at("mean")[c], ref.mean.round().value) << name << " c=" << c;
      EXPECT_EQ(r.outputs.at("var")[c], ref.var.round().value) << name << " c=" << c;
      EXPECT_EQ(r.outputs.at("running_mean")[c], ref.running.mean.round().value)
          << name << " c=" << c;
    }
    EXPECT_EQ(r.outputs.at("mean")[0], 2.5F);  // the derivation above, as a cross-check
    EXPECT_EQ(r.outputs.at("var")[0], 1.375F);
    EXPECT_EQ(r.outputs.at("invstd")[1], 2.0F);
  }
}

TEST(Operations, AMergeOfEmptyShardsHasNoStatisticsAndKeepsTheRunningOnes) {
  syncbn_request q = exact_merge();
  q.counts = {0, 0};
  q.shard_mean = {0, 0, 0, 0};
  q.shard_var = {0, 0, 0, 0};
  const auto k = load("two_pass");
  const op_result r = invoke_syncbn_merge(*k, q, {});
  ASSERT_TRUE(r.ok()) << r.describe();
  for (const char* o : {"mean", "var", "invstd"}) {
    for (const float v : r.outputs.at(o)) EXPECT_TRUE(std::isnan(v)) << o;
  }
  EXPECT_EQ(r.outputs.at("running_mean"), q.running_mean);
  EXPECT_EQ(r.outputs.at("running_var"), q.running_var);
  EXPECT_EQ(r.num_batches_tracked, 4);  // the step still counts, as for an empty batch
}

// A fold where every operation is exact: var + ε = 3 + 1 = 4, s = γ/2 = 1.5; W' = W·1.5 and
// b' = (5 − 1)·1.5 + 0.5 = 6.5; without a bias b' = (0 − 1)·1.5 + 0.5 = −1.
TEST(Operations, AnExactFoldGivesTheGoldensBitForBit) {
  for (const bool with_bias : {true, false}) {
    fold_request q;
    q.out_channels = 1;
    q.fan_in = 3;
    q.weight = {2.0F, -0.5F, 4.0F};
    if (with_bias) q.bias = {5.0F};
    q.gamma = {3.0F};
    q.beta = {0.5F};
    q.running_mean = {1.0F};
    q.running_var = {3.0F};
    q.eps = 1.0;
    const fold_reference ref(
        fold_inputs{1, 3, q.weight, q.bias, q.gamma, q.beta, q.running_mean, q.running_var, q.eps});
    for (const char* name : k_cpp_kernels) {
      const auto k = load(name);
      const op_result r = invoke_fold(*k, q, {});
      ASSERT_TRUE(r.ok()) << name << ": " << r.describe();
      for (std::int64_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r.outputs.at("weight")[static_cast<std::size_t>(i)], ref.weight(i).round().value)
            << name;
      }
      EXPECT_EQ(r.outputs.at("bias")[0], ref.bias(0).round().value) << name;
      EXPECT_EQ(r.outputs.at("bias")[0], with_bias ? 6.5F : -1.0F) << name;
    }
  }
}

TEST(Operations, MalformedRequestsAreRejectedBeforeTheKernelRuns) {
  const auto k = load("two_pass");
  syncbn_request q = exact_merge();
  q.shard_var.pop_back();
  EXPECT_THROW((void)invoke_syncbn_merge(*k, q, {}), std::invalid_argument);
  q = exact_merge();
  q.counts = {2, -1};
  EXPECT_THROW((void)invoke_syncbn_merge(*k, q, {}), std::invalid_argument);
  q.counts.clear();
  EXPECT_THROW((void)invoke_syncbn_merge(*k, q, {}), std::invalid_argument);
  fold_request f;
  f.out_channels = 2;
  f.fan_in = 2;
  f.weight = {1, 2, 3};
  EXPECT_THROW((void)invoke_fold(*k, f, {}), std::invalid_argument);
}

}  // namespace
}  // namespace bnoracle
