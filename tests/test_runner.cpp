// The conformance runner end to end: bundled correct kernels pass the whole catalog at their true
// level, deliberately defective kernels fail it even at the most permissive level, reports are
// well formed, and `identify` reads conventions back.
#include "identify.hpp"
#include "report.hpp"
#include "runner.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

// ---- A small float32 kernel with one switchable defect, in-process through the C ABI ---------

enum class defect {
  none,
  biased_running_var,     // keras #8982: running variance without L/(L − 1)
  momentum_swapped,       // pytorch/examples #289: momentum weighs the old value
  one_pass_variance,      // E[x²] − E[x]² in float (tensorflow #118701, flax #1491)
  eps_outside_sqrt,       // 1/(sqrt(var) + ε) (ncnn PR #311)
  backward_drops_stats,   // CrypTen PR #143: dx = γ·r·(dy − mean(dy)) only
  eval_uses_batch_stats,  // tvm #19574: inference normalizes with the batch statistics
  running_not_updated,    // jax #139: running statistics never written
  off_by_one_percent,     // a 1% bias that loose tolerances hide
};

defect g_defect = defect::none;  // inherited by the forked child of each isolated call

struct channel_view {
  std::vector<std::int64_t> offsets;
};

// Offsets of channel c's elements, from the ABI shape (any rank, any strides).
channel_view offsets_of(const bnk_shape& s, std::int64_t c) {
  channel_view v;
  const std::int64_t d2 = s.rank > 2 ? s.dims[2] : 1, d3 = s.rank > 3 ? s.dims[3] : 1,
                     d4 = s.rank > 4 ? s.dims[4] : 1;
  for (std::int64_t n = 0; n < s.dims[0]; ++n) {
    for (std::int64_t i = 0; i < d2; ++i) {
      for (std::int64_t j = 0; j < d3; ++j) {
        for (std::int64_t k = 0; k < d4; ++k) {
          v.offsets.push_back(n * s.strides[0] + c * s.strides[1] + i * s.strides[2] +
                              j * s.strides[3] + k * s.strides[4]);
        }
      }
    }
  }
  return v;
}

struct stats {
  float mean = 0, var = 0;
};

stats batch_stats(const float* x, const channel_view& v) {
  const auto L = static_cast<float>(v.offsets.size());
  float s = 0;
  float s2 = 0;
  for (const auto o : v.offsets) {
    s += x[o];
    s2 += x[o] * x[o];
  }
  const float mean = s / L;
  if (g_defect == defect::one_pass_variance) return {mean, s2 / L - mean * mean};
  float q = 0;
  for (const auto o : v.offsets) q += (x[o] - mean) * (x[o] - mean);
  return {mean, q / L};
}

float rstd(float var, double eps) {
  const auto e = static_cast<float>(eps);
  if (g_defect == defect::eps_outside_sqrt) return 1.0F / (std::sqrt(var) + e);
  return 1.0F / std::sqrt(var + e);
}

int forward(const bnk_problem* p, const bnk_buffers* b, bool training) {
  const std::int64_t C = p->shape.dims[1];
  for (std::int64_t c = 0; c < C; ++c) {
    const auto u = static_cast<std::size_t>(c);
    const channel_view v = offsets_of(p->shape, c);
    const auto L = static_cast<std::int64_t>(v.offsets.size());
    if (training && L == 1) return BNK_REFUSED;
    if (L == 0) continue;
    const float g = p->affine ? b->gamma[u] : 1.0F;
    const float be = p->affine ? b->beta[u] : 0.0F;
    stats st{};
    if (training || g_defect == defect::eval_uses_batch_stats) {
      st = batch_stats(b->src, v);
    } else {
      st = {b->running_mean[u], b->running_var[u]};
    }
    const float r = rstd(st.var, p->eps);
    const float scale = g_defect == defect::off_by_one_percent ? 1.01F : 1.0F;
    for (const auto o : v.offsets) b->dst[o] = scale * g * (b->src[o] - st.mean) * r + be;
    if (training) {
      if (b->save_mean != nullptr) b->save_mean[u] = st.mean;
      if (b->save_stat != nullptr) b->save_stat[u] = r;
      if (p->track_running && g_defect != defect::running_not_updated) {
        const float f = p->cumulative ? 1.0F / static_cast<float>(*b->num_batches_tracked + 1)
                                      : static_cast<float>(p->momentum);
        const float fw = g_defect == defect::momentum_swapped ? 1.0F - f : f;
        const float bessel = g_defect == defect::biased_running_var
                                 ? 1.0F
                                 : static_cast<float>(L) / static_cast<float>(L - 1);
        b->running_mean[u] = (1.0F - fw) * b->running_mean[u] + fw * st.mean;
        b->running_var[u] = (1.0F - fw) * b->running_var[u] + fw * st.var * bessel;
      }
    }
  }
  if (training && p->track_running) *b->num_batches_tracked += 1;
  return BNK_OK;
}

int backward(const bnk_problem* p, const bnk_buffers* b, bool training) {
  const std::int64_t C = p->shape.dims[1];
  for (std::int64_t c = 0; c < C; ++c) {
    const auto u = static_cast<std::size_t>(c);
    const channel_view v = offsets_of(p->shape, c);
    const auto L = static_cast<float>(v.offsets.size());
    if (training && v.offsets.size() == 1) return BNK_REFUSED;  // its forward refused too
    const float g = p->affine ? b->gamma[u] : 1.0F;
    const stats st =
        training ? batch_stats(b->src, v) : stats{b->running_mean[u], b->running_var[u]};
    const float r = rstd(st.var, p->eps);
    float sdy = 0;
    float sdyx = 0;
    for (const auto o : v.offsets) {
      sdy += b->diff_dst[o];
      sdyx += b->diff_dst[o] * (b->src[o] - st.mean) * r;
    }
    for (const auto o : v.offsets) {
      const float xhat = (b->src[o] - st.mean) * r;
      float t = b->diff_dst[o];
      if (training) {
        t -= sdy / L;
        if (g_defect != defect::backward_drops_stats) t -= xhat * sdyx / L;
      }
      b->diff_src[o] = g * r * t;
    }
    if (p->affine) {
      b->diff_gamma[u] = sdyx;
      b->diff_beta[u] = sdy;
    }
  }
  return BNK_OK;
}

int ft(const bnk_problem* p, const bnk_buffers* b, char*, size_t) {
  return forward(p, b, true);
}
int fi(const bnk_problem* p, const bnk_buffers* b, char*, size_t) {
  return forward(p, b, false);
}
int bt(const bnk_problem* p, const bnk_buffers* b, char*, size_t) {
  return backward(p, b, true);
}
int bi(const bnk_problem* p, const bnk_buffers* b, char*, size_t) {
  return backward(p, b, false);
}

const bnk_kernel k_table{BNK_ABI_VERSION,
                         sizeof(bnk_kernel),
                         "test_naive",
                         "1.0",
                         "pytorch",
                         BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW | BNK_LAYOUT_NHWC |
                             BNK_LAYOUT_NCDHW | BNK_LAYOUT_NDHWC,
                         1,
                         1,
                         BNK_SAVES_MEAN_INVSTD,
                         ft,
                         fi,
                         bt,
                         bi};

run_summary run_with(defect d, accuracy_level level, const std::string& filter = "") {
  g_defect = d;
  auto kernel = wrap_table(&k_table);
  run_options o;
  o.level = level;
  o.filter = filter;
  o.timeout = std::chrono::milliseconds(20000);
  auto s = run_catalog(*kernel, default_catalog(1), o, nullptr);
  g_defect = defect::none;
  return s;
}

TEST(Runner, DefectFreeNaiveKernelPassesTheCatalogAtLenient) {
  // The test kernel without a defect is an ordinary sequential float kernel: it must pass.
  const run_summary s = run_with(defect::none, accuracy_level::lenient);
  for (const auto& r : s.results) {
    EXPECT_NE(r.result, verdict::fail)
        << r.case_name << ' ' << to_string(r.mode) << ": " << r.reason;
    EXPECT_NE(r.result, verdict::fault) << r.case_name << ": " << r.reason;
  }
  EXPECT_EQ(s.exit_code(), 0);
}

TEST(Runner, EveryDefectIsCaughtEvenAtTheLenientLevel) {
  const std::map<defect, std::string> defects{
      {defect::biased_running_var, "biased running variance"},
      {defect::momentum_swapped, "momentum weighs the old value"},
      {defect::one_pass_variance, "one-pass variance"},
      {defect::eps_outside_sqrt, "eps outside the square root"},
      {defect::backward_drops_stats, "backward without the statistics paths"},
      {defect::eval_uses_batch_stats, "inference with batch statistics"},
      {defect::running_not_updated, "running statistics not updated"},
      {defect::off_by_one_percent, "a 1% bias"}};
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

TEST(Runner, FailureReportsNameTheCaseTheElementAndTheReproduction) {
  const run_summary s =
      run_with(defect::biased_running_var, accuracy_level::standard, "exact/basic");
  std::ostringstream os;
  write_report(os, s, report_format::text, false);
  const std::string text = os.str();
  EXPECT_NE(text.find("FAIL"), std::string::npos) << text;
  EXPECT_NE(text.find("running_var[c="), std::string::npos) << text;
  EXPECT_NE(text.find("got=0x"), std::string::npos) << text;
  EXPECT_NE(text.find("repro: bnoracle check --kernel"), std::string::npos) << text;
  EXPECT_NE(text.find("NOT CONFORMANT"), std::string::npos) << text;
}

TEST(Runner, JsonAndJunitReportsAreWellFormed) {
  const run_summary s =
      run_with(defect::momentum_swapped, accuracy_level::standard, "exact/two_values");
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
  g_defect = defect::none;
  auto kernel = wrap_table(&k_table);
  run_options o;
  identify_result r = identify(*kernel, o);
  EXPECT_EQ(r.weighs, "new");
  EXPECT_EQ(r.estimator, "unbiased");
  EXPECT_EQ(r.cumulative, "supported");
  EXPECT_EQ(r.single_value, "refuse");
  ASSERT_FALSE(r.matches.empty());
  EXPECT_EQ(r.matches.front(), "pytorch");
  g_defect = defect::momentum_swapped;
  r = identify(*kernel, o);
  EXPECT_EQ(r.weighs, "old");
  g_defect = defect::biased_running_var;
  r = identify(*kernel, o);
  EXPECT_EQ(r.estimator, "biased");
  g_defect = defect::none;
}

}  // namespace
}  // namespace bnoracle
