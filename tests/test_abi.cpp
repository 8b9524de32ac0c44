// ABI version 2 (adapters/include/bnoracle/kernel_abi.h): what bnoracle accepts in a version-2
// table, how it translates problems between the versions, how it chooses the version a library
// exports, and the bundled kernel template's statistic groups for every op of the family.
//
// The template's ops are checked by identities that hold bit for bit, because both sides sum the
// same float32 values in the same order (no tolerance involved): group norm with G = C is
// instance norm; instance norm of (N, C, ...) is batch norm of each example; layer norm over
// (C, spatial...) is group norm with G = 1; RMS norm is layer norm on rows whose float32 sum is
// exactly 0; γ = 2 per normalized element doubles the output exactly.
#include "bnoracle/invoke.hpp"
#include "bnoracle/kernel.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must name the directory of the built kernels"
#endif
#ifndef BNORACLE_ABI_KERNEL
#error "BNORACLE_ABI_KERNEL must name the all-ops test plugin"
#endif

namespace bnoracle {
namespace {

int v2_entry(const bnk_problem_v2* /*p*/, const bnk_buffers_v2* /*b*/, char* /*m*/,
             std::size_t /*n*/) {
  return BNK_OK;
}

bnk_kernel_v2 valid_table() {
  bnk_kernel_v2 t{};
  t.abi_version = BNK_ABI_VERSION_2;
  t.struct_size = sizeof t;
  t.name = "v2";
  t.convention = "pytorch";
  t.ops = BNK_OP_BIT(BNK_OP_BATCH_NORM) | BNK_OP_BIT(BNK_OP_RMS_NORM);
  t.layouts = BNK_LAYOUT_NCHW;
  t.data_types = BNK_DTYPE_BIT(BNK_DTYPE_F32) | BNK_DTYPE_BIT(BNK_DTYPE_BF16);
  t.parameter_types = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  t.statistic_types = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  t.forward_inference = v2_entry;
  return t;
}

std::string refusal_of(const bnk_kernel_v2& t) {
  try {
    (void)wrap_table(&t);
  } catch (const plugin_error& e) {
    return e.what();
  }
  return "";
}

TEST(AbiV2Table, AValidTableDescribesItsOpsAndDataTypes) {
  const bnk_kernel_v2 t = valid_table();
  const auto k = wrap_table(&t);
  const kernel_info& info = k->info();
  EXPECT_EQ(info.abi_version, 2);
  EXPECT_TRUE(info.supports(op_kind::batch_norm));
  EXPECT_TRUE(info.supports(op_kind::rms_norm));
  EXPECT_FALSE(info.supports(op_kind::layer_norm));
  EXPECT_TRUE(info.supports(data_types{}));
  EXPECT_TRUE(
      info.supports(data_types{format_id::bfloat16, format_id::float32, format_id::float32}));
  EXPECT_FALSE(
      info.supports(data_types{format_id::float16, format_id::float32, format_id::float32}));
  EXPECT_FALSE(
      info.supports(data_types{format_id::bfloat16, format_id::bfloat16, format_id::float32}));
  EXPECT_TRUE(info.supports(bn_mode::forward_inference));
  EXPECT_FALSE(info.supports(bn_mode::forward_training));
}

TEST(AbiV2Table, MalformedTablesAreRefusedWithTheField) {
  bnk_kernel_v2 t = valid_table();
  t.abi_version = 1;
  EXPECT_NE(refusal_of(t).find("ABI version 1 in a bnoracle_kernel_v2 table"), std::string::npos)
      << refusal_of(t);
  t = valid_table();
  t.struct_size = sizeof t - 8;
  EXPECT_NE(refusal_of(t).find("smaller"), std::string::npos) << refusal_of(t);
  t = valid_table();
  t.ops = 0;
  EXPECT_NE(refusal_of(t).find("'ops'"), std::string::npos) << refusal_of(t);
  t.ops = 1U << 7;  // no such op
  EXPECT_NE(refusal_of(t).find("'ops'"), std::string::npos) << refusal_of(t);
  t = valid_table();
  t.parameter_types = 0;
  EXPECT_NE(refusal_of(t).find("'parameter_types'"), std::string::npos) << refusal_of(t);
  t = valid_table();
  t.statistic_types = 1U << 5;  // no such data type
  EXPECT_NE(refusal_of(t).find("'statistic_types'"), std::string::npos) << refusal_of(t);
  t = valid_table();
  t.convention = "no_such_convention";
  EXPECT_NE(refusal_of(t).find("convention"), std::string::npos) << refusal_of(t);
  // A version-1 table that says version 2 points the author at the other symbol.
  bnk_kernel v1{};
  v1.abi_version = BNK_ABI_VERSION_2;
  v1.struct_size = sizeof v1;
  v1.name = "v1";
  v1.convention = "pytorch";
  try {
    (void)wrap_table(&v1);
    ADD_FAILURE() << "a version-1 table claiming version 2 was accepted";
  } catch (const plugin_error& e) {
    EXPECT_NE(std::string(e.what()).find(BNK_ENTRY_SYMBOL_V2), std::string::npos) << e.what();
  }
}

bn_problem nchw(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
  bn_problem p;
  p.n = n;
  p.c = c;
  p.spatial = {h, w};
  return p;
}

bool same(const bnk_shape& a, const bnk_shape& b) {
  bool eq = a.rank == b.rank && a.layout == b.layout;
  for (int i = 0; i < 5; ++i) eq = eq && a.dims[i] == b.dims[i] && a.strides[i] == b.strides[i];
  return eq;
}

bool same(const bnk_problem& a, const bnk_problem& b) {
  return a.struct_size == b.struct_size && same(a.shape, b.shape) && a.eps == b.eps &&
         a.momentum == b.momentum && a.cumulative == b.cumulative && a.affine == b.affine &&
         a.track_running == b.track_running;
}

bool same(const bnk_problem_v2& a, const bnk_problem_v2& b) {
  const bool op = a.op.kind == b.op.kind && a.op.normalized_axes == b.op.normalized_axes &&
                  a.op.groups == b.op.groups && a.op.centred == b.op.centred &&
                  a.op.params == b.op.params && a.op.weight_offset == b.op.weight_offset &&
                  a.op.running_stats == b.op.running_stats;
  const bool types = a.types.data == b.types.data && a.types.parameters == b.types.parameters &&
                     a.types.statistics == b.types.statistics;
  return a.struct_size == b.struct_size && op && types && same(a.shape, b.shape) &&
         a.statistic_groups == b.statistic_groups && a.group_size == b.group_size &&
         a.parameters == b.parameters && a.running_size == b.running_size && a.eps == b.eps &&
         a.momentum == b.momentum && a.cumulative == b.cumulative &&
         a.track_running == b.track_running;
}

TEST(AbiV2Translation, ABatchNormProblemIsTheSameInBothVersions) {
  for (const bool affine : {true, false}) {
    for (const bool track : {true, false}) {
      bn_problem p = nchw(2, 3, 4, 5);
      p.mem_layout = layout::nhwc;
      p.momentum = std::nullopt;
      const geometry g(p);
      const bnk_problem v1 = to_abi(p, g, affine, track);
      const bnk_problem_v2 v2 = to_abi_v2(p, g, affine, track);
      EXPECT_EQ(v2.op.kind, BNK_OP_BATCH_NORM);
      EXPECT_EQ(v2.op.params, affine ? BNK_PARAMS_PER_CHANNEL : BNK_PARAMS_NONE);
      EXPECT_EQ(v2.statistic_groups, 3);
      EXPECT_EQ(v2.group_size, 2 * 4 * 5);
      EXPECT_EQ(v2.parameters, affine ? 3 : 0);
      EXPECT_EQ(v2.running_size, 3);
      // to_v1 and to_v2 are each other's inverse on batch norm in float32 (field by field: the
      // structs have padding).
      const std::optional<bnk_problem> back = to_v1(v2);
      ASSERT_TRUE(back.has_value());
      EXPECT_TRUE(same(*back, v1));
      EXPECT_TRUE(same(to_v2(v1), v2));
    }
  }
}

TEST(AbiV2Translation, OtherOpsAndTypesHaveNoVersionOneForm) {
  bn_problem p = nchw(2, 4, 3, 3);
  const geometry g(p);
  p.op = layer_norm_op(2);
  bnk_problem_v2 v2 = to_abi_v2(p, g, true, false);
  EXPECT_EQ(v2.statistic_groups, 2 * 4);  // one per (n, c): the last two axes are normalized
  EXPECT_EQ(v2.group_size, 9);
  EXPECT_EQ(v2.parameters, 9);
  EXPECT_EQ(v2.running_size, 0);
  EXPECT_FALSE(to_v1(v2).has_value());
  p.op = group_norm_op(2);
  v2 = to_abi_v2(p, g, true, false);
  EXPECT_EQ(v2.statistic_groups, 2 * 2);
  EXPECT_EQ(v2.group_size, 2 * 9);
  EXPECT_EQ(v2.parameters, 4);
  EXPECT_FALSE(to_v1(v2).has_value());
  p.op = batch_norm_op();
  p.types.data = format_id::bfloat16;
  EXPECT_FALSE(to_v1(to_abi_v2(p, g, true, false)).has_value());
  p.op = group_norm_op(3);  // does not divide C = 4
  p.types = {};
  EXPECT_THROW((void)to_abi_v2(p, g, true, false), invalid_problem);
}

// A C++ kernel written against version 1 only (it implements `run`).
class v1_only final : public bn_kernel {
 public:
  v1_only() {
    info_.name = "v1_only";
    info_.convention = "pytorch";
    info_.layouts = BNK_LAYOUT_NCHW;
    info_.modes[static_cast<int>(bn_mode::forward_inference)] = true;
  }
  [[nodiscard]] const kernel_info& info() const override { return info_; }
  bnk_status run(bn_mode /*mode*/, const bnk_problem& p, const bnk_buffers& b,
                 std::string& /*message*/) override {
    ++calls;
    const auto n = p.shape.dims[0] * p.shape.dims[1] * p.shape.dims[2] * p.shape.dims[3];
    for (std::int64_t i = 0; i < n; ++i) b.dst[i] = b.src[i];
    return BNK_OK;
  }
  int calls = 0;

 private:
  kernel_info info_;
};

call_request inference_request(const bn_problem& p) {
  call_request q;
  q.mode = bn_mode::forward_inference;
  q.problem = p;
  const geometry g(p);
  q.src.assign(static_cast<std::size_t>(g.elements()), 1.0F);
  q.affine = false;
  if (p.op.running_stats) {
    q.running_mean.assign(static_cast<std::size_t>(g.c()), 0.0F);
    q.running_var.assign(static_cast<std::size_t>(g.c()), 1.0F);
  }
  return q;
}

TEST(AbiV2Translation, AVersionOneKernelGetsBatchNormAndAnswersUnsupportedToTheRest) {
  v1_only k;
  const call_options inline_call{.isolate = false};
  const call_result bn = invoke(k, inference_request(nchw(1, 2, 2, 2)), inline_call);
  ASSERT_TRUE(bn.ok()) << bn.describe();
  EXPECT_EQ(k.calls, 1);
  bn_problem p = nchw(1, 2, 2, 2);
  p.op = layer_norm_op(1);
  const call_result ln = invoke(k, inference_request(p), inline_call);
  EXPECT_EQ(ln.status, BNK_UNSUPPORTED) << ln.describe();
  EXPECT_NE(ln.message.find("version 1"), std::string::npos) << ln.message;
  EXPECT_EQ(k.calls, 1);  // never called with a problem it cannot read
}

TEST(AbiV2Loading, BundledKernelsAreVersionTwoAndTheMutationCatalogVersionOne) {
  // The correct kernels implement every op; the minimal C kernel batch norm only.
  const std::uint32_t all = BNK_OP_BIT(BNK_OP_BATCH_NORM) | BNK_OP_BIT(BNK_OP_LAYER_NORM) |
                            BNK_OP_BIT(BNK_OP_RMS_NORM) | BNK_OP_BIT(BNK_OP_GROUP_NORM) |
                            BNK_OP_BIT(BNK_OP_INSTANCE_NORM);
  for (const char* name :
       {"two_pass", "welford", "pairwise", "blocked_threads", "compensated", "minimal"}) {
    const auto k = load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + name + ".so");
    EXPECT_EQ(k->info().abi_version, 2) << name;
    EXPECT_EQ(k->info().ops, std::string(name) == "minimal" ? BNK_OP_BIT(BNK_OP_BATCH_NORM) : all)
        << name;
  }
  const auto parent = load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/mutants/libbnm_parent.so");
  EXPECT_EQ(parent->info().abi_version, 1);
  EXPECT_TRUE(parent->info().supports(op_kind::batch_norm));
  EXPECT_FALSE(parent->info().supports(op_kind::layer_norm));
}

TEST(AbiV2Loading, ALibraryExportingBothVersionsIsLoadedAsVersionTwo) {
  const auto k = load_plugin(BNORACLE_ABI_KERNEL);
  EXPECT_EQ(k->info().name, "all_ops");
  EXPECT_EQ(k->info().abi_version, 2);
}

// ---- The kernel template over every op ----------------------------------------------------------

struct outputs {
  std::vector<float> y, save_mean, save_stat, dx, dgamma, dbeta;
};

class TemplateOps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { kernel_ = load_plugin(BNORACLE_ABI_KERNEL); }
  static void TearDownTestSuite() { kernel_.reset(); }

  // Forward training and backward training (with the saved statistics) of `p` on x, dy.
  static outputs run(const bn_problem& p, const std::vector<float>& x, const std::vector<float>& dy,
                     const std::vector<float>& gamma = {}, const std::vector<float>& beta = {}) {
    call_request q;
    q.problem = p;
    q.affine = !gamma.empty();
    q.gamma = gamma;
    q.beta = beta;
    q.src = x;
    q.mode = bn_mode::forward_training;
    const call_options options{.isolate = false};
    const call_result f = invoke(*kernel_, q, options);
    EXPECT_TRUE(f.ok()) << describe(p) << ": " << f.describe();
    outputs o{f.dst, f.save_mean, f.save_stat, {}, {}, {}};
    q.mode = bn_mode::backward_training;
    q.diff_dst = dy;
    q.save_mean = f.save_mean;
    q.save_stat = f.save_stat;
    const call_result b = invoke(*kernel_, q, options);
    EXPECT_TRUE(b.ok()) << describe(p) << ": " << b.describe();
    o.dx = b.diff_src;
    o.dgamma = b.diff_gamma;
    o.dbeta = b.diff_beta;
    return o;
  }

  static std::vector<float> random(std::size_t n, std::uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> d(-2.0F, 3.0F);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen);
    return v;
  }

  static std::vector<float> slice(const std::vector<float>& v, std::size_t first,
                                  std::size_t count) {
    return {v.begin() + static_cast<std::ptrdiff_t>(first),
            v.begin() + static_cast<std::ptrdiff_t>(first + count)};
  }

  static std::unique_ptr<bn_kernel> kernel_;
};

std::unique_ptr<bn_kernel> TemplateOps::kernel_;

TEST_F(TemplateOps, GroupNormWithOneChannelPerGroupIsInstanceNorm) {
  for (const layout l : {layout::nchw, layout::nhwc}) {
    bn_problem p = nchw(3, 4, 2, 5);
    p.mem_layout = l;
    const auto x = random(3 * 4 * 10, 1);
    const auto dy = random(3 * 4 * 10, 2);
    const std::vector<float> gamma{0.5F, 2.0F, -1.0F, 3.0F}, beta{1.0F, 0.0F, -2.0F, 0.25F};
    p.op = instance_norm_op();
    const outputs in = run(p, x, dy, gamma, beta);
    p.op = group_norm_op(4);
    const outputs gn = run(p, x, dy, gamma, beta);
    EXPECT_EQ(in.y, gn.y);
    EXPECT_EQ(in.save_mean, gn.save_mean);
    EXPECT_EQ(in.save_stat, gn.save_stat);
    EXPECT_EQ(in.dx, gn.dx);
    EXPECT_EQ(in.dgamma, gn.dgamma);
    EXPECT_EQ(in.dbeta, gn.dbeta);
    EXPECT_EQ(in.save_mean.size(), 12U);  // one statistic per (n, c)
  }
}

TEST_F(TemplateOps, InstanceNormIsBatchNormOfEachExample) {
  const std::int64_t N = 3, C = 2, S = 6;
  bn_problem p = nchw(N, C, 2, 3);
  const auto x = random(N * C * S, 3);
  const auto dy = random(N * C * S, 4);
  const std::vector<float> gamma{1.5F, -0.5F}, beta{0.0F, 1.0F};
  p.op = instance_norm_op();
  const outputs in = run(p, x, dy, gamma, beta);
  for (std::int64_t n = 0; n < N; ++n) {
    bn_problem one = nchw(1, C, 2, 3);
    const auto first = static_cast<std::size_t>(n * C * S);
    const auto count = static_cast<std::size_t>(C * S);
    const outputs bn = run(one, slice(x, first, count), slice(dy, first, count), gamma, beta);
    EXPECT_EQ(slice(in.y, first, count), bn.y) << "n=" << n;
    EXPECT_EQ(slice(in.dx, first, count), bn.dx) << "n=" << n;
    EXPECT_EQ(slice(in.save_stat, static_cast<std::size_t>(n * C), C), bn.save_stat);
  }
  // dβ_c is one sequential sum over channel c's elements in logical order (n, then spatial):
  // batch norm's dβ of the whole batch. dγ_c is the same sum of dy·((x − μ_nc)·r_nc), each
  // example with its own statistics.
  const outputs whole = run(nchw(N, C, 2, 3), x, dy, gamma, beta);  // batch norm
  EXPECT_EQ(in.dbeta, whole.dbeta);
  for (std::int64_t c = 0; c < C; ++c) {
    float dgamma = 0.0F;
    for (std::int64_t n = 0; n < N; ++n) {
      const auto g = static_cast<std::size_t>(n * C + c);
      for (std::int64_t s = 0; s < S; ++s) {
        const auto i = static_cast<std::size_t>((n * C + c) * S + s);
        dgamma += dy[i] * ((x[i] - in.save_mean[g]) * in.save_stat[g]);
      }
    }
    EXPECT_EQ(in.dgamma[static_cast<std::size_t>(c)], dgamma) << "c=" << c;
  }
}

TEST_F(TemplateOps, LayerNormOverEveryAxisButTheBatchIsGroupNormWithOneGroup) {
  for (const layout l : {layout::nchw, layout::nhwc}) {
    bn_problem p = nchw(4, 3, 2, 2);
    p.mem_layout = l;
    const auto x = random(4 * 12, 5);
    const auto dy = random(4 * 12, 6);
    p.op = layer_norm_op(3);
    p.op.params = param_placement::none;
    const outputs ln = run(p, x, dy);
    p.op = group_norm_op(1);
    p.op.params = param_placement::none;
    const outputs gn = run(p, x, dy);
    EXPECT_EQ(ln.y, gn.y);
    EXPECT_EQ(ln.save_stat, gn.save_stat);
    EXPECT_EQ(ln.dx, gn.dx);
    EXPECT_EQ(ln.save_stat.size(), 4U);  // one statistic per example
  }
}

TEST_F(TemplateOps, RmsNormIsLayerNormOnRowsThatSumToZero) {
  // Rows of the last axis, each (a, −a, b, −b, ...): the sequential float32 sum is exactly 0 at
  // every second step, so the mean is exactly 0 and both ops square the same values in order.
  bn_problem p = nchw(2, 3, 1, 6);
  std::vector<float> x = random(2 * 3 * 6, 7);
  for (std::size_t i = 1; i < x.size(); i += 2) x[i] = -x[i - 1];
  const auto dy = random(x.size(), 8);
  p.op = layer_norm_op(1);
  p.op.params = param_placement::none;
  const outputs ln = run(p, x, dy);
  p.op = rms_norm_op(1);
  p.op.params = param_placement::none;
  const outputs rms = run(p, x, dy);
  for (const float m : ln.save_mean) ASSERT_EQ(m, 0.0F);
  EXPECT_EQ(ln.y, rms.y);
  EXPECT_EQ(ln.save_stat, rms.save_stat);
  EXPECT_EQ(rms.save_stat.size(), 6U);  // one per row (n, c, h)
}

TEST_F(TemplateOps, EmptyShapesOfEveryOpWriteNothingAndSucceed) {
  // N = 0 (bnoracle's problems have C >= 1 and spatial extents >= 1), for every op: no
  // statistic group, or groups of no element, and nothing to divide by.
  for (const bnoracle::op_desc& op :
       {instance_norm_op(), group_norm_op(1), layer_norm_op(1), rms_norm_op(1), layer_norm_op(3)}) {
    for (const bn_problem& shape : {nchw(0, 2, 2, 2), nchw(0, 4, 1, 3)}) {
      bn_problem p = shape;
      p.op = op;
      p.op.params = param_placement::none;
      SCOPED_TRACE(describe(p));
      const outputs o = run(p, {}, {});
      EXPECT_TRUE(o.y.empty());
      EXPECT_TRUE(o.dx.empty());
    }
  }
}

TEST_F(TemplateOps, GammaTwoPerNormalizedElementDoublesTheOutputExactly) {
  bn_problem p = nchw(3, 2, 2, 3);
  const auto x = random(3 * 12, 9);
  const auto dy = random(3 * 12, 10);
  p.op = layer_norm_op(2);
  const std::size_t params = 6;  // the normalized block: 2 × 3
  const outputs one =
      run(p, x, dy, std::vector<float>(params, 1.0F), std::vector<float>(params, 0.0F));
  const outputs two =
      run(p, x, dy, std::vector<float>(params, 2.0F), std::vector<float>(params, 0.0F));
  ASSERT_EQ(one.y.size(), two.y.size());
  for (std::size_t i = 0; i < one.y.size(); ++i) EXPECT_EQ(two.y[i], 2.0F * one.y[i]) << i;
  ASSERT_EQ(one.dgamma.size(), params);  // dγ per normalized element, summed over rows
  EXPECT_EQ(one.dgamma, two.dgamma);     // dγ = Σ dy·x̂ does not depend on γ
  EXPECT_EQ(one.dbeta, two.dbeta);
}

}  // namespace
}  // namespace bnoracle
