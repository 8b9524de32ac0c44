// The bundled float32 kernels (kernels/), each loaded as a plugin through the C ABI.
//
// What is asserted: what each kernel claims about itself; skips (BNK_UNSUPPORTED) and refusals
// (BNK_REFUSED); bit-for-bit agreement with the reference's goldens on exact data, where every
// correct float32 algorithm must be exact (the derivation is at `exact_case`); PyTorch's
// running-statistics convention over several steps; NaN containment; layout independence.
// What is not asserted: accuracy on general data. Tolerances are the error model's business, not
// a test's guess; `ErrorsOnRandomDataAreReported` prints the observed errors in ulps instead.
#include "bnoracle/kernel.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#ifndef BNORACLE_KERNEL_DIR
#error "BNORACLE_KERNEL_DIR must name the directory of the built kernels"
#endif

namespace bnoracle {
namespace {

struct bundled {
  const char* name;
  bool every_layout;  // the C++ kernels honour any strides; minimal (C) is NCHW only
};

constexpr bundled k_bundled[] = {{"two_pass", true},    {"welford", true},
                                 {"pairwise", true},    {"blocked_threads", true},
                                 {"compensated", true}, {"minimal", false}};

constexpr bn_mode k_modes[] = {bn_mode::forward_training, bn_mode::forward_inference,
                               bn_mode::backward_training, bn_mode::backward_inference};

std::unique_ptr<bn_kernel> load(const std::string& name) {
  return load_plugin(std::string(BNORACLE_KERNEL_DIR) + "/libbnk_" + name + ".so");
}

// A value no kernel computes in these tests: marks output memory that was never written.
constexpr float k_unwritten = -0x1.abcdep+99F;

// A logical problem with the inputs of every mode; tensors in canonical order (n, c, spatial).
struct bn_case {
  bn_problem p;
  std::vector<float> x, dy;
  std::vector<float> gamma, beta;  // empty: affine = 0
  std::vector<float> running_mean, running_var;
  std::int64_t nbt = 0;
  bool track = true;  // forward training updates the running statistics
};

// The same problem stored in canonical order: the channels-first named layout of its rank.
bn_problem canonical(bn_problem p) {
  constexpr layout by_rank[] = {layout::nc, layout::ncl, layout::nchw, layout::ncdhw};
  p.mem_layout = by_rank[p.spatial.size()];
  p.strides.clear();
  return p;
}

// A tensor stored through a problem's strides, inside a buffer that also holds every gap.
class strided_tensor {
 public:
  strided_tensor(const geometry& g, float fill)
      : g_(g), mem_(static_cast<std::size_t>(g.max_offset() - g.min_offset() + 1), fill) {}

  float* data() { return g_.elements() == 0 ? nullptr : mem_.data() - g_.min_offset(); }

  void scatter(const std::vector<float>& canonical_values) {
    each([&](std::int64_t off, std::int64_t li) {
      at(off) = canonical_values[static_cast<std::size_t>(li)];
    });
  }
  [[nodiscard]] std::vector<float> gather() {
    std::vector<float> v(static_cast<std::size_t>(g_.elements()));
    each([&](std::int64_t off, std::int64_t li) { v[static_cast<std::size_t>(li)] = at(off); });
    return v;
  }
  // Memory between the tensor's elements still holds `fill`.
  [[nodiscard]] bool gaps_hold(float fill) {
    std::vector<bool> used(mem_.size(), false);
    each([&](std::int64_t off, std::int64_t) {
      used[static_cast<std::size_t>(off - g_.min_offset())] = true;
    });
    for (std::size_t i = 0; i < mem_.size(); ++i) {
      if (!used[i] && !bit_equal(mem_[i], fill)) return false;
    }
    return true;
  }

 private:
  template <class F>
  void each(F&& f) {
    for (std::int64_t c = 0; c < g_.c(); ++c) g_.for_each_in_channel(c, f);
  }
  float& at(std::int64_t off) { return mem_[static_cast<std::size_t>(off - g_.min_offset())]; }

  geometry g_;
  std::vector<float> mem_;
};

// What a kernel produced; tensors gathered back into canonical order.
struct outputs {
  bnk_status status = BNK_FAILED;
  std::string message;
  std::vector<float> dst, diff_src;
  std::vector<float> save_mean, save_stat, running_mean, running_var, diff_gamma, diff_beta;
  std::int64_t nbt = 0;
  bool inputs_unchanged = true;
  bool gaps_unchanged = true;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), bit_equal);
}

// Runs one mode of kernel `k` on `d`. Backward training gets `saved` (mean, invstd) when given,
// else NULL saved statistics.
outputs run(bn_kernel& k, bn_mode mode, const bn_case& d,
            const std::pair<std::vector<float>, std::vector<float>>* saved = nullptr) {
  const geometry g(d.p);
  const auto C = static_cast<std::size_t>(g.c());
  const bool affine = !d.gamma.empty();
  strided_tensor x(g, 0.0F);
  strided_tensor dy(g, 0.0F);
  strided_tensor out(g, k_unwritten);
  x.scatter(d.x);
  if (!d.dy.empty()) dy.scatter(d.dy);

  outputs o;
  o.running_mean = d.running_mean;
  o.running_var = d.running_var;
  o.nbt = d.nbt;
  o.save_mean.assign(C, k_unwritten);
  o.save_stat.assign(C, k_unwritten);
  o.diff_gamma.assign(C, k_unwritten);
  o.diff_beta.assign(C, k_unwritten);
  std::vector<float> gamma = d.gamma;
  std::vector<float> beta = d.beta;

  const bool forward = mode == bn_mode::forward_training || mode == bn_mode::forward_inference;
  bnk_buffers b{};
  b.src = x.data();
  b.diff_dst = forward ? nullptr : dy.data();
  b.gamma = affine ? gamma.data() : nullptr;
  b.beta = affine ? beta.data() : nullptr;
  if (mode != bn_mode::forward_training || d.track) {
    b.running_mean = o.running_mean.data();
    b.running_var = o.running_var.data();
    b.num_batches_tracked = &o.nbt;
  }
  if (mode == bn_mode::forward_training) {
    b.save_mean = o.save_mean.data();
    b.save_stat = o.save_stat.data();
  } else if (mode == bn_mode::backward_training && saved != nullptr) {
    o.save_mean = saved->first;
    o.save_stat = saved->second;
    b.save_mean = o.save_mean.data();
    b.save_stat = o.save_stat.data();
  }
  (forward ? b.dst : b.diff_src) = out.data();
  if (!forward && affine) {
    b.diff_gamma = o.diff_gamma.data();
    b.diff_beta = o.diff_beta.data();
  }

  const bnk_problem a = to_abi(d.p, g, affine, d.track);
  o.status = k.run(mode, a, b, o.message);

  (forward ? o.dst : o.diff_src) = out.gather();
  o.gaps_unchanged = out.gaps_hold(k_unwritten);
  o.inputs_unchanged = same_bits(x.gather(), d.x) && same_bits(gamma, d.gamma) &&
                       same_bits(beta, d.beta) && (d.dy.empty() || same_bits(dy.gather(), d.dy));
  if (mode != bn_mode::forward_training) {
    o.inputs_unchanged = o.inputs_unchanged && same_bits(o.running_mean, d.running_mean) &&
                         same_bits(o.running_var, d.running_var) && o.nbt == d.nbt;
  }
  if (mode == bn_mode::backward_training && saved != nullptr) {
    o.inputs_unchanged = o.inputs_unchanged && same_bits(o.save_mean, saved->first) &&
                         same_bits(o.save_stat, saved->second);
  }
  return o;
}

// The exact reference of `d` (read in canonical order, which the goldens also use).
reference reference_of(const bn_case& d, bn_mode mode) {
  bn_inputs in;
  in.src = d.x.empty() ? nullptr : d.x.data();
  const bool backward = mode == bn_mode::backward_training || mode == bn_mode::backward_inference;
  in.diff_dst = backward && !d.dy.empty() ? d.dy.data() : nullptr;
  in.gamma = d.gamma;
  in.beta = d.beta;
  if (mode != bn_mode::forward_training || d.track) {
    in.running_mean = d.running_mean;
    in.running_var = d.running_var;
  }
  in.num_batches_tracked = d.nbt;
  return {canonical(d.p), mode, in};
}

// The kernel's outputs that the reference names, per mode.
std::vector<std::pair<std::string, const std::vector<float>*>> named_outputs(const outputs& o,
                                                                             bn_mode mode,
                                                                             const bn_case& d) {
  const bool affine = !d.gamma.empty();
  switch (mode) {
    case bn_mode::forward_training: {
      std::vector<std::pair<std::string, const std::vector<float>*>> v{
          {"dst", &o.dst}, {"mean", &o.save_mean}, {"invstd", &o.save_stat}};
      if (d.track) {
        v.emplace_back("running_mean", &o.running_mean);
        v.emplace_back("running_var", &o.running_var);
      }
      return v;
    }
    case bn_mode::forward_inference:
      return {{"dst", &o.dst}};
    case bn_mode::backward_training:
    case bn_mode::backward_inference:
      if (!affine) return {{"diff_src", &o.diff_src}};
      return {
          {"diff_src", &o.diff_src}, {"diff_gamma", &o.diff_gamma}, {"diff_beta", &o.diff_beta}};
  }
  return {};
}

// `got` equals every golden exactly: the same value (±0 alike) for a finite golden, a non-finite
// value for an undefined one. With `exact_data`, every finite golden must also be the exact value
// itself (residual 0): the premise of the exact-data tests, checked rather than assumed.
::testing::AssertionResult equals_goldens(const std::vector<float>& got,
                                          const std::vector<golden>& want, bool exact_data) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " values for " << want.size();
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const golden& w = want[i];
    const bool ok = w.cls == golden_class::undefined ? !std::isfinite(got[i])
                    : w.cls == golden_class::finite  ? same_value(got[i], w.value)
                                                     : false;
    if (!ok) {
      return ::testing::AssertionFailure()
             << "[" << i << "] got " << hex_float(got[i]) << ", golden " << hex_float(w.value)
             << " (class " << static_cast<int>(w.cls) << ")";
    }
    if (exact_data && w.cls == golden_class::finite && w.residual != 0.0) {
      return ::testing::AssertionFailure()
             << "[" << i << "] the data are not exact: residual " << w.residual << " ulp";
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs `mode` and compares every output (or those in `only`) with the reference's goldens;
// returns the outputs.
outputs expect_goldens(bn_kernel& k, bn_mode mode, const bn_case& d, const std::string& label,
                       const std::pair<std::vector<float>, std::vector<float>>* saved = nullptr,
                       const std::vector<std::string>& only = {}) {
  outputs o = run(k, mode, d, saved);
  EXPECT_EQ(o.status, BNK_OK) << label << ": " << o.message;
  EXPECT_TRUE(o.inputs_unchanged) << label;
  EXPECT_TRUE(o.gaps_unchanged) << label;
  const reference ref = reference_of(d, mode);
  for (const auto& [name, values] : named_outputs(o, mode, d)) {
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
    EXPECT_TRUE(equals_goldens(*values, ref.goldens(name), true)) << label << " " << name;
  }
  if (mode == bn_mode::forward_training && d.track) {
    EXPECT_EQ(o.nbt, ref.num_batches_tracked()) << label;
  }
  return o;
}

std::string describe_run(const std::string& kernel, const bn_case& d, bn_mode mode) {
  return kernel + " " + std::string(to_string(mode)) + " " + describe(d.p);
}

// ---- Exact data -----------------------------------------------------------------------------
//
// Eight deviations a_j (integers) per channel, x_j = μ_c + s·a_j/4 for logical index j. Each row
// has Σa = 0 and Σa² = 504 = 7·72, and every prefix sum P_k = a_1 + … + a_k is divisible by the
// odd part of k. Why every float32 algorithm is then exact (u = 2^-24):
// - μ_c and s·a/4 are small dyadics (μ_c a multiple of 1/4 below 2^7, s a power of two), so
//   every x, every partial sum of x's in any order or tree, and every partial sum of
//   (x − μ)² = s²a²/16 has at most 17 significant bits: no addition rounds, so sequential,
//   pairwise, two-halves and compensated sums are all exact (Neumaier's correction stays 0).
// - Mean Σx/8 and variance M2/8 = 504·s²/128 = 3.9375·s² divide by a power of two: exact.
// - Welford's prefix means μ + s·P_k/(4k) are dyadic with a denominator dividing 4·8/s because
//   odd(k) | P_k; the correctly rounded δ/k equals the exact difference of two consecutive
//   prefix means, a representable dyadic, so no update rounds.
// - PyTorch's unbiased variance M2/(L − 1) = 31.5·s²/7 = 4.5·s²: exact.
// - ε = 1/16 with s = 1: σ² + ε = 4, sqrt = 2, invstd = 1/2 exactly; dst = (x − μ)·γ/2 + β
//   with γ, β multiples of 1/4: exact. In inference var_run + ε ∈ {1, 4, 16, 64}.
// - Backward: dy = b/2 with integer |b| <= 8: Σdy, Σdy·(x − μ), their means (÷8), x̂ = a/8 and
//   every product and difference in dx have fewer than 24 significant bits: exact.
// - Running statistics with momentum 1/4: (3/4)·old + (1/4)·new on small dyadics: exact.
// The goldens' residuals are checked to be 0 (`equals_goldens`), so the premise is tested too.
constexpr int k_dev[4][8] = {{-1, -12, -2, 11, 9, -2, -10, 7},
                             {12, -14, -1, 3, -10, 1, 2, 7},
                             {-9, -8, 11, -6, 7, 2, 10, -7},
                             {6, -14, 5, 8, -5, 3, -10, 7}};
constexpr int k_dy[4][8] = {{3, -1, 4, -8, 5, 0, -2, 6},
                            {-7, 2, 2, 5, -3, 8, -1, 1},
                            {0, 4, -6, 1, 7, -2, -5, 3},
                            {8, -8, 1, -3, 2, 6, -4, -1}};

// C = 4 channels of L = 8 values in the given spatial shape (N · spatial size = 8).
bn_case exact_case(std::int64_t n, std::vector<std::int64_t> spatial, layout l, bool affine) {
  bn_case d;
  d.p.n = n;
  d.p.c = 4;
  d.p.spatial = std::move(spatial);
  d.p.mem_layout = l;
  d.p.eps = 0.0625;
  d.p.momentum = 0.25;
  const geometry g(d.p);
  EXPECT_EQ(g.per_channel(), 8);
  const float mu[4] = {3.0F, -7.0F, 100.0F, 0.5F};
  d.x.resize(static_cast<std::size_t>(g.elements()));
  d.dy.resize(d.x.size());
  for (std::int64_t c = 0; c < 4; ++c) {
    std::int64_t j = 0;  // logical position in the channel: n-major, then spatial
    g.for_each_in_channel(c, [&](std::int64_t, std::int64_t li) {
      const auto u = static_cast<std::size_t>(li);
      d.x[u] = mu[c] + static_cast<float>(k_dev[c][j]) / 4.0F;
      d.dy[u] = static_cast<float>(k_dy[c][j]) / 2.0F;
      ++j;
    });
  }
  if (affine) {
    d.gamma = {1.5F, -2.0F, 0.75F, 1.0F};
    d.beta = {0.25F, -1.0F, 3.0F, 0.0F};
  }
  d.running_mean = {0.5F, -1.0F, 2.0F, 0.0F};
  d.running_var = {1.0F, 2.0F, 0.5F, 4.0F};
  return d;
}

// The same data with running statistics for inference: var_run + ε ∈ {4, 16, 1, 64}.
bn_case for_inference(bn_case d) {
  d.running_mean = {1.0F, -6.5F, 99.0F, 0.25F};
  d.running_var = {3.9375F, 15.9375F, 0.9375F, 63.9375F};
  return d;
}

struct shape_case {
  std::int64_t n;
  std::vector<std::int64_t> spatial;
  layout l;
};

// Every named layout, each with L = 8 per channel.
const std::vector<shape_case>& exact_shapes() {
  static const std::vector<shape_case> v{
      {8, {}, layout::nc},       {2, {4}, layout::ncl},         {2, {2, 2}, layout::nchw},
      {2, {2, 2}, layout::nhwc}, {1, {2, 2, 2}, layout::ncdhw}, {1, {2, 2, 2}, layout::ndhwc},
      {2, {1, 4}, layout::nhwc}};
  return v;
}

// ---- Info -----------------------------------------------------------------------------------

TEST(BundledKernels, EachLoadsAndDescribesItself) {
  for (const bundled& kb : k_bundled) {
    SCOPED_TRACE(kb.name);
    std::unique_ptr<bn_kernel> k;
    ASSERT_NO_THROW(k = load(kb.name));
    const kernel_info& info = k->info();
    EXPECT_EQ(info.name, kb.name);
    EXPECT_EQ(info.version, "1.0");
    EXPECT_EQ(info.convention, "pytorch");
    EXPECT_TRUE(info.updates_running);
    EXPECT_TRUE(info.supports_cumulative);
    EXPECT_EQ(info.saves, BNK_SAVES_MEAN_INVSTD);
    for (const bn_mode m : k_modes) EXPECT_TRUE(info.supports(m)) << to_string(m);
    EXPECT_TRUE(info.supports(layout::nchw));
    for (const layout l :
         {layout::nc, layout::ncl, layout::nhwc, layout::ncdhw, layout::ndhwc, layout::strided}) {
      EXPECT_EQ(info.supports(l), kb.every_layout) << to_string(l);
    }
  }
}

TEST(BundledKernels, LoadingTwiceGivesIndependentHandles) {
  // dlopen reference-counts the library: the first handle must stay usable after the second is
  // released (the plugin exports nothing that would pin or confuse it).
  auto first = load("pairwise");
  { auto second = load("pairwise"); }
  const bn_case d = exact_case(2, {2, 2}, layout::nchw, true);
  expect_goldens(*first, bn_mode::forward_training, d, "pairwise after a second load");
}

// ---- Skips, refusals, failures --------------------------------------------------------------

TEST(BundledKernels, UnsupportedProblemsAreSkippedWithoutWriting) {
  // minimal (C) is NCHW only: every other layout is a skip.
  auto minimal = load("minimal");
  for (const shape_case& s : exact_shapes()) {
    if (s.l == layout::nchw) continue;
    const bn_case d = exact_case(s.n, s.spatial, s.l, true);
    for (const bn_mode m : k_modes) {
      const outputs o = run(*minimal, m, d);
      EXPECT_EQ(o.status, BNK_UNSUPPORTED) << describe_run("minimal", d, m);
      EXPECT_FALSE(o.message.empty());
      const auto& t =
          m == bn_mode::forward_training || m == bn_mode::forward_inference ? o.dst : o.diff_src;
      EXPECT_TRUE(
          std::all_of(t.begin(), t.end(), [](float v) { return bit_equal(v, k_unwritten); }));
      EXPECT_EQ(o.nbt, d.nbt);
    }
  }
  // The C++ kernels take any strides under which elements do not share an address; a broadcast
  // (zero) stride would make outputs collide, so it is a skip.
  bn_case d = exact_case(2, {2, 2}, layout::nchw, true);
  d.p.mem_layout = layout::strided;
  d.p.strides = {8, 4, 2, 0};  // W broadcast
  d.p.spatial = {2, 2};
  for (const bundled& kb : k_bundled) {
    if (!kb.every_layout) continue;
    auto k = load(kb.name);
    for (const bn_mode m : k_modes) {
      const outputs o = run(*k, m, d);
      EXPECT_EQ(o.status, BNK_UNSUPPORTED) << describe_run(kb.name, d, m);
      EXPECT_FALSE(o.message.empty());
      EXPECT_TRUE(same_bits(o.running_mean, d.running_mean));
      EXPECT_EQ(o.nbt, d.nbt);
    }
  }
}

TEST(BundledKernels, OneValuePerChannelInTrainingIsRefused) {
  // PyTorch: "Expected more than 1 value per channel when training". Nothing is written, the
  // batch is not counted. Inference with L = 1 is fine.
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    bn_case d;
    d.p.n = 1;
    d.p.c = 3;
    d.p.spatial = {1, 1};
    d.x = {1.0F, 2.0F, 3.0F};
    d.dy = {0.5F, -1.0F, 2.0F};
    d.gamma = {1.0F, 2.0F, 3.0F};
    d.beta = {0.0F, 1.0F, 2.0F};
    d.running_mean = {0.0F, 0.0F, 0.0F};
    d.running_var = {1.0F, 1.0F, 1.0F};
    d.nbt = 5;
    for (const bn_mode m : {bn_mode::forward_training, bn_mode::backward_training}) {
      ASSERT_FALSE(reference_of(d, m).refusal().empty());
      const outputs o = run(*k, m, d);
      EXPECT_EQ(o.status, BNK_REFUSED) << describe_run(kb.name, d, m) << ": " << o.message;
      EXPECT_NE(o.message.find("more than 1 value per channel"), std::string::npos) << o.message;
      EXPECT_TRUE(same_bits(o.running_mean, d.running_mean));
      EXPECT_TRUE(same_bits(o.running_var, d.running_var));
      EXPECT_EQ(o.nbt, 5);
      const auto& t = m == bn_mode::forward_training ? o.dst : o.diff_src;
      EXPECT_TRUE(
          std::all_of(t.begin(), t.end(), [](float v) { return bit_equal(v, k_unwritten); }));
    }
    EXPECT_EQ(run(*k, bn_mode::forward_inference, d).status, BNK_OK) << kb.name;
  }
}

TEST(BundledKernels, EmptyBatchCountsTheStepAndKeepsTheRunningStatistics) {
  // N = 0: PyTorch leaves the running statistics as they are but still counts the batch. The
  // batch statistics are 0/0 (the reference calls them undefined: the kernels save NaN), and the
  // backward sums are empty: dγ = dβ = 0.
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    bn_case d;
    d.p.n = 0;
    d.p.c = 3;
    d.p.spatial = {2, 2};
    d.gamma = {1.0F, 2.0F, 3.0F};
    d.beta = {0.0F, 1.0F, 2.0F};
    d.running_mean = {0.25F, -1.0F, 8.0F};
    d.running_var = {1.0F, 0.5F, 3.0F};
    d.nbt = 2;
    for (const std::optional<double> momentum :
         {std::optional<double>(0.1), std::optional<double>()}) {
      d.p.momentum = momentum;
      SCOPED_TRACE(describe_run(kb.name, d, bn_mode::forward_training));
      const outputs o = expect_goldens(*k, bn_mode::forward_training, d, kb.name);
      EXPECT_EQ(o.nbt, 3);
      EXPECT_TRUE(same_bits(o.running_mean, d.running_mean));
      EXPECT_TRUE(same_bits(o.running_var, d.running_var));
    }
    for (const bn_mode m :
         {bn_mode::forward_inference, bn_mode::backward_training, bn_mode::backward_inference}) {
      const outputs o = expect_goldens(*k, m, d, describe_run(kb.name, d, m));
      if (m != bn_mode::forward_inference) {
        EXPECT_TRUE(same_bits(o.diff_gamma, {0.0F, 0.0F, 0.0F}));
        EXPECT_TRUE(same_bits(o.diff_beta, {0.0F, 0.0F, 0.0F}));
      }
    }
  }
}

TEST(BundledKernels, MalformedCallsFailWithAMessage) {
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    const bn_case d = exact_case(2, {2, 2}, layout::nchw, true);
    const geometry g(d.p);
    std::vector<float> x = d.x;
    std::vector<float> y(x.size());
    std::vector<float> rm = d.running_mean;
    std::vector<float> rv = d.running_var;
    bnk_buffers b{};
    b.src = x.data();
    b.dst = y.data();
    b.gamma = d.gamma.data();
    b.beta = d.beta.data();
    b.running_mean = rm.data();
    b.running_var = rv.data();
    std::string message;

    // The bundled kernels are version-2 plugins: a malformed call reaches them through run_v2.
    bnk_problem_v2 a = to_abi_v2(d.p, g, true, false);
    a.struct_size = 8;  // a caller older than the kernel's ABI version
    EXPECT_EQ(k->run_v2(bn_mode::forward_inference, a, to_v2(b), message), BNK_FAILED) << kb.name;
    EXPECT_FALSE(message.empty());

    if (!kb.every_layout) continue;  // minimal (C) trusts the caller to pass what the ABI lists
    a = to_abi_v2(d.p, g, true, false);
    b.dst = nullptr;
    EXPECT_EQ(k->run_v2(bn_mode::forward_inference, a, to_v2(b), message), BNK_FAILED) << kb.name;
    EXPECT_NE(message.find("dst"), std::string::npos) << message;
  }
}

// ---- Exact data: bit for bit ----------------------------------------------------------------

TEST(BundledKernels, ExactDataGivesTheGoldensBitForBitInEveryMode) {
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    for (const shape_case& s : exact_shapes()) {
      if (!kb.every_layout && s.l != layout::nchw) continue;
      for (const bool affine : {true, false}) {
        const bn_case d = exact_case(s.n, s.spatial, s.l, affine);
        const std::string label = describe_run(kb.name, d, bn_mode::forward_training) +
                                  (affine ? " affine" : " not affine");
        const outputs f = expect_goldens(*k, bn_mode::forward_training, d, label);
        EXPECT_EQ(f.save_stat, std::vector<float>(4, 0.5F)) << label;  // σ² + ε = 4
        expect_goldens(*k, bn_mode::forward_inference, for_inference(d), label);
        const std::pair<std::vector<float>, std::vector<float>> saved{f.save_mean, f.save_stat};
        expect_goldens(*k, bn_mode::backward_training, d, label + " saved", &saved);
        expect_goldens(*k, bn_mode::backward_training, d, label + " recomputed");
        expect_goldens(*k, bn_mode::backward_inference, for_inference(d), label);
      }
    }
  }
}

TEST(BundledKernels, RunningStatisticsFollowPyTorchOverThreeSteps) {
  // Three training steps from PyTorch's initial state (mean 0, var 1, count 0), each channel c
  // with batch t of mean μ[c][t] and deviations scaled by s[c][t] (unbiased variance 4.5·s²).
  // Momentum 1/4 is exact throughout (see exact_case). Cumulative (momentum = None) weighs step t
  // by 1/t: f = 1, 1/2, then float(1/3). The batches are chosen so that the averages are
  // dyadic and the float32 update (1 − f)·old + f·new with f = float(1/3) still rounds to them,
  // which the reference checks (residual 0 and equality). After three steps the cumulative
  // running values are the plain averages: means (1+3+5)/3 = 3, (10+14+6)/3 = 10,
  // (−2−8−5)/3 = −5; variances (4.5+4.5+18)/3 = 9, (18+4.5+4.5)/3 = 9, (1.125+4.5+18)/3 = 7.875.
  const float mu[3][3] = {{1, 3, 5}, {10, 14, 6}, {-2, -8, -5}};
  const float s[3][3] = {{1, 1, 2}, {2, 1, 1}, {0.5F, 1, 2}};
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    for (const std::optional<double> momentum :
         {std::optional<double>(0.25), std::optional<double>()}) {
      bn_case d;
      d.p.n = 2;
      d.p.c = 3;
      d.p.spatial = {2, 2};
      d.p.eps = 1e-5;
      d.p.momentum = momentum;
      d.running_mean = {0.0F, 0.0F, 0.0F};
      d.running_var = {1.0F, 1.0F, 1.0F};
      const geometry g(d.p);
      d.x.resize(static_cast<std::size_t>(g.elements()));
      for (int t = 0; t < 3; ++t) {
        for (std::int64_t c = 0; c < 3; ++c) {
          std::int64_t j = 0;
          g.for_each_in_channel(c, [&](std::int64_t, std::int64_t li) {
            d.x[static_cast<std::size_t>(li)] =
                mu[c][t] + s[c][t] * static_cast<float>(k_dev[c][j++]) / 4.0F;
          });
        }
        const std::string label =
            describe_run(kb.name, d, bn_mode::forward_training) + " step " + std::to_string(t + 1);
        // ε = 1e-5 makes dst and invstd inexact here; the statistics are exact.
        const outputs o = expect_goldens(*k, bn_mode::forward_training, d, label, nullptr,
                                         {"mean", "running_mean", "running_var"});
        EXPECT_EQ(o.nbt, t + 1) << label;
        EXPECT_EQ(o.save_mean, std::vector<float>({mu[0][t], mu[1][t], mu[2][t]})) << label;
        d.running_mean = o.running_mean;
        d.running_var = o.running_var;
        d.nbt = o.nbt;
      }
      if (!momentum) {
        EXPECT_EQ(d.running_mean, std::vector<float>({3.0F, 10.0F, -5.0F})) << kb.name;
        EXPECT_EQ(d.running_var, std::vector<float>({9.0F, 9.0F, 7.875F})) << kb.name;
      }
    }
  }
}

// ---- Random data: channel independence and layout independence ------------------------------

bn_case random_case(std::mt19937& rng, std::int64_t n, std::int64_t c,
                    std::vector<std::int64_t> spatial, layout l) {
  bn_case d;
  d.p.n = n;
  d.p.c = c;
  d.p.spatial = std::move(spatial);
  d.p.mem_layout = l;
  d.p.eps = 1e-5;
  d.p.momentum = 0.1;
  const geometry g(d.p);
  std::normal_distribution<float> x_dist(3.0F, 2.0F);
  std::normal_distribution<float> unit(0.0F, 1.0F);
  std::uniform_real_distribution<float> positive(0.5F, 2.0F);
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    d.x.push_back(x_dist(rng));
    d.dy.push_back(unit(rng));
  }
  for (std::int64_t i = 0; i < c; ++i) {
    d.gamma.push_back(positive(rng));
    d.beta.push_back(unit(rng));
    d.running_mean.push_back(unit(rng));
    d.running_var.push_back(positive(rng));
  }
  return d;
}

// Forward training, forward inference, backward training (fed this kernel's own saved
// statistics) and backward inference.
std::map<bn_mode, outputs> run_all_modes(bn_kernel& k, const bn_case& d) {
  std::map<bn_mode, outputs> r;
  r[bn_mode::forward_training] = run(k, bn_mode::forward_training, d);
  r[bn_mode::forward_inference] = run(k, bn_mode::forward_inference, d);
  const std::pair<std::vector<float>, std::vector<float>> saved{
      r[bn_mode::forward_training].save_mean, r[bn_mode::forward_training].save_stat};
  r[bn_mode::backward_training] = run(k, bn_mode::backward_training, d, &saved);
  r[bn_mode::backward_inference] = run(k, bn_mode::backward_inference, d);
  return r;
}

std::vector<std::pair<std::string, const std::vector<float>*>> every_output(const outputs& o) {
  return {{"dst", &o.dst},
          {"diff_src", &o.diff_src},
          {"save_mean", &o.save_mean},
          {"save_stat", &o.save_stat},
          {"running_mean", &o.running_mean},
          {"running_var", &o.running_var},
          {"diff_gamma", &o.diff_gamma},
          {"diff_beta", &o.diff_beta}};
}

TEST(BundledKernels, NaNStaysInItsChannel) {
  // A NaN in channel 2's src poisons that channel's batch-coupled outputs in training (they must
  // be non-finite) and touches nothing else: every other channel is bit-identical to a clean
  // run. In inference it is element-wise: only its own dst element, and channel 2's dγ.
  std::mt19937 rng(20240611);
  const bn_case clean = random_case(rng, 3, 4, {3, 3}, layout::nchw);
  bn_case dirty = clean;
  const geometry g(clean.p);
  const std::int64_t poisoned = g.logical_index(1, 2, 4);
  dirty.x[static_cast<std::size_t>(poisoned)] = std::nanf("");
  const std::int64_t S = g.spatial_size();
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    auto a = run_all_modes(*k, clean);
    auto b = run_all_modes(*k, dirty);
    for (const bn_mode m : k_modes) {
      const std::string label = describe_run(kb.name, clean, m);
      ASSERT_EQ(b[m].status, BNK_OK) << label << ": " << b[m].message;
      const bool training = m == bn_mode::forward_training || m == bn_mode::backward_training;
      const auto outs_a = named_outputs(a[m], m, clean);
      const auto outs_b = named_outputs(b[m], m, dirty);
      for (std::size_t i = 0; i < outs_a.size(); ++i) {
        const std::vector<float>& va = *outs_a[i].second;
        const std::vector<float>& vb = *outs_b[i].second;
        ASSERT_EQ(va.size(), vb.size());
        const bool per_element = va.size() == static_cast<std::size_t>(g.elements());
        for (std::size_t j = 0; j < va.size(); ++j) {
          const std::int64_t c = per_element ? (static_cast<std::int64_t>(j) / S) % g.c()
                                             : static_cast<std::int64_t>(j);
          const bool coupled = training && outs_a[i].first != "diff_beta";
          const bool own_element =
              m == bn_mode::forward_inference && static_cast<std::int64_t>(j) == poisoned;
          const bool hit = c == 2 && (coupled || own_element || outs_a[i].first == "diff_gamma");
          if (!hit) {
            EXPECT_TRUE(bit_equal(va[j], vb[j]))
                << label << " " << outs_a[i].first << "[" << j << "]: " << hex_float(va[j])
                << " became " << hex_float(vb[j]);
          } else {
            EXPECT_FALSE(std::isfinite(vb[j]))
                << label << " " << outs_a[i].first << "[" << j << "] = " << hex_float(vb[j]);
          }
        }
      }
    }
  }
}

TEST(BundledKernels, EveryLayoutOfTheSameTensorGivesTheSameBits) {
  // The kernels read each channel in logical order whatever the strides, so the same logical
  // tensor gives bit-identical outputs channels-first, channels-last and through a padded view
  // with a reversed axis (negative stride).
  std::mt19937 rng(7);
  const bn_case base = random_case(rng, 3, 4, {3, 5}, layout::nchw);
  std::vector<bn_case> views;
  for (const layout l : {layout::nhwc, layout::strided}) {
    bn_case v = base;
    v.p.mem_layout = l;
    if (l == layout::strided) v.p.strides = {88, 22, 7, -1};  // rows padded to 7, W reversed
    views.push_back(v);
  }
  bn_case base3 = random_case(rng, 2, 3, {2, 3, 2}, layout::ncdhw);
  bn_case last3 = base3;
  last3.p.mem_layout = layout::ndhwc;
  for (const bundled& kb : k_bundled) {
    if (!kb.every_layout) continue;
    auto k = load(kb.name);
    for (const auto& [first, others] :
         {std::pair{base, views}, std::pair{base3, std::vector<bn_case>{last3}}}) {
      auto ref = run_all_modes(*k, first);
      for (const bn_case& v : others) {
        auto got = run_all_modes(*k, v);
        for (const bn_mode m : k_modes) {
          const std::string label = describe_run(kb.name, v, m);
          ASSERT_EQ(got[m].status, BNK_OK) << label << ": " << got[m].message;
          EXPECT_TRUE(got[m].gaps_unchanged) << label;
          EXPECT_TRUE(got[m].inputs_unchanged) << label;
          const auto want = every_output(ref[m]);
          const auto have = every_output(got[m]);
          for (std::size_t i = 0; i < want.size(); ++i) {
            EXPECT_TRUE(same_bits(*want[i].second, *have[i].second))
                << label << " " << want[i].first;
          }
        }
      }
    }
  }
}

// ---- Random data: errors for information ----------------------------------------------------

TEST(BundledKernels, ErrorsOnRandomDataAreReported) {
  // Max |error| in ulps of the exact value, per kernel and output, on x ~ N(3, 2). Printed, not
  // asserted: whether an error is acceptable is the error model's call.
  std::mt19937 rng(42);
  const bn_case d = random_case(rng, 8, 5, {9, 9}, layout::nchw);
  std::printf("max |error| in ulps, %s, x ~ N(3, 2), momentum 0.1\n", describe(d.p).c_str());
  std::printf("%-16s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "kernel", "ft.dst", "mean",
              "invstd", "run_mean", "run_var", "fi.dst", "bt.dx", "bt.dg", "bt.db", "bi.dx",
              "bi.dg", "bi.db");
  for (const bundled& kb : k_bundled) {
    auto k = load(kb.name);
    auto out = run_all_modes(*k, d);
    std::printf("%-16s", kb.name);
    for (const bn_mode m : k_modes) {
      ASSERT_EQ(out[m].status, BNK_OK) << kb.name << ": " << out[m].message;
      const reference ref = reference_of(d, m);
      for (const auto& [name, values] : named_outputs(out[m], m, d)) {
        const std::vector<golden> want = ref.goldens(name);
        double worst = 0.0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          worst = std::max(worst, std::fabs(error_ulps((*values)[i], want[i])));
        }
        std::printf(" %8.2f", worst);
      }
    }
    std::printf("\n");
  }
}

}  // namespace
}  // namespace bnoracle
