// Running-statistic conventions over one and several steps.
//
// Expected values come from the formulas in docs/conventions.md evaluated by hand (or, for long
// chains, from closed forms with a derived rounding bound), never from the reference's code.
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

struct step_result {
  float mean;
  float var;
  std::int64_t nbt;
  std::string refusal;
  golden_class mean_cls;
  golden_class var_cls;
};

// One training step of a single-channel NC problem.
step_result train_step(const std::string& conv, std::optional<double> momentum,
                       const std::vector<float>& x, float old_mean, float old_var,
                       std::int64_t nbt = 0) {
  bn_problem p;
  p.n = static_cast<std::int64_t>(x.size());
  p.c = 1;
  p.mem_layout = layout::nc;
  p.eps = 1e-5;
  p.momentum = momentum;
  p.convention = conv;
  const std::vector<float> rm{old_mean};
  const std::vector<float> rv{old_var};
  bn_inputs in;
  in.src = x.data();
  in.running_mean = rm;
  in.running_var = rv;
  in.num_batches_tracked = nbt;
  const reference ref(p, bn_mode::forward_training, in);
  if (!ref.refusal().empty()) return {0, 0, ref.num_batches_tracked(), ref.refusal(), {}, {}};
  const golden m = ref.round("running_mean", 0);
  const golden v = ref.round("running_var", 0);
  return {m.value, v.value, ref.num_batches_tracked(), "", m.cls, v.cls};
}

TEST(Conventions, EachAppliesItsMomentumAndEstimatorToOneStep) {
  // x = [0, 2]: batch mean 1, biased variance 1, unbiased 2. From running (0, 0), momentum 0.25:
  // new-weighted (f = 0.25): mean 0.25, var 0.25·(2 unbiased | 1 biased);
  // old-weighted (f = 0.75): mean 0.75, var 0.75·1 (all old-weighted ones are biased).
  // The table is docs/conventions.md's summary, typed from that page.
  const std::map<std::string, std::pair<float, float>> expect{
      {"pytorch", {0.25F, 0.5F}}, {"cudnn", {0.25F, 0.5F}},  {"tensorflow", {0.25F, 0.5F}},
      {"miopen", {0.25F, 0.5F}},  {"keras", {0.75F, 0.75F}}, {"onnx", {0.75F, 0.75F}},
      {"flax", {0.75F, 0.75F}}};
  ASSERT_EQ(expect.size(), all_conventions().size());
  for (const auto& [name, mv] : expect) {
    const step_result r = train_step(name, 0.25, {0.0F, 2.0F}, 0.0F, 0.0F);
    EXPECT_EQ(r.mean, mv.first) << name;
    EXPECT_EQ(r.var, mv.second) << name;
  }
}

TEST(Conventions, KerasBugEightNineEightTwoIsToldApart) {
  // keras #8982: N = 2 values [−1, 1] give biased variance 1 and unbiased 2. With momentum that
  // replaces the old value entirely (PyTorch m = 1), the running variance must be 2, not 1.
  EXPECT_EQ(train_step("pytorch", 1.0, {-1.0F, 1.0F}, 0.0F, 5.0F).var, 2.0F);
  EXPECT_EQ(train_step("keras", 0.0, {-1.0F, 1.0F}, 0.0F, 5.0F).var, 1.0F);
}

TEST(Conventions, SeveralStepsFollowTheRecurrenceExactly) {
  // Four steps of batches of two values [a − d, a + d] (mean a, biased d², unbiased 2d²) with
  // momentum 0.25. New-weighted conventions (f = 1/4) are all unbiased; old-weighted ones
  // (f = 3/4) are all biased. All values are small dyadics, so every state is exact in float32
  // and the recurrences can be followed by hand:
  //   batches (a, d): (1, 1), (3, 1), (0, 2), (2, 0.5)
  // f = 1/4, mean: 0 → 0.25 → 0.9375 → 0.703125 → 1.02734375
  //          var:  1 → 1.25 → 1.4375 → 3.078125 → 2.43359375   (new unbiased: 2, 2, 8, 0.5)
  // f = 3/4, mean: 0 → 0.75 → 2.4375 → 0.609375 → 1.65234375
  //          var:  1 → 1 → 1 → 3.25 → 1                        (new biased: 1, 1, 4, 0.25)
  const std::vector<std::pair<float, float>> batches{{1, 1}, {3, 1}, {0, 2}, {2, 0.5F}};
  const std::vector<std::pair<float, float>> new_weighted{
      {0.25F, 1.25F}, {0.9375F, 1.4375F}, {0.703125F, 3.078125F}, {1.02734375F, 2.43359375F}};
  const std::vector<std::pair<float, float>> old_weighted{
      {0.75F, 1.0F}, {2.4375F, 1.0F}, {0.609375F, 3.25F}, {1.65234375F, 1.0F}};
  const std::map<std::string, const std::vector<std::pair<float, float>>*> expect{
      {"pytorch", &new_weighted}, {"cudnn", &new_weighted}, {"tensorflow", &new_weighted},
      {"miopen", &new_weighted},  {"keras", &old_weighted}, {"onnx", &old_weighted},
      {"flax", &old_weighted}};
  ASSERT_EQ(expect.size(), all_conventions().size());
  for (const auto& [conv, expected] : expect) {
    float m = 0.0F;
    float v = 1.0F;
    for (std::size_t k = 0; k < batches.size(); ++k) {
      const auto [a, d] = batches[k];
      const step_result r =
          train_step(conv, 0.25, {a - d, a + d}, m, v, static_cast<std::int64_t>(k));
      EXPECT_EQ(r.mean, (*expected)[k].first) << conv << " step " << k;
      EXPECT_EQ(r.var, (*expected)[k].second) << conv << " step " << k;
      EXPECT_EQ(r.nbt, static_cast<std::int64_t>(k) + 1);
      m = r.mean;
      v = r.var;
    }
  }
}

TEST(Conventions, CumulativeAverageWeighsEveryBatchEquallyAcrossSizes) {
  // PyTorch momentum=None: f = 1/t at step t (num_batches_tracked incremented first), so after
  // t steps the running value is the plain average of the batch statistics, whatever the sizes.
  // Batches (chosen so that every average is exact):
  //   [0, 2]           L=2 mean 1 unbiased 2
  //   [1, 3, 5]        L=3 mean 3 unbiased (4+0+4)/2 = 4
  //   [5, 1, 1, 1, 2]  L=5 mean 2 unbiased (9+1+1+1+0)/4 = 3
  //   [3, 7, 8]        L=3 mean 6 unbiased (9+1+4)/2 = 7
  // Averages: mean 1, 2, 2, 3; var 2, 3, 3, 4. The initial state (100, 50) is replaced at t = 1.
  const std::vector<std::vector<float>> batches{{0, 2}, {1, 3, 5}, {5, 1, 1, 1, 2}, {3, 7, 8}};
  const std::vector<std::pair<float, float>> expected{{1, 2}, {2, 3}, {2, 3}, {3, 4}};
  float m = 100.0F;
  float v = 50.0F;
  for (std::size_t t = 0; t < batches.size(); ++t) {
    const step_result r =
        train_step("pytorch", std::nullopt, batches[t], m, v, static_cast<std::int64_t>(t));
    EXPECT_EQ(r.mean, expected[t].first) << "step " << t + 1;
    EXPECT_EQ(r.var, expected[t].second) << "step " << t + 1;
    m = r.mean;
    v = r.var;
  }
}

TEST(Conventions, CumulativeAverageIsRejectedWhereTheConventionHasNone) {
  EXPECT_THROW((void)train_step("keras", std::nullopt, {0, 2}, 0, 1), invalid_problem);
}

TEST(Conventions, ZeroInputDecaysTheRunningVarianceGeometricallyAndExactly) {
  // Zero input: batch mean 0 and variance 0, so running_var_k = (1 − f)^k·running_var_0.
  // With PyTorch momentum 0.25, 1 − f = 3/4 and (3/4)^k = 3^k/4^k is exact in float32 while
  // 3^k < 2^24, i.e. k <= 15.
  float v = 1.0F;
  float expect = 1.0F;
  for (int k = 1; k <= 15; ++k) {
    v = train_step("pytorch", 0.25, {0, 0, 0}, 0.0F, v, k - 1).var;
    expect *= 0.75F;  // exact: 3^k/4^k has at most 24 significant bits for k <= 15
    ASSERT_EQ(v, expect) << "k=" << k;
  }
}

TEST(Conventions, ZeroInputForOneHundredStepsGivesPointNineToTheHundred) {
  // mxnet #14357: zero input for 100 steps must give running_var = 0.9^100 (momentum 0.1 in
  // PyTorch's sense, 0.9 in Keras's). Each step rounds the float32 state once (relative error
  // <= 2^-24), and the double momentum differs from 0.1 by 5.6e-18, so after k steps
  // |v_k / 0.9^k − 1| <= (1 + 2^-24)^k − 1 + k·1e-17 <= 1.01·k·2^-24.
  for (const auto& [conv, m] : {std::pair{"pytorch", 0.1}, std::pair{"keras", 0.9}}) {
    float v = 1.0F;
    for (int k = 0; k < 100; ++k) v = train_step(conv, m, {0, 0}, 0.0F, v, k).var;
    const double expect = std::pow(0.9, 100);
    EXPECT_LE(std::fabs(static_cast<double>(v) / expect - 1.0), 1.01 * 100 * std::ldexp(1.0, -24))
        << conv;
  }
}

TEST(Conventions, OneValuePerChannelFollowsEachConventionsRule) {
  // L = 1: batch variance 0; unbiased correction 0/0.
  // pytorch refuses; cudnn: running var undefined; tensorflow, miopen: no correction, so
  // var = (1 − f)·old + f·0; keras/onnx/flax are biased: the same (1 − f)·old.
  // With old var 4, momentum 0.25: new-weighted 3, old-weighted 1.
  EXPECT_FALSE(train_step("pytorch", 0.25, {7.0F}, 0, 4).refusal.empty());
  EXPECT_EQ(train_step("cudnn", 0.25, {7.0F}, 0, 4).var_cls, golden_class::undefined);
  EXPECT_EQ(train_step("tensorflow", 0.25, {7.0F}, 0, 4).var, 3.0F);
  EXPECT_EQ(train_step("miopen", 0.25, {7.0F}, 0, 4).var, 3.0F);
  EXPECT_EQ(train_step("keras", 0.25, {7.0F}, 0, 4).var, 1.0F);
  EXPECT_EQ(train_step("onnx", 0.25, {7.0F}, 0, 4).var, 1.0F);
  EXPECT_EQ(train_step("flax", 0.25, {7.0F}, 0, 4).var, 1.0F);
  // The mean is well defined in every non-refusing convention: 0.25·7 or 0.75·7.
  EXPECT_EQ(train_step("tensorflow", 0.25, {7.0F}, 0, 4).mean, 1.75F);
  EXPECT_EQ(train_step("keras", 0.25, {7.0F}, 0, 4).mean, 5.25F);
}

TEST(Conventions, EmptyBatchFollowsEachConventionsRule) {
  // PyTorch leaves the statistics as they were but still counts the batch (pytorch #12013);
  // TensorFlow writes NaN; cuDNN, ONNX and MIOpen do not say.
  const step_result torch = train_step("pytorch", 0.1, {}, 3.0F, 4.0F, 5);
  EXPECT_EQ(torch.mean, 3.0F);
  EXPECT_EQ(torch.var, 4.0F);
  EXPECT_EQ(torch.nbt, 6);
  EXPECT_EQ(train_step("tensorflow", 0.1, {}, 3.0F, 4.0F).mean_cls, golden_class::undefined);
  EXPECT_EQ(train_step("cudnn", 0.1, {}, 3.0F, 4.0F).var_cls, golden_class::unspecified);
}

TEST(Conventions, LookupByNameAndRejectionOfUnknownNames) {
  ASSERT_NE(find_convention("pytorch"), nullptr);
  EXPECT_EQ(find_convention("pytorch")->default_momentum, 0.1);
  EXPECT_EQ(find_convention("keras")->default_eps, 1e-3);
  EXPECT_EQ(find_convention("PyTorch"), nullptr);
  EXPECT_THROW((void)train_step("caffe", 0.1, {0, 2}, 0, 1), invalid_problem);
}

TEST(ConventionFields, TheTextbookConventionIsStatedAndJudged) {
  // The convention tutorials teach: momentum weighs the new value, the running variance is the
  // biased batch variance. x = [0, 2]: mean 1, biased variance 1. From (0, 0) with momentum 0.25:
  // mean 0.25·1 = 0.25, variance 0.25·1 = 0.25 (PyTorch's unbiased record gives 0.25·2 = 0.5).
  const step_result r = train_step("momentum=new,running_var=biased", 0.25, {0.0F, 2.0F}, 0, 0);
  EXPECT_TRUE(r.refusal.empty());
  EXPECT_EQ(r.mean, 0.25F);
  EXPECT_EQ(r.var, 0.25F);
  // Old-weighted and unbiased, a combination no named record has: f = 0.75, variance 0.75·2.
  const step_result o = train_step("momentum=old,running_var=unbiased", 0.25, {0.0F, 2.0F}, 0, 0);
  EXPECT_EQ(o.mean, 0.75F);
  EXPECT_EQ(o.var, 1.5F);
}

TEST(ConventionFields, SpellingsOfOneConventionShareOneCanonicalRecord) {
  const convention* a = find_convention("momentum=new,running_var=biased");
  const convention* b =
      find_convention("running_var=biased,momentum=new,l1=compute,l0=unspecified");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a->name, "momentum=new,running_var=biased");
  const convention* c = find_convention(
      "l0=unchanged,l1=refuse,cumulative=yes,running_var=unbiased,momentum=new,"
      "default_momentum=0.1,default_eps=1e-05");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->name,
            "momentum=new,running_var=unbiased,cumulative=yes,l1=refuse,l0=unchanged,"
            "default_momentum=0.1,default_eps=1e-05");
  EXPECT_EQ(c->single_value, single_value_rule::refuse);
  EXPECT_EQ(c->empty_batch, empty_batch_rule::unchanged);
  EXPECT_TRUE(c->cumulative);
}

TEST(ConventionFields, EveryNamedRecordRestatedByItsFieldsBehavesTheSame) {
  for (const convention& named : all_conventions()) {
    const std::string fields = to_fields(named);
    const convention* c = find_convention(fields);
    ASSERT_NE(c, nullptr) << named.name << ": " << fields << ": " << convention_error(fields);
    EXPECT_EQ(c->weighs, named.weighs) << named.name;
    EXPECT_EQ(c->running_var, named.running_var) << named.name;
    EXPECT_EQ(c->cumulative, named.cumulative) << named.name;
    EXPECT_EQ(c->default_momentum, named.default_momentum) << named.name;
    EXPECT_EQ(c->default_eps, named.default_eps) << named.name;
    EXPECT_EQ(c->min_eps, named.min_eps) << named.name;
    EXPECT_EQ(c->saved, named.saved) << named.name;
    EXPECT_EQ(c->single_value, named.single_value) << named.name;
    EXPECT_EQ(c->empty_batch, named.empty_batch) << named.name;
    // And the same running statistics on a step that tells every field apart at L = 1 and L = 2.
    for (const std::vector<float>& x : {std::vector<float>{0.0F, 2.0F}, std::vector<float>{7.0F}}) {
      const step_result want = train_step(std::string(named.name), 0.25, x, 0, 4);
      const step_result got = train_step(fields, 0.25, x, 0, 4);
      EXPECT_EQ(want.refusal.empty(), got.refusal.empty()) << named.name;
      EXPECT_EQ(want.mean_cls, got.mean_cls) << named.name;
      EXPECT_EQ(want.var_cls, got.var_cls) << named.name;
      if (want.refusal.empty() && want.var_cls == golden_class::finite) {
        EXPECT_EQ(want.mean, got.mean) << named.name;
        EXPECT_EQ(want.var, got.var) << named.name;
      }
    }
  }
}

TEST(ConventionFields, InvalidFieldsAreRejectedWithTheReason) {
  const std::map<std::string, std::string> bad{
      {"momentum=new", "required"},
      {"momentum=sideways,running_var=biased", "momentum=sideways: expected new or old"},
      {"momentum=new,running_var=biased,colour=red", "unknown field 'colour'"},
      {"momentum=new,momentum=old,running_var=biased", "given twice"},
      {"momentum=new,running_var=unbiased,l1=compute", "divides by L - 1 = 0"},
      {"momentum=new,running_var=biased,l1=no_correction", "no correction to skip"},
      {"momentum=new,running_var=biased,default_momentum=2", "a number in [0, 1]"},
      {"momentum=new,running_var=biased,min_eps=-1", "a finite number >= 0"},
      {"momentum=new,running_var=biased,min_eps=nan", "a finite number >= 0"},
      {"momentum=new,,running_var=biased", "is not field=value"},
      {"caffe", "unknown convention 'caffe'"},
  };
  for (const auto& [text, why] : bad) {
    EXPECT_EQ(find_convention(text), nullptr) << text;
    EXPECT_NE(convention_error(text).find(why), std::string::npos)
        << text << ": " << convention_error(text);
    EXPECT_THROW((void)train_step(text, 0.1, {0, 2}, 0, 1), invalid_problem) << text;
  }
  EXPECT_EQ(convention_error("pytorch"), "");
}

TEST(ConventionFields, NoneHasNoRunningStatisticsAndComputesOneValue) {
  const convention* none = find_convention("none");
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->running_stats);
  EXPECT_EQ(to_fields(*none), "none");
  // Training with L = 1 and no running statistics: no refusal (PyTorch's L = 1 rule concerns
  // its running variance), mean 7, variance 0.
  bn_problem p;
  p.n = 1;
  p.c = 1;
  p.mem_layout = layout::nc;
  p.convention = "none";
  const std::vector<float> x{7.0F};
  bn_inputs in;
  in.src = x.data();
  const reference ref(p, bn_mode::forward_training, in);
  EXPECT_TRUE(ref.refusal().empty());
  EXPECT_EQ(ref.round(output_id::mean, 0).value, 7.0F);
  EXPECT_EQ(ref.round(output_id::var, 0).value, 0.0F);
  // Running statistics under "none" are a contradiction.
  EXPECT_THROW((void)train_step("none", 0.1, {0, 2}, 0, 1), invalid_problem);
}

}  // namespace
}  // namespace bnoracle
