// Hand-worked cases. Every expected value was derived on paper; decimal expansions of
// irrational values were computed with Python's `decimal` module at 60 digits (a tool that shares
// nothing with the reference), and the expected float32 is glibc's correctly rounded `strtof` of
// that expansion (safe: none of these values is within 10^-50 of a rounding boundary).
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

float f32(const char* decimal) {
  return std::strtof(decimal, nullptr);
}

// The exact value must agree with a 60-digit decimal expansion to 10^-55 relative.
void expect_exact(const exact_value& v, const char* decimal) {
  const hp_float expect(decimal);
  const hp_float got = v.hp();
  EXPECT_LE(mp::abs(got - expect), mp::abs(expect) * hp_float("1e-55"))
      << "exact " << to_decimal(got, 60) << " vs " << decimal;
}

bn_problem nc_problem(std::int64_t n, double eps) {
  bn_problem p;
  p.n = n;
  p.c = 1;
  p.mem_layout = layout::nc;
  p.eps = eps;
  return p;
}

TEST(HandWorked, OneToFourForwardTraining) {
  // x = [1, 2, 3, 4]: μ = 10/4 = 2.5, σ² = ((1.5)² + (0.5)² + (0.5)² + (1.5)²)/4 = 5/4.
  // With ε = 0: invstd = 1/sqrt(5/4) = 2/sqrt(5); x̂ = (x − 2.5)·2/sqrt(5) = [−3, −1, 1, 3]/sqrt(5).
  const std::vector<float> x{1, 2, 3, 4};
  bn_inputs in;
  in.src = x.data();
  const reference ref(nc_problem(4, 0.0), bn_mode::forward_training, in);
  EXPECT_EQ(ref.round("mean", 0).value, 2.5F);
  EXPECT_EQ(ref.round("var", 0).value, 1.25F);
  EXPECT_EQ(ref.round("invstd", 0).value,
            f32("0.894427190999915878563669467492510494176247343844"));
  expect_exact(ref.exact("invstd", 0),
               "0.894427190999915878563669467492510494176247343844610289708358");
  const char* third = "1.34164078649987381784550420123876574126437101576691543456254";
  const char* first = "0.447213595499957939281834733746255247088123671922305144854179";
  EXPECT_EQ(ref.round("dst", 0).value, -f32(third));
  EXPECT_EQ(ref.round("dst", 1).value, -f32(first));
  EXPECT_EQ(ref.round("dst", 2).value, f32(first));
  EXPECT_EQ(ref.round("dst", 3).value, f32(third));
  expect_exact(ref.exact("dst", 3), third);
}

TEST(HandWorked, OneToFourWithDefaultEpsilon) {
  // ε = 1e-5 as a double is
  // 0.000010000000000000000818030539140313095458623138256371021270751953125; invstd = 1/sqrt(1.25 +
  // ε) = 0.894423613312617988376511721164004699537363419880020660826146.
  const std::vector<float> x{1, 2, 3, 4};
  bn_inputs in;
  in.src = x.data();
  const reference ref(nc_problem(4, 1e-5), bn_mode::forward_training, in);
  const char* invstd = "0.894423613312617988376511721164004699537363419880020660826146";
  EXPECT_EQ(ref.round("invstd", 0).value, f32(invstd));
  expect_exact(ref.exact("invstd", 0), invstd);
}

TEST(HandWorked, PytorchRunningStatisticsAfterOneStep) {
  // x = [1, 2, 3, 4], running mean 0 and var 1, momentum 0.1 (the double 0.1 =
  // 0.1000000000000000055511151231257827021181583404541015625 = m).
  // Unbiased variance 5/4·4/3 = 5/3. running_var = (1 − m)·1 + m·5/3 = 1 + m·2/3
  //   = 1.06666666666666667036741008208385513474543889363606770833333;
  // running_mean = m·2.5 = 0.25000000000000001387778780781445675529539585113525390625.
  const std::vector<float> x{1, 2, 3, 4};
  const std::vector<float> rm{0.0F};
  const std::vector<float> rv{1.0F};
  bn_inputs in;
  in.src = x.data();
  in.running_mean = rm;
  in.running_var = rv;
  const reference ref(nc_problem(4, 1e-5), bn_mode::forward_training, in);
  ASSERT_TRUE(ref.refusal().empty());
  EXPECT_EQ(ref.round("running_var", 0).value, f32("1.066666666666666670367410082083855134745"));
  expect_exact(ref.exact("running_var", 0),
               "1.06666666666666667036741008208385513474543889363606770833333");
  EXPECT_EQ(ref.round("running_mean", 0).value, 0.25F);
  expect_exact(ref.exact("running_mean", 0),
               "0.25000000000000001387778780781445675529539585113525390625");
  EXPECT_EQ(ref.num_batches_tracked(), 1);
}

TEST(HandWorked, TwoValuesGiveExactPlusMinusOne) {
  // x = [1, 3]: μ = 2, σ² = 1, ε = 0: x̂ = [−1, 1]; γ = 2, β = 0.5: y = [−1.5, 2.5], exactly.
  const std::vector<float> x{1, 3};
  const std::vector<float> g{2.0F};
  const std::vector<float> b{0.5F};
  bn_inputs in;
  in.src = x.data();
  in.gamma = g;
  in.beta = b;
  const reference ref(nc_problem(2, 0.0), bn_mode::forward_training, in);
  const golden y0 = ref.round("dst", 0);
  EXPECT_EQ(y0.value, -1.5F);
  EXPECT_EQ(y0.residual, 0.0);
  EXPECT_EQ(ref.round("dst", 1).value, 2.5F);
  EXPECT_EQ(ref.round("invstd", 0).value, 1.0F);
}

TEST(HandWorked, OneToFourBackwardTraining) {
  // x = [1, 2, 3, 4], dy = [1, 0, 0, 0], γ = 1, ε = 0; r = 2/sqrt(5), x̂ = k/sqrt(5) with
  // k = [−3, −1, 1, 3]. mean(dy) = 1/4, mean(dy·x̂) = −3/(4·sqrt(5)).
  // dx = r·(dy − 1/4 − x̂·mean(dy·x̂)) = r·(dy − 1/4 + 3k/20) = (2/sqrt(5))·[0.3, −0.4, −0.1, 0.2]
  //    = [0.6, −0.8, −0.2, 0.4]/sqrt(5); the entries sum to 0.
  // dγ = Σ dy·x̂ = −3/sqrt(5); dβ = Σ dy = 1.
  const std::vector<float> x{1, 2, 3, 4};
  const std::vector<float> dy{1, 0, 0, 0};
  const std::vector<float> g{1.0F};
  const std::vector<float> b{0.0F};
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = dy.data();
  in.gamma = g;
  in.beta = b;
  const reference ref(nc_problem(4, 0.0), bn_mode::backward_training, in);
  const char* dx[4] = {"0.268328157299974763569100840247753148252874203153383086912507",
                       "-0.357770876399966351425467786997004197670498937537844115883343",
                       "-0.0894427190999915878563669467492510494176247343844610289708358",
                       "0.178885438199983175712733893498502098835249468768922057941672"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ref.round("diff_src", i).value, f32(dx[i])) << "i=" << i;
    expect_exact(ref.exact("diff_src", i), dx[i]);
  }
  EXPECT_EQ(ref.round("diff_gamma", 0).value,
            -f32("1.34164078649987381784550420123876574126437101576691543456254"));
  EXPECT_EQ(ref.round("diff_beta", 0).value, 1.0F);
}

TEST(HandWorked, TwoValuesBackwardIsZero) {
  // x = [1, 3], dy = [1, 0], ε = 0: x̂ = [−1, 1], mean(dy) = 1/2, mean(dy·x̂) = −1/2;
  // dx = dy − 1/2 + x̂/2 = [0, 0]: normalizing two values makes them ±1 whatever they are.
  const std::vector<float> x{1, 3};
  const std::vector<float> dy{1, 0};
  const std::vector<float> g{1.0F};
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = dy.data();
  in.gamma = g;
  const reference ref(nc_problem(2, 0.0), bn_mode::backward_training, in);
  EXPECT_EQ(ref.round("diff_src", 0).value, 0.0F);
  EXPECT_EQ(ref.round("diff_src", 1).value, 0.0F);
  EXPECT_EQ(ref.round("diff_gamma", 0).value, -1.0F);
}

TEST(HandWorked, InferenceUsesRunningStatisticsOnly) {
  // Running mean 2, var 4 − ε... take ε = 0 and var 4: y = γ·(x − 2)/2 + β with γ = 3, β = 1:
  // x = [0, 2, 10] → [−2, 1, 13]. dx = γ·dy/2 = 1.5·dy; dγ = Σ dy·(x − 2)/2; dβ = Σ dy.
  const std::vector<float> x{0, 2, 10};
  const std::vector<float> dy{1, 2, 4};
  const std::vector<float> g{3.0F};
  const std::vector<float> b{1.0F};
  const std::vector<float> rm{2.0F};
  const std::vector<float> rv{4.0F};
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = dy.data();
  in.gamma = g;
  in.beta = b;
  in.running_mean = rm;
  in.running_var = rv;
  const reference fwd(nc_problem(3, 0.0), bn_mode::forward_inference, in);
  EXPECT_EQ(fwd.round("dst", 0).value, -2.0F);
  EXPECT_EQ(fwd.round("dst", 1).value, 1.0F);
  EXPECT_EQ(fwd.round("dst", 2).value, 13.0F);
  const reference bwd(nc_problem(3, 0.0), bn_mode::backward_inference, in);
  EXPECT_EQ(bwd.round("diff_src", 0).value, 1.5F);
  EXPECT_EQ(bwd.round("diff_src", 2).value, 6.0F);
  // dγ = (1·(−2) + 2·0 + 4·8)/2 = 15; dβ = 7.
  EXPECT_EQ(bwd.round("diff_gamma", 0).value, 15.0F);
  EXPECT_EQ(bwd.round("diff_beta", 0).value, 7.0F);
}

TEST(HandWorked, FoldingIntoALinearLayer) {
  // One output channel: W = [2, −4], b = 1, γ = 3, β = 0.5, μ = 0.25, var = 3.75, ε = 0.25:
  // γ/sqrt(var + ε) = 3/2. W' = [3, −6]; b' = (1 − 0.25)·1.5 + 0.5 = 1.625.
  const std::vector<float> w{2, -4};
  const std::vector<float> bias{1};
  const std::vector<float> g{3}, be{0.5F}, mu{0.25F}, var{3.75F};
  fold_inputs in{1, 2, w, bias, g, be, mu, var, 0.25};
  const fold_reference f(in);
  EXPECT_EQ(f.weight(0).round().value, 3.0F);
  EXPECT_EQ(f.weight(1).round().value, -6.0F);
  EXPECT_EQ(f.bias(0).round().value, 1.625F);
  // Without a bias, b = 0: b' = −0.25·1.5 + 0.5 = 0.125.
  const fold_reference nobias(fold_inputs{1, 2, w, {}, g, be, mu, var, 0.25});
  EXPECT_EQ(nobias.bias(0).round().value, 0.125F);
}

TEST(HandWorked, SyncBnMergeOfUnevenShards) {
  // The batch [1, 2, 4, 10] in shards {1}, {2, 4}, {} and {10}: (n, mean, biased var) =
  // (1, 1, 0), (2, 3, 1), (0, -, -), (1, 10, 0). Whole batch: mean 17/4 = 4.25, biased var
  // (3.25² + 2.25² + 0.25² + 5.75²)/4 = (10.5625 + 5.0625 + 0.0625 + 33.0625)/4 = 12.1875.
  const std::vector<shard_stats_f32> shards{
      {1, 1.0F, 0.0F}, {2, 3.0F, 1.0F}, {0, 0.0F, 0.0F}, {1, 10.0F, 0.0F}};
  bn_problem p = nc_problem(4, 0.0);
  p.momentum = 0.5;
  const syncbn_result r = syncbn_merge(p, shards, 0.0F, 0.0F, 0);
  EXPECT_EQ(r.mean.round().value, 4.25F);
  EXPECT_EQ(r.var.round().value, 12.1875F);
  // PyTorch's running var uses the unbiased global variance: 12.1875·4/3 = 16.25; with momentum
  // 0.5 from 0: 8.125. Running mean 0.5·4.25 = 2.125.
  EXPECT_EQ(r.running.var.round().value, 8.125F);
  EXPECT_EQ(r.running.mean.round().value, 2.125F);
}

}  // namespace
}  // namespace bnoracle
