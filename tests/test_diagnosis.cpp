// The diagnosis (diagnosis.hpp): a defect is named when its model reproduces the outputs, and
// nothing is named for correct outputs or for outputs wrong in a way no model reproduces.
#include "bnoracle/diagnosis.hpp"
#include "bnoracle/report.hpp"
#include "bnoracle/runner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

// A batch-norm forward training problem with random data, and a kernel's outputs for it computed
// here in double by the textbook formulas, with the variance divided by `divisor(L)`.
struct forward_case {
  bn_problem p;
  std::vector<float> src, gamma, beta;
  bn_inputs in;

  forward_case() {
    p.n = 4;
    p.c = 3;
    p.spatial = {5, 5};
    p.mem_layout = layout::nchw;
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0.5F, 2.0F);
    src.resize(4 * 3 * 25);
    for (float& x : src) x = d(rng);
    gamma = {1.5F, -0.75F, 2.0F};
    beta = {0.25F, -1.0F, 0.5F};
    in.src = src.data();
    in.gamma = gamma;
    in.beta = beta;
  }

  // dst in logical order (NCHW is the logical order), with var = M2/divisor.
  [[nodiscard]] std::vector<float> dst(double divisor) const {
    const std::size_t S = 25, N = 4, C = 3;
    std::vector<float> y(src.size());
    for (std::size_t c = 0; c < C; ++c) {
      double sum = 0;
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t s = 0; s < S; ++s) sum += static_cast<double>(src[(n * C + c) * S + s]);
      const double mean = sum / static_cast<double>(N * S);
      double m2 = 0;
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t s = 0; s < S; ++s) {
          const double dev = static_cast<double>(src[(n * C + c) * S + s]) - mean;
          m2 += dev * dev;
        }
      const double r = 1.0 / std::sqrt(m2 / divisor + p.eps);
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t s = 0; s < S; ++s) {
          const std::size_t i = (n * C + c) * S + s;
          y[i] = static_cast<float>(static_cast<double>(gamma[c]) *
                                        (static_cast<double>(src[i]) - mean) * r +
                                    static_cast<double>(beta[c]));
        }
    }
    return y;
  }
};

std::vector<explanation> explain_dst(const forward_case& fc, const std::vector<float>& got) {
  const reference ref(fc.p, bn_mode::forward_training, fc.in);
  const error_model model(ref, fc.in, data_tier::general);
  std::vector<output_result> judged{
      judge_output("dst", output_id::dst, output_id::dst, ref, model, accuracy_level::standard, 0.5,
                   [&got](std::int64_t i) { return got[static_cast<std::size_t>(i)]; })};
  const std::vector<returned_output> returned{{"dst", output_id::dst, &got}};
  return explain_call(ref, model, fc.in, true, judged, returned, 0, accuracy_level::standard);
}

bool names(const std::vector<explanation>& e, const std::string& cls) {
  return std::any_of(e.begin(), e.end(), [&cls](const explanation& x) { return x.cls == cls; });
}

TEST(Diagnosis, UnbiasedVarianceInTheNormalizationIsNamed) {
  const forward_case fc;
  const std::vector<explanation> e = explain_dst(fc, fc.dst(99.0));  // M2/(L − 1), L = 100
  ASSERT_FALSE(e.empty());
  EXPECT_TRUE(names(e, "variance_estimator"));
  EXPECT_FALSE(names(e, "epsilon"));
  EXPECT_FALSE(names(e, "tail"));
}

TEST(Diagnosis, CorrectOutputsGetNoExplanation) {
  const forward_case fc;
  // Nothing failed: nothing to explain.
  EXPECT_TRUE(explain_dst(fc, fc.dst(100.0)).empty());
}

TEST(Diagnosis, NoiseThatNoDefectReproducesGetsNoExplanation) {
  const forward_case fc;
  std::vector<float> y = fc.dst(100.0);
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  // Relative noise of up to 2^-9: far outside the bounds, shaped like no defect.
  for (float& v : y)
    v = static_cast<float>(static_cast<double>(v) * (1.0 + std::ldexp(u(rng), -9)));
  const std::vector<explanation> e = explain_dst(fc, y);
  EXPECT_TRUE(e.empty()) << e.front().cls << ": " << e.front().evidence;
}

TEST(Diagnosis, AWrongCountOtherThanBesselsIsNotCalledAnEstimatorSwap) {
  const forward_case fc;
  // var = M2/(L − 3): no defect of the catalog; the estimator swap (L − 1) does not fit it.
  EXPECT_FALSE(names(explain_dst(fc, fc.dst(97.0)), "variance_estimator"));
}

TEST(Diagnosis, PropertiesThatTestOneThingNameIt) {
  ASSERT_EQ(explain_property("reproducibility").size(), 1U);
  EXPECT_EQ(explain_property("reproducibility")[0].cls, "nondeterminism");
  // A property that any defect can fail names nothing by itself.
  EXPECT_TRUE(explain_property("reference_agreement").empty());
}

TEST(Diagnosis, EveryClassHasATitle) {
  for (const defect_class& c : defect_classes()) {
    EXPECT_FALSE(c.title.empty()) << c.id;
    EXPECT_EQ(find_defect_class(c.id), &c);
  }
  EXPECT_EQ(find_defect_class("no_such_class"), nullptr);
}

case_result failed_with(const std::string& cls, bool approximate) {
  case_result r;
  r.result = verdict::fail;
  r.case_name = "c";
  r.explained_by.push_back({cls, "evidence of " + cls, approximate});
  return r;
}

TEST(Diagnosis, ClassesAreRankedByTheFailuresTheyExplain) {
  run_summary s;
  for (int i = 0; i < 8; ++i) s.results.push_back(failed_with("epsilon", false));
  for (int i = 0; i < 3; ++i) s.results.push_back(failed_with("tail", false));
  s.results.push_back(failed_with("momentum", false));  // below a quarter of the first: not listed
  case_result unexplained;
  unexplained.result = verdict::fail;
  s.results.push_back(unexplained);
  case_result passed;
  passed.explained_by.push_back({"layout", "a pass is never diagnosed", false});
  s.results.push_back(passed);
  const std::vector<diagnosis> d = diagnose(s);
  ASSERT_EQ(d.size(), 2U);
  EXPECT_EQ(d[0].cls, "epsilon");
  EXPECT_EQ(d[0].explained, 8);
  EXPECT_EQ(d[0].failed, 13);
  EXPECT_EQ(d[1].cls, "tail");
  const std::vector<std::string> lines = diagnosis_lines(d);
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_NE(lines[0].find("most likely"), std::string::npos);
  EXPECT_NE(lines[0].find("explains 8 of 13 failed results"), std::string::npos);
}

TEST(Diagnosis, ARunWithoutFailuresHasNoDiagnosis) {
  run_summary s;
  s.results.resize(3);
  EXPECT_TRUE(diagnose(s).empty());
}

// ---- Through the runner, on kernels of the mutation catalog -----------------------------------

std::unique_ptr<bn_kernel> plugin(const std::string& path) {
  return load_plugin(path);
}

run_summary run(const std::string& path, accuracy_level level, const std::string& filter) {
  auto kernel = plugin(path);
  run_options o;
  o.level = level;
  o.filter = filter;
  o.isolate = false;  // well-behaved kernels; in-process keeps the suite fast
  return run_catalog(*kernel, default_catalog(1), o, nullptr);
}

std::string mutant_path(const std::string& name) {
  return std::string(BNORACLE_MUTANT_DIR) + "/libbnm_" + name + ".so";
}

struct named_case {
  const char* mutant;
  const char* cls;
  const char* filter;
};

class DiagnosisOfMutants : public ::testing::TestWithParam<named_case> {};

TEST_P(DiagnosisOfMutants, NamesTheDefectClassFirst) {
  const named_case& c = GetParam();
  const run_summary s = run(mutant_path(c.mutant), accuracy_level::lenient, c.filter);
  ASSERT_GT(s.failed, 0) << c.mutant << " is not caught on " << c.filter;
  const std::vector<diagnosis> d = diagnose(s);
  ASSERT_FALSE(d.empty()) << c.mutant;
  EXPECT_EQ(d.front().cls, c.cls) << c.mutant << ": " << diagnosis_lines(d).front();
  std::ostringstream text;
  write_report(text, s, report_format::text, false);
  EXPECT_NE(text.str().find("diagnosis: most likely: "), std::string::npos);
  EXPECT_NE(text.str().find("[" + std::string(c.cls) + "]"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Catalog, DiagnosisOfMutants,
    ::testing::Values(named_case{"unbiased_normalization", "variance_estimator", "exact/"},
                      named_case{"momentum_swapped", "momentum", "exact/"},
                      named_case{"eps_outside_sqrt", "epsilon", "exact/"},
                      named_case{"vector_tail_dropped", "tail", "exact/"},
                      named_case{"ignores_strides", "layout", "exact/"},
                      named_case{"backward_drops_stats", "backward_formula", "exact/"},
                      named_case{"eval_uses_batch_stats", "train_eval", "exact/"},
                      named_case{"fam_unbiased_variance", "variance_estimator", "layer_norm/"},
                      named_case{"offset_missing", "weight_offset", "rms_norm/"},
                      named_case{"fold_ignores_bias", "folding", "fold/"},
                      named_case{"syncbn_no_between_term", "syncbn_merge", "syncbn/"}),
    [](const ::testing::TestParamInfo<named_case>& i) { return std::string(i.param.mutant); });

TEST(DiagnosisOfCorrectKernels, NoClassIsNamed) {
  for (const char* k : {"libbnk_pairwise.so", "libbnk_two_pass.so"}) {
    const run_summary s =
        run(std::string(BNORACLE_KERNEL_DIR) + "/" + k, accuracy_level::lenient, "");
    EXPECT_EQ(s.failed, 0) << k;
    EXPECT_TRUE(diagnose(s).empty()) << k;
    std::ostringstream text;
    write_report(text, s, report_format::text, false);
    EXPECT_EQ(text.str().find("diagnosis:"), std::string::npos) << k;
  }
}

}  // namespace
}  // namespace bnoracle
