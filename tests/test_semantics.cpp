// The semantics docs/reference.md pins down: NaN and Inf confined to their channel, ε = 0 with
// zero variance, constant channels at large values, −0, degenerate sizes, rejected input.
#include "bnoracle/error_model.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace bnoracle {
namespace {

constexpr float k_nan = std::numeric_limits<float>::quiet_NaN();
constexpr float k_inf = std::numeric_limits<float>::infinity();

bn_problem nchw(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, double eps) {
  bn_problem p;
  p.n = n;
  p.c = c;
  p.spatial = {h, w};
  p.mem_layout = layout::nchw;
  p.eps = eps;
  return p;
}

std::vector<float> random_data(std::size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(3.0F, 2.0F);
  std::vector<float> v(count);
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_golden(const golden& a, const golden& b) {
  return bit_equal(a.value, b.value) && a.cls == b.cls && a.residual == b.residual;
}

// Runs every output of `mode` on clean and poisoned inputs and checks that channels other than
// `poisoned` are bit-identical and that the poisoned channel's coupled outputs are undefined.
void expect_confined(bn_mode mode, std::int64_t poisoned, float poison, bool poison_dy) {
  const bn_problem p = nchw(3, 4, 2, 3, 1e-5);
  const std::size_t count = 3 * 4 * 2 * 3;
  const std::vector<float> x = random_data(count, 5);
  const std::vector<float> dy = random_data(count, 6);
  const std::vector<float> g{1.5F, -2.0F, 0.5F, 3.0F};
  const std::vector<float> b{0.25F, -1.0F, 2.0F, 0.0F};
  const std::vector<float> rm{0.5F, 1.0F, -1.0F, 2.0F};
  const std::vector<float> rv{1.0F, 4.0F, 0.25F, 9.0F};
  bn_inputs in;
  in.gamma = g;
  in.beta = b;
  in.running_mean = rm;
  in.running_var = rv;
  in.src = x.data();
  in.diff_dst = dy.data();
  const reference clean(p, mode, in);
  // NCHW: element (n=1, c=poisoned, h=1, w=2).
  const std::size_t at = static_cast<std::size_t>(((1 * 4 + poisoned) * 2 + 1) * 3 + 2);
  std::vector<float> x2 = x;  // the clean reference reads `x` and `dy` lazily: keep them intact
  std::vector<float> dy2 = dy;
  (poison_dy ? dy2 : x2)[at] = poison;
  bn_inputs in2 = in;
  in2.src = x2.data();
  in2.diff_dst = dy2.data();
  const reference dirty(p, mode, in2);
  for (const output_id name : clean.outputs()) {
    const auto cg = clean.goldens(name);
    const auto dg = dirty.goldens(name);
    const bool per_element = bnoracle::per_element(name);
    for (std::size_t i = 0; i < cg.size(); ++i) {
      const std::int64_t c =
          per_element ? static_cast<std::int64_t>(i / 6 % 4) : static_cast<std::int64_t>(i);
      if (c != poisoned) {
        ASSERT_TRUE(same_golden(cg[i], dg[i]))
            << to_string(mode) << ' ' << to_string(name) << '[' << i << ']';
      } else if (mode == bn_mode::forward_training || mode == bn_mode::backward_training) {
        // Batch-coupled: every output of the channel is poisoned (diff_beta only via dy).
        if (name == output_id::diff_beta && !poison_dy) continue;
        ASSERT_EQ(dg[i].cls, golden_class::undefined) << to_string(name) << '[' << i << ']';
      }
    }
  }
}

TEST(Semantics, NanInOneChannelStaysInThatChannel) {
  for (const auto mode : {bn_mode::forward_training, bn_mode::forward_inference,
                          bn_mode::backward_training, bn_mode::backward_inference}) {
    expect_confined(mode, 2, k_nan, false);
  }
  expect_confined(bn_mode::backward_training, 1, k_nan, true);
  expect_confined(bn_mode::backward_inference, 1, k_nan, true);
}

TEST(Semantics, InfInOneChannelStaysInThatChannel) {
  expect_confined(bn_mode::forward_training, 0, k_inf, false);
  expect_confined(bn_mode::backward_training, 3, -k_inf, true);
  expect_confined(bn_mode::forward_inference, 3, k_inf, false);
}

TEST(Semantics, InferenceIsElementWiseUnderIeeeRules) {
  // Eval mode: y = β + γ·(x − μ)/sqrt(var + ε). x = +Inf gives sign(γ)·Inf; γ = 0 gives 0·Inf,
  // undefined; a NaN touches only its own element.
  bn_problem p = nchw(1, 3, 1, 2, 0.0);
  const std::vector<float> x{k_inf, 1.0F, k_inf, 2.0F, k_nan, 3.0F};
  const std::vector<float> g{2.0F, 0.0F, -1.0F};
  const std::vector<float> b{0.0F, 0.0F, 0.0F};
  const std::vector<float> rm{0.0F, 0.0F, 0.0F};
  const std::vector<float> rv{1.0F, 1.0F, 1.0F};
  bn_inputs in;
  in.src = x.data();
  in.gamma = g;
  in.beta = b;
  in.running_mean = rm;
  in.running_var = rv;
  const reference ref(p, bn_mode::forward_inference, in);
  const auto y = ref.goldens("dst");
  EXPECT_EQ(y[0].cls, golden_class::infinite);
  EXPECT_EQ(y[0].value, k_inf);
  EXPECT_EQ(y[1].value, 2.0F);
  EXPECT_EQ(y[2].cls, golden_class::undefined);  // 0·Inf
  EXPECT_EQ(y[3].value, 0.0F);
  EXPECT_EQ(y[4].cls, golden_class::undefined);
  EXPECT_EQ(y[5].value, -3.0F);
}

TEST(Semantics, ZeroEpsilonWithZeroVarianceIsUndefinedNotZero) {
  // A constant channel with ε = 0: x̂ = 0/0. y and dx are undefined, invstd = 1/sqrt(+0) = +Inf,
  // mean and var are exact.
  const bn_problem p = nchw(2, 1, 1, 2, 0.0);
  const std::vector<float> x{5, 5, 5, 5};
  const std::vector<float> dy{1, 2, 3, 4};
  const std::vector<float> g{1.0F};
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = dy.data();
  in.gamma = g;
  const reference fwd(p, bn_mode::forward_training, in);
  EXPECT_EQ(fwd.round("dst", 0).cls, golden_class::undefined);
  EXPECT_EQ(fwd.round("invstd", 0).value, k_inf);
  EXPECT_EQ(fwd.round("invstd", 0).cls, golden_class::infinite);
  EXPECT_EQ(fwd.round("mean", 0).value, 5.0F);
  EXPECT_EQ(fwd.round("var", 0).value, 0.0F);
  const reference bwd(p, bn_mode::backward_training, in);
  EXPECT_EQ(bwd.round("diff_src", 0).cls, golden_class::undefined);
  EXPECT_EQ(bwd.round("diff_beta", 0).value, 10.0F);
}

TEST(Semantics, LargeConstantChannelGivesExactlyBeta) {
  // pytorch #5410 (c = 1e10) and caffe #3963 (all 100): with ε > 0 a constant channel has
  // x − μ = 0 exactly, so y = β exactly, whatever the constant.
  for (const float c : {100.0F, 1e10F, 3e38F, -1e-30F}) {
    const bn_problem p = nchw(3, 1, 5, 7, 1e-5);
    const std::vector<float> x(105, c);
    const std::vector<float> g{2.0F};
    const std::vector<float> b{0.375F};
    bn_inputs in;
    in.src = x.data();
    in.gamma = g;
    in.beta = b;
    const reference ref(p, bn_mode::forward_training, in);
    for (const auto& y : ref.goldens("dst")) {
      ASSERT_EQ(y.value, 0.375F) << c;
      ASSERT_EQ(y.residual, 0.0) << c;
    }
    EXPECT_EQ(ref.round("mean", 0).value, c);
  }
}

TEST(Semantics, ExactZeroIsPositiveZeroAndNegativeZeroInputIsZero) {
  // x = [1, 2, 3], β = −0: y[1] = −0 + γ·0 = 0 exactly, written +0. x = [−0, +0] is a constant
  // zero channel: μ = 0, σ² = 0, y = β = 0.5.
  const bn_problem p = nchw(3, 1, 1, 1, 1e-5);
  const std::vector<float> x{1, 2, 3};
  const std::vector<float> g{-1.0F};
  const std::vector<float> b{-0.0F};
  bn_inputs in;
  in.src = x.data();
  in.gamma = g;
  in.beta = b;
  const reference ref(p, bn_mode::forward_training, in);
  EXPECT_TRUE(bit_equal(ref.round("dst", 1).value, 0.0F));
  const bn_problem p2 = nchw(2, 1, 1, 1, 1e-5);
  const std::vector<float> z{-0.0F, 0.0F};
  const std::vector<float> b2{0.5F};
  bn_inputs in2;
  in2.src = z.data();
  in2.beta = b2;
  const reference ref2(p2, bn_mode::forward_training, in2);
  EXPECT_TRUE(bit_equal(ref2.round("mean", 0).value, 0.0F));
  EXPECT_EQ(ref2.round("dst", 0).value, 0.5F);
}

TEST(Semantics, ValuesNearOverflowAreExactAndOverflowIsReported) {
  // x = [0, 0, 0, 0, M] with M = FLT_MAX: the squares reach 2^256 and stay exact. μ = M/5 and
  // σ² = (4·(M/5)² + (4M/5)²)/5 = 4M²/25 ≈ 1.9e76, which overflows float32 (class overflow) while
  // the outlier's x̂ = (4M/5)/sqrt(4M²/25 + ε) is just below 2; with γ = M, y ≈ 2M overflows too.
  const bn_problem p = nchw(5, 1, 1, 1, 1e-5);
  const std::vector<float> x{0, 0, 0, 0, FLT_MAX};
  const std::vector<float> g{FLT_MAX};
  bn_inputs in;
  in.src = x.data();
  in.gamma = g;
  const reference ref(p, bn_mode::forward_training, in);
  const golden y = ref.round("dst", 4);
  EXPECT_EQ(y.value, k_inf);
  EXPECT_EQ(y.cls, golden_class::overflow);
  EXPECT_EQ(ref.round("var", 0).cls, golden_class::overflow);
  EXPECT_EQ(ref.round("mean", 0).value, FLT_MAX / 5.0F);  // one correctly rounded division
  EXPECT_LT(ref.round("dst", 0).value, 0.0F);  // x̂ = −1/2 for the zeros: y ≈ −M/2, finite
}

TEST(Semantics, EmptyBatchHasNoStatisticsAndZeroParameterGradients) {
  // N = 0: no element, batch mean and variance undefined (0/0); dγ and dβ are empty sums, 0.
  const bn_problem p = nchw(0, 2, 3, 3, 1e-5);
  const std::vector<float> g{1.0F, 2.0F};
  bn_inputs in;
  in.gamma = g;
  const reference fwd(p, bn_mode::forward_training, in);
  EXPECT_EQ(fwd.output_size("dst"), 0);
  EXPECT_EQ(fwd.round("mean", 1).cls, golden_class::undefined);
  EXPECT_EQ(fwd.round("invstd", 0).cls, golden_class::undefined);
  const reference bwd(p, bn_mode::backward_training, in);
  EXPECT_EQ(bwd.round("diff_gamma", 0).value, 0.0F);
  EXPECT_EQ(bwd.round("diff_beta", 1).value, 0.0F);
}

TEST(Semantics, SpatialSizeOneIsAnOrdinaryReduction) {
  // oneDNN #14, MIOpen #248: 1×256×1×1-style shapes. With N = 4, H = W = 1, L = 4 per channel:
  // channel values [1, 2, 3, 4] give the hand-worked statistics μ = 2.5, σ² = 1.25.
  const bn_problem p = nchw(4, 2, 1, 1, 0.0);
  const std::vector<float> x{1, 10, 2, 10, 3, 10, 4, 10};
  bn_inputs in;
  in.src = x.data();
  const reference ref(p, bn_mode::forward_training, in);
  EXPECT_EQ(ref.round("mean", 0).value, 2.5F);
  EXPECT_EQ(ref.round("var", 0).value, 1.25F);
  EXPECT_EQ(ref.round("mean", 1).value, 10.0F);
}

TEST(Semantics, InvalidInputIsRejectedWithTheFieldNamed) {
  const std::vector<float> x(8, 1.0F);
  bn_inputs in;
  in.src = x.data();
  auto message = [&](bn_problem p, bn_mode mode, const bn_inputs& inp) -> std::string {
    try {
      const reference ref(p, mode, inp);
    } catch (const invalid_problem& e) {
      return e.what();
    }
    return "";
  };
  bn_problem p = nchw(2, 2, 1, 2, 1e-5);
  p.eps = -1e-5;
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("eps"), std::string::npos);
  p.eps = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("eps"), std::string::npos);
  p = nchw(2, 2, 1, 2, 1e-5);
  const std::vector<float> rm{0, 0};
  const std::vector<float> bad_rv{1.0F, -0.5F};
  bn_inputs ev = in;
  ev.running_mean = rm;
  ev.running_var = bad_rv;
  EXPECT_NE(message(p, bn_mode::forward_inference, ev).find("running_var[1]"), std::string::npos);
  EXPECT_NE(message(p, bn_mode::forward_training, ev).find("running_var[1]"), std::string::npos);
  const std::vector<float> g3{1, 1, 1};
  bn_inputs wrong = in;
  wrong.gamma = g3;
  EXPECT_NE(message(p, bn_mode::forward_training, wrong).find("gamma"), std::string::npos);
  bn_inputs missing = in;
  EXPECT_NE(message(p, bn_mode::forward_inference, missing).find("running_mean"),
            std::string::npos);
  EXPECT_NE(message(p, bn_mode::backward_training, missing).find("diff_dst"), std::string::npos);
  p.convention = "nope";
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("convention"), std::string::npos);
  p = nchw(2, 2, 1, 2, 1e-5);
  p.momentum = 1.5;
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("momentum"), std::string::npos);
  p = nchw(2, 2, 1, 2, 1e-5);
  p.spatial = {2};
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("spatial"), std::string::npos);
  // Absurd sizes are rejected before anything is read or allocated.
  p = nchw(std::int64_t{1} << 40, 1 << 20, 1 << 20, 1 << 20, 1e-5);
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("limit"), std::string::npos);
  // Strides whose memory extent overflows int64: (3 − 1)·2^62 = 2^63.
  p = nchw(3, 2, 1, 2, 1e-5);
  p.mem_layout = layout::strided;
  p.strides = {std::int64_t{1} << 62, 1, 1, 1};
  EXPECT_NE(message(p, bn_mode::forward_training, in).find("strides"), std::string::npos);
}

// Data types other than float32: each output is the exact value rounded once to its role's
// format. The check is against the high-precision value (hp(), an evaluation independent of the
// rounding's decision logic): the golden is a value of the format within half an ulp of it.
TEST(Semantics, EachOutputIsRoundedOnceToItsRolesFormat) {
  for (const format_id data : {format_id::float16, format_id::bfloat16}) {
    const float_format& f = format_of(data);
    bn_problem p = nchw(3, 2, 2, 3, 1e-5);
    p.types.data = data;  // src, dst, diff_dst, diff_src narrow; γ, β, statistics float32
    std::vector<float> x = random_data(36, 7);
    std::vector<float> dy = random_data(36, 8);
    for (auto* v : {&x, &dy}) {
      for (float& e : *v) e = round_to(f, to_rational(e)).value;  // values of the format
    }
    const std::vector<float> g{1.5F, -0.7F}, b{0.25F, -1.0F};
    for (const bn_mode mode : {bn_mode::forward_training, bn_mode::backward_training}) {
      bn_inputs in;
      in.gamma = g;
      in.beta = b;
      in.src = x.data();
      in.diff_dst = dy.data();
      const reference ref(p, mode, in);
      for (const output_id id : ref.outputs()) {
        const float_format& want = describe(id).role == format_role::data ? f : k_float32;
        EXPECT_EQ(&ref.format_of_output(id), &want) << to_string(id);
        const std::vector<golden> gold = ref.goldens(id);
        for (std::size_t i = 0; i < gold.size(); ++i) {
          const golden& gd = gold[i];
          ASSERT_EQ(gd.cls, golden_class::finite) << to_string(id) << "[" << i << "]";
          ASSERT_TRUE(representable(want, gd.value)) << to_string(id) << "[" << i << "]";
          const hp_float exact = ref.exact(id, static_cast<std::int64_t>(i)).hp();
          const hp_float residual = mp::ldexp(exact - hp_float(gd.value), -gd.ulp_exp);
          ASSERT_LE(mp::abs(residual), hp_float(0.5)) << to_string(id) << "[" << i << "]";
        }
      }
    }
  }
}

TEST(Semantics, InputsMustBeValuesOfTheirFormats) {
  bn_problem p = nchw(2, 2, 1, 2, 1e-5);
  p.types.data = format_id::float16;
  const std::vector<float> x{1.0F, 2.0F, 3.0F, 1.0F + 0x1p-12F, 0.5F, 0.25F, 4.0F, 8.0F};
  bn_inputs in;
  in.src = x.data();
  // 1 + 2^-12 needs 13 significant bits: not a float16 value.
  EXPECT_THROW(reference(p, bn_mode::forward_training, in), invalid_problem);
  p.types.data = format_id::float32;
  p.types.parameters = format_id::bfloat16;
  const std::vector<float> gamma{1.0F, 1.0F + 0x1p-10F}, beta{0.0F, 0.0F};
  in.gamma = gamma;  // 1 + 2^-10 needs 11 bits: not a bfloat16 value
  in.beta = beta;
  EXPECT_THROW(reference(p, bn_mode::forward_training, in), invalid_problem);
  in.gamma = beta;
  EXPECT_NO_THROW(reference(p, bn_mode::forward_training, in));
}

TEST(Semantics, RepresentableMatchesTheFormatsOwnConversions) {
  std::mt19937 rng(99);
  for (int i = 0; i < 200000; ++i) {
    const auto bits = static_cast<std::uint32_t>(rng());
    const float v = std::bit_cast<float>(bits);
    const bool half = std::isnan(v) || static_cast<float>(static_cast<_Float16>(v)) == v;
    ASSERT_EQ(representable(k_float16, v), half) << std::hexfloat << v;
    const bool bf16 = std::isnan(v) || (bits & 0xFFFFU) == 0;
    ASSERT_EQ(representable(k_bfloat16, v), bf16) << std::hexfloat << v;
    ASSERT_TRUE(representable(k_float32, v));
  }
  // Values drawn near the formats' own grids (random floats almost never are on them).
  for (int i = 0; i < 20000; ++i) {
    const auto h = static_cast<_Float16>(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
    const float v = static_cast<float>(h);
    ASSERT_TRUE(representable(k_float16, v)) << std::hexfloat << v;
    const float b = std::bit_cast<float>(static_cast<std::uint32_t>(rng()) & 0xFFFF0000U);
    ASSERT_TRUE(representable(k_bfloat16, b)) << std::hexfloat << b;
  }
}

}  // namespace
}  // namespace bnoracle
