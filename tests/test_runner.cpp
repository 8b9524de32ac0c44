// The conformance runner end to end: bundled correct kernels pass the whole catalog at their true
// level, mutants of the mutation catalog fail it even at the most permissive level, reports are
// well formed, and `identify` reads conventions back.
#include "bnoracle/identify.hpp"
#include "bnoracle/report.hpp"
#include "bnoracle/runner.hpp"
#include "bnoracle/verify.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

// A kernel of the mutation catalog (kernels/mutants, tests/mutants) by name; "parent" is the
// correct one, the bundled two_pass kernel written out with its mutation points.
std::unique_ptr<bn_kernel> mutant(const std::string& name) {
  return load_plugin(std::string(BNORACLE_MUTANT_DIR) + "/libbnm_" + name + ".so");
}

run_summary run_with(const std::string& name, accuracy_level level,
                     const std::string& filter = "") {
  auto kernel = mutant(name);
  run_options o;
  o.level = level;
  o.filter = filter;
  // These tests judge verdicts; the diagnosis of the failures is test_diagnosis.cpp's.
  o.diagnose = false;
  o.timeout = std::chrono::milliseconds(20000);
  return run_catalog(*kernel, default_catalog(1), o, nullptr);
}

TEST(Runner, ParentOfTheMutantsPassesTheCatalogAtStandard) {
  // The mutants' parent is an ordinary sequential float32 kernel: it must pass the default gate.
  const run_summary s = run_with("parent", accuracy_level::standard);
  for (const auto& r : s.results) {
    EXPECT_NE(r.result, verdict::fail)
        << r.case_name << ' ' << to_string(r.mode) << ": " << r.reason;
    EXPECT_NE(r.result, verdict::fault) << r.case_name << ": " << r.reason;
  }
  EXPECT_EQ(s.exit_code(), 0);
}

TEST(Runner, EveryDefectIsCaughtEvenAtTheLenientLevel) {
  const std::map<std::string, std::string> defects{
      {"biased_running_var", "biased running variance"},
      {"momentum_swapped", "momentum weighs the old value"},
      {"one_pass_variance", "one-pass variance"},
      {"eps_outside_sqrt", "eps outside the square root"},
      {"backward_drops_stats", "backward without the statistics paths"},
      {"eval_uses_batch_stats", "inference with batch statistics"},
      {"running_not_updated", "running statistics not updated"},
      {"off_by_one_percent", "a 1% bias"}};
  for (const auto& [d, what] : defects) {
    const run_summary s = run_with(d, accuracy_level::lenient);
    EXPECT_EQ(s.exit_code(), 1) << what << " was not caught";
    EXPECT_GT(s.failed, 0) << what;
  }
}

TEST(Runner, BundledCorrectKernelsPassAtTheirTrueLevel) {
  // Pairwise and compensated reductions meet strict; sequential ones (two-pass, Welford, blocked
  // halves) meet standard. Every kernel passes the standard gate.
  const std::map<std::string, accuracy_level> expected{
      {"pairwise", accuracy_level::strict},
      {"compensated", accuracy_level::strict},
      {"two_pass", accuracy_level::standard},
      {"welford", accuracy_level::standard},
      {"blocked_threads", accuracy_level::standard}};
  for (const auto& [name, level] : expected) {
    const std::string path = std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + name + ".so";
    auto kernel = load_plugin(path);
    run_options o;
    o.level = accuracy_level::standard;
    o.kernel_path = path;
    const run_summary s = run_catalog(*kernel, default_catalog(1), o, nullptr);
    for (const auto& r : s.results) {
      EXPECT_TRUE(r.result == verdict::pass || r.result == verdict::mistrusted ||
                  r.result == verdict::skip)
          << name << ' ' << r.case_name << ' ' << to_string(r.mode) << ": " << r.reason;
    }
    EXPECT_EQ(s.exit_code(), 0) << name;
    ASSERT_TRUE(s.best.has_value()) << name;
    EXPECT_LE(static_cast<int>(*s.best), static_cast<int>(level))
        << name << " reached only " << to_string(*s.best);
  }
}

// The catalog in a data-type configuration: a bundled kernel (float32 arithmetic, each output
// rounded once to its format) passes at its deterministic level — strict for a pairwise sum,
// lenient for a sequential one: float16 data takes few distinct values, and a sequential float32
// sum of equal terms rounds the same way at every step, beyond the standard level's probabilistic
// model (docs/error-model.md, "Half precision") — and its worst output is a measurable fraction
// of the bound (the final rounding alone reaches it).
void expect_half_configuration_passes(std::string_view configuration) {
  const std::optional<data_types> types = parse_data_types(configuration);
  ASSERT_TRUE(types.has_value()) << configuration;
  const std::map<std::string, accuracy_level> kernels{{"pairwise", accuracy_level::strict},
                                                      {"two_pass", accuracy_level::lenient}};
  for (const auto& [name, level] : kernels) {
    const std::string path = std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + name + ".so";
    auto kernel = load_plugin(path);
    run_options o;
    o.level = level;
    o.kernel_path = path;
    o.types = types;
    const run_summary s = run_catalog(*kernel, default_catalog(1), o, nullptr);
    std::int64_t judged = 0;
    double worst = 0;
    for (const auto& r : s.results) {
      EXPECT_TRUE(r.result == verdict::pass || r.result == verdict::mistrusted ||
                  r.result == verdict::skip)
          << name << ' ' << configuration << ' ' << r.case_name << ' ' << to_string(r.mode) << ": "
          << r.reason;
      EXPECT_NE(r.problem.find("types="), std::string::npos) << r.problem;
      for (const output_result& out : r.outputs) {
        judged += out.judged;
        worst = std::max(worst, out.worst_ratio);
      }
    }
    EXPECT_EQ(s.exit_code(), 0) << name << ' ' << configuration;
    EXPECT_GT(judged, 10000) << name << ' ' << configuration;
    EXPECT_GT(worst, 0.2) << name << ' ' << configuration;
    EXPECT_EQ(s.failed + s.faults, 0);
  }
}

TEST(RunnerHalf, CudnnMixed) {
  expect_half_configuration_passes("cudnn_mixed");
}
TEST(RunnerHalf, Bf16Mixed) {
  expect_half_configuration_passes("bf16_mixed");
}
TEST(RunnerHalf, PytorchCpuBf16) {
  expect_half_configuration_passes("pytorch_cpu_bf16");
}
TEST(RunnerHalf, AllHalf) {
  expect_half_configuration_passes("all_half");
}
TEST(RunnerHalf, Bf16Weights) {
  expect_half_configuration_passes("bf16_weights");
}

// Options that run the property suite alone, `cases` cases per property, in `jobs` processes.
run_options properties_only(int cases, int jobs) {
  run_options o;
  o.catalog = false;
  o.property_cases = cases;
  o.jobs = jobs;
  return o;
}

// Properties checked by helper processes (--jobs) give the results of one process, in its order.
TEST(Runner, PropertiesCheckedByHelperProcessesEqualOneProcess) {
  auto kernel = load_plugin(std::string(BNORACLE_MUTANT_DIR) + "/libbnm_eps_outside_sqrt.so");
  run_options o = properties_only(10, 1);
  o.diagnose = false;
  const run_summary one = run_conformance(*kernel, {}, o, nullptr);
  o.jobs = 3;
  const run_summary three = run_conformance(*kernel, {}, o, nullptr);
  ASSERT_EQ(one.results.size(), three.results.size());
  ASSERT_GE(one.results.size(), 6U);
  for (std::size_t i = 0; i < one.results.size(); ++i) {
    EXPECT_EQ(one.results[i].case_name, three.results[i].case_name);
    EXPECT_EQ(one.results[i].result, three.results[i].result) << one.results[i].case_name;
    EXPECT_EQ(one.results[i].reason, three.results[i].reason) << one.results[i].case_name;
  }
  EXPECT_GT(one.failed, 0) << "the mutant fails some property, in both runs";
  EXPECT_EQ(one.failed, three.failed);
  EXPECT_EQ(one.verdict(), three.verdict());
}

// A helper that dies leaves no property unjudged and no run CONFORMANT: each of its properties is
// a fault naming the helper.
TEST(Runner, AHelperProcessThatDiesMakesItsPropertiesFaults) {
  auto kernel = load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_pairwise.so");
  ::setenv("BNORACLE_TEST_PROPERTY_HELPER_DIES", "1", 1);
  const run_summary s = run_conformance(*kernel, {}, properties_only(5, 2), nullptr);
  ::unsetenv("BNORACLE_TEST_PROPERTY_HELPER_DIES");
  ASSERT_GE(s.results.size(), 4U);
  std::size_t helped = 0;
  for (std::size_t i = 0; i < s.results.size(); ++i) {
    const case_result& r = s.results[i];
    if (i % 2 == 0) {
      EXPECT_EQ(r.result, verdict::pass) << r.case_name << ": checked in this process";
      continue;
    }
    ++helped;
    EXPECT_EQ(r.result, verdict::fault) << r.case_name;
    EXPECT_NE(r.reason.find("the helper process checking this property was killed by signal"),
              std::string::npos)
        << r.reason;
  }
  EXPECT_GT(helped, 0U);
  EXPECT_NE(s.verdict(), run_verdict::conformant);
  EXPECT_EQ(s.exit_code(), k_exit_kernel_fault);
}

TEST(Runner, FailureReportsNameTheCaseTheElementAndTheReproduction) {
  const run_summary s = run_with("biased_running_var", accuracy_level::standard, "exact/basic");
  std::ostringstream os;
  write_report(os, s, report_format::text, false);
  const std::string text = os.str();
  EXPECT_NE(text.find("FAIL"), std::string::npos) << text;
  EXPECT_NE(text.find("running_var[c="), std::string::npos) << text;
  // got and exp in decimal next to hex, the two spelling the same float.
  for (const std::string key : {"got=", "exp="}) {
    const std::size_t at = text.find(key);
    ASSERT_NE(at, std::string::npos) << text;
    const std::size_t open = text.find(" (0x", at);
    ASSERT_NE(open, std::string::npos) << text;
    const std::string decimal = text.substr(at + key.size(), open - at - key.size());
    const std::string hex = text.substr(open + 2, text.find(')', open) - open - 2);
    EXPECT_EQ(std::strtof(decimal.c_str(), nullptr), std::strtof(hex.c_str(), nullptr))
        << key << decimal << " vs " << hex;
  }
  EXPECT_NE(text.find("repro: bnoracle check --kernel"), std::string::npos) << text;
  EXPECT_NE(text.find("NOT CONFORMANT"), std::string::npos) << text;
}

TEST(Runner, JsonAndJunitReportsAreWellFormed) {
  const run_summary s = run_with("momentum_swapped", accuracy_level::standard, "exact/two_values");
  std::ostringstream js;
  write_report(js, s, report_format::json, false);
  EXPECT_NE(js.str().find("\"schema\": \"bnoracle.check\""), std::string::npos);
  std::ostringstream xs;
  write_report(xs, s, report_format::junit, false);
  const std::string x = xs.str();
  EXPECT_EQ(x.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 0), 0U);
  EXPECT_NE(x.find("<failure message=\""), std::string::npos);
  // Every element opened is closed (a structural check; CI also parses it with an XML parser).
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t p = x.find(needle); p != std::string::npos; p = x.find(needle, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<testcase "), count("</testcase>"));
  EXPECT_EQ(count("<testsuite "), count("</testsuite>"));
  EXPECT_EQ(xml_escape("a<b&\"c'\x01"), "a&lt;b&amp;&quot;c&apos;?");
}

TEST(Runner, IdentifyReadsBackTheConventionAndItsDefects) {
  run_options o;
  identify_result r = identify(*mutant("parent"), o);
  EXPECT_EQ(r.weighs, "new");
  EXPECT_EQ(r.estimator, "unbiased");
  EXPECT_EQ(r.cumulative, "supported");
  EXPECT_EQ(r.single_value, "refuse");
  ASSERT_FALSE(r.matches.empty());
  EXPECT_EQ(r.matches.front(), "pytorch");
  EXPECT_EQ(r.fields, "momentum=new,running_var=unbiased,cumulative=yes,l1=refuse,l0=unchanged");
  r = identify(*mutant("momentum_swapped"), o);
  EXPECT_EQ(r.weighs, "old");
  r = identify(*mutant("biased_running_var"), o);
  EXPECT_EQ(r.estimator, "biased");
  EXPECT_TRUE(r.matches.empty());
  EXPECT_EQ(r.fields, "momentum=new,running_var=biased,cumulative=yes,l1=refuse,l0=unchanged");
}

// ---- results and verify: what a kernel's results are judged on --------------------------------

fixture corpus_fixture(const std::string& id) {
  fixture f = load_fixture(std::string(BNORACLE_CORPUS_DIR) + "/" + id + ".json");
  f.id = id;
  return f;
}

TEST(Verify, AKernelWithoutRunningStatisticsIsJudgedOnEveryOtherOutput) {
  // oneDNN keeps no running statistics (updates_running = 0): a fixture that tracks them is run
  // without tracking, its running statistics are omitted and not judged, and dst, mean and
  // invstd are judged as usual.
  const auto parent = mutant("parent");
  kernel_info untracked = parent->info();
  untracked.updates_running = false;
  const auto kernel = with_info(*parent, untracked);
  run_options o;
  const fixture f = corpus_fixture("convention/pytorch/nchw_2x3x2x2/forward_training_step2");
  ASSERT_TRUE(f.track_running);
  results r = kernel_results(*kernel, f, o);
  ASSERT_EQ(r.status, "ok") << r.message;
  EXPECT_FALSE(r.running_returned);
  EXPECT_EQ(r.outputs.count("running_mean"), 0U);
  EXPECT_EQ(r.outputs.count("dst"), 1U);
  EXPECT_FALSE(r.num_batches_tracked.has_value());
  EXPECT_NE(r.message.find("updates_running = 0"), std::string::npos) << r.message;
  // The flag survives the file.
  const std::string text = dump_results(r);
  EXPECT_NE(text.find("\"running_statistics\": \"omitted\""), std::string::npos) << text;
  EXPECT_FALSE(parse_results(text, "r.json").running_returned);
  case_result c = judge_fixture(f, r, o);
  EXPECT_EQ(c.result, verdict::pass) << c.reason;
  EXPECT_NE(c.reason.find("running statistics not judged"), std::string::npos) << c.reason;
  for (const auto& out : c.outputs) EXPECT_NE(out.name, "running_mean");
  // The other outputs are still judged: a dst off by 1% fails.
  for (float& v : r.outputs["dst"]) v *= 1.01F;
  c = judge_fixture(f, r, o);
  EXPECT_EQ(c.result, verdict::fail) << c.reason;
  // Results that return the running statistics but leave them out still fail as before.
  r.running_returned = true;
  for (float& v : r.outputs["dst"]) v /= 1.01F;
  c = judge_fixture(f, r, o);
  EXPECT_EQ(c.result, verdict::fail);
  EXPECT_NE(c.reason.find("running_mean is missing"), std::string::npos) << c.reason;
}

TEST(Verify, RunningStatisticsFlagRejectsUnknownValues) {
  const std::string bad = R"({"schema": "bnoracle.results", "schema_version": 1, "id": "x",
    "status": "ok", "running_statistics": "maybe", "outputs": {}})";
  EXPECT_THROW((void)parse_results(bad, "bad.json"), fixture_error);
  const std::string good = R"({"schema": "bnoracle.results", "schema_version": 1, "id": "x",
    "status": "ok", "running_statistics": "returned", "outputs": {}})";
  EXPECT_TRUE(parse_results(good, "good.json").running_returned);
}

TEST(Verify, AFixtureOfAnotherConventionIsJudgedWithoutItsRunningStatistics) {
  // The parent claims pytorch. A tensorflow fixture differs only in its running statistics
  // (biased running variance) and its L = 1 rule: everything else is judged.
  const auto kernel = mutant("parent");
  run_options o;
  const fixture tf = corpus_fixture("convention/tensorflow/nchw_2x3x2x2/forward_training_step1");
  results r = kernel_results(*kernel, tf, o);
  ASSERT_EQ(r.status, "ok") << r.message;
  EXPECT_FALSE(r.running_returned);
  EXPECT_NE(r.message.find("fixture for convention tensorflow, kernel claims pytorch"),
            std::string::npos)
      << r.message;
  EXPECT_EQ(judge_fixture(tf, r, o).result, verdict::pass);
  // The same kernel with a biased running variance still fails its own convention's fixture...
  const auto biased = mutant("biased_running_var");
  const fixture pt = corpus_fixture("convention/pytorch/nchw_2x3x2x2/forward_training_step1");
  EXPECT_EQ(judge_fixture(pt, kernel_results(*biased, pt, o), o).result, verdict::fail);
  // ... and --convention (run_options::convention) replaces the claim: the pytorch fixture is
  // then of another convention and its running statistics are omitted.
  o.convention = "tensorflow";
  r = kernel_results(*biased, pt, o);
  EXPECT_FALSE(r.running_returned);
  EXPECT_EQ(judge_fixture(pt, r, o).result, verdict::pass);
  o.convention.clear();
  // A problem the fixture's convention refuses is not the kernel's business under another claim.
  const fixture refused = corpus_fixture("edge/one_value/pytorch_nchw_1x3x1x1/forward_training");
  ASSERT_FALSE(refused.refusal.empty());
  o.convention = "tensorflow";
  r = kernel_results(*kernel, refused, o);
  EXPECT_EQ(r.status, "unsupported");
  EXPECT_NE(r.message.find("refuses"), std::string::npos) << r.message;
  // A refusal by the kernel's own convention (pytorch, L = 1) of a problem another convention
  // accepts is a skip, not a failure.
  o.convention.clear();
  const fixture one = corpus_fixture("edge/one_value/tensorflow_nchw_1x3x1x1/forward_training");
  ASSERT_TRUE(one.refusal.empty());
  r = kernel_results(*kernel, one, o);
  EXPECT_EQ(r.status, "unsupported") << r.message;
  EXPECT_NE(r.message.find("refused it"), std::string::npos) << r.message;
  EXPECT_EQ(judge_fixture(one, r, o).result, verdict::skip);
}

}  // namespace
}  // namespace bnoracle
