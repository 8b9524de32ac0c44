// Throughput of the exact reference next to a plain double-precision loop on the same data.
//
// Each iteration computes forward training (dst and the per-channel statistics) and backward
// training (diff_src, diff_gamma, diff_beta), i.e. everything a conformance case needs. Counters
// report elements (L·C) per second, and how many per-element goldens the certified fast path
// decided and how many it left to the exact path. Sizes: L·C = 2^18 (C = 64, N = 16, 16×16) and
// 2^22 (C = 64, N = 64, 32×32); bm_scaling runs 2^10 to 2^26 (bm_scaling/28 is 2^28: run it with
// --benchmark_filter=scaling/28); bm_judge_resnet50 judges ResNet-50's first batch norm at
// batch 256 (256×64×112×112, forward and backward training: reference, error model and the
// judgement of a float32 result); bm_judge_layer_norm judges one (64, 256) layer-norm backward
// output as bnoracle.judge does. Run: build/default/tools/bnoracle_bench (docs/performance.md).
#include "bnoracle/error_model.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/reference.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace bnoracle;

struct data {
  bn_problem p;
  std::vector<float> x, dy, gamma, beta;
};

data make(std::int64_t n, std::int64_t hw) {
  data d;
  d.p.n = n;
  d.p.c = 64;
  d.p.spatial = {hw, hw};
  d.p.mem_layout = layout::nchw;
  d.p.eps = 1e-5;
  const auto count = static_cast<std::size_t>(n * 64 * hw * hw);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.5F, 2.0F);
  d.x.resize(count);
  d.dy.resize(count);
  for (auto& v : d.x) v = dist(rng);
  for (auto& v : d.dy) v = dist(rng);
  d.gamma.assign(64, 1.25F);
  d.beta.assign(64, -0.5F);
  return d;
}

// The plain loop a "double-precision reference" would use: two-pass mean and variance, then the
// textbook backward, all in double, results stored as float. y and dx have the data's size,
// dgamma and dbeta one entry per channel.
void double_loop(const data& d, std::vector<float>& y, std::vector<float>& dx,
                 std::vector<float>& dgamma, std::vector<float>& dbeta) {
  const std::int64_t C = d.p.c;
  const std::int64_t S = d.p.spatial[0] * d.p.spatial[1];
  const std::int64_t N = d.p.n;
  const double L = static_cast<double>(N * S);
  for (std::int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t i = 0; i < S; ++i)
        s += static_cast<double>(d.x[static_cast<std::size_t>((n * C + c) * S + i)]);
    }
    const double mean = s / L;
    double v = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t i = 0; i < S; ++i) {
        const double t =
            static_cast<double>(d.x[static_cast<std::size_t>((n * C + c) * S + i)]) - mean;
        v += t * t;
      }
    }
    const double r = 1.0 / std::sqrt(v / L + d.p.eps);
    const double g = static_cast<double>(d.gamma[static_cast<std::size_t>(c)]);
    const double b = static_cast<double>(d.beta[static_cast<std::size_t>(c)]);
    double sdy = 0;
    double sdyxh = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t i = 0; i < S; ++i) {
        const auto k = static_cast<std::size_t>((n * C + c) * S + i);
        const double xh = (static_cast<double>(d.x[k]) - mean) * r;
        y[k] = static_cast<float>(g * xh + b);
        sdy += static_cast<double>(d.dy[k]);
        sdyxh += static_cast<double>(d.dy[k]) * xh;
      }
    }
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t i = 0; i < S; ++i) {
        const auto k = static_cast<std::size_t>((n * C + c) * S + i);
        const double xh = (static_cast<double>(d.x[k]) - mean) * r;
        dx[k] =
            static_cast<float>(g * r * (static_cast<double>(d.dy[k]) - sdy / L - xh * sdyxh / L));
      }
    }
    dgamma[static_cast<std::size_t>(c)] = static_cast<float>(sdyxh);
    dbeta[static_cast<std::size_t>(c)] = static_cast<float>(sdy);
  }
}

void run_reference(benchmark::State& state, const data& d) {
  bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  std::int64_t certified = 0;
  std::int64_t exact = 0;
  for (auto _ : state) {
    const reference fwd(d.p, bn_mode::forward_training, in);
    for (const auto name : fwd.output_names()) benchmark::DoNotOptimize(fwd.goldens(name));
    const reference bwd(d.p, bn_mode::backward_training, in);
    for (const auto name : bwd.output_names()) benchmark::DoNotOptimize(bwd.goldens(name));
    for (const reference* r : {&fwd, &bwd}) {
      certified += r->evaluations().certified;
      exact += r->evaluations().exact;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(d.x.size()));
  // Per-element goldens decided by the certified fast path and left to the exact path.
  state.counters["certified"] = static_cast<double>(certified);
  state.counters["fallbacks"] = static_cast<double>(exact);
}

void bm_reference(benchmark::State& state) {
  run_reference(state, make(state.range(0), state.range(1)));
}

// 2^k elements: C = 64 channels, N = 2^(k − 6 − 2·⌊(k − 6)/4⌋)... in short N·H·W = 2^(k − 6) with
// H = W = 2^⌊(k − 6)/4⌋.
void bm_scaling(benchmark::State& state) {
  const std::int64_t k = state.range(0);
  const std::int64_t side = std::int64_t{1} << ((k - 6) / 4);
  const std::int64_t n = (std::int64_t{1} << (k - 6)) / (side * side);
  run_reference(state, make(n, side));
}

// Wall seconds of each phase of judging one output, summed over calls (the reference's
// statistics pass, the error model's pass, and judge_output: the goldens, the bounds and the
// comparison), and the per-element goldens each path of the reference decided.
struct judge_phases {
  double reference = 0, model = 0, judge = 0;
  std::int64_t certified = 0, fallbacks = 0;
};

// Judges output `id` of problem p in `mode` as `bnoracle check` judges a case, at the standard
// level, against `got`; true when it passes.
bool judge_timed(const bn_problem& p, bn_mode mode, const bn_inputs& in, output_id id,
                 const std::vector<float>& got, judge_phases& t) {
  using clock = std::chrono::steady_clock;
  const auto since = [](clock::time_point start) {
    return std::chrono::duration<double>(clock::now() - start).count();
  };
  auto start = clock::now();
  const reference ref(p, mode, in);
  t.reference += since(start);
  start = clock::now();
  const error_model model(ref, in, data_tier::general);
  t.model += since(start);
  start = clock::now();
  const output_result r =
      judge_output(std::string(to_string(id)), id, id, ref, model, accuracy_level::standard, 1.0,
                   [&got](std::int64_t i) { return got[static_cast<std::size_t>(i)]; });
  t.judge += since(start);
  t.certified += ref.evaluations().certified;
  t.fallbacks += ref.evaluations().exact;
  return r.passed[static_cast<std::size_t>(accuracy_level::standard)];
}

// Forward and backward training of one problem judged as `bnoracle check` judges a case: dst
// and diff_src (here against a plain double loop's float32 results, which pass).
void bm_judge_resnet50(benchmark::State& state) {
  const data d = make(state.range(0), state.range(1));
  const std::size_t count = d.x.size();
  // The kernel's results: the plain double loop's, rounded to float32.
  std::vector<float> y(count), dx(count), dgamma(64), dbeta(64);
  double_loop(d, y, dx, dgamma, dbeta);
  bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  bool passed = true;
  judge_phases t;
  for (auto _ : state) {
    passed = judge_timed(d.p, bn_mode::forward_training, in, output_id::dst, y, t) && passed;
    passed = judge_timed(d.p, bn_mode::backward_training, in, output_id::diff_src, dx, t) && passed;
  }
  state.counters["passed"] = passed ? 1 : 0;
  state.counters["s_reference"] = t.reference;
  state.counters["s_model"] = t.model;
  state.counters["s_judge"] = t.judge;
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(count));
}

// The judgement bnoracle.judge makes of one (rows, hidden) layer-norm backward-training output
// (diff_src), from the inputs: the reference, the error model and judge_output, per call (the
// peer is tools/bench-python-judge's torch.testing.assert_close). The kernel's values are the
// goldens (they pass); the cost does not depend on them.
void bm_judge_layer_norm(benchmark::State& state) {
  const std::int64_t rows = state.range(0);
  const std::int64_t hidden = state.range(1);
  bn_problem p;
  p.op = layer_norm_op(1);
  p.n = rows;
  p.c = hidden;
  p.mem_layout = dense_layout(0);
  p.eps = 1e-5;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.5F, 2.0F);
  std::vector<float> x(static_cast<std::size_t>(rows * hidden));
  std::vector<float> dy(x.size()), gamma(static_cast<std::size_t>(hidden)), beta(gamma.size());
  for (auto& v : x) v = dist(rng);
  for (auto& v : dy) v = dist(rng);
  for (auto& v : gamma) v = 1 + dist(rng) / 16;
  for (auto& v : beta) v = dist(rng) / 16;
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = dy.data();
  in.gamma = gamma;
  in.beta = beta;
  std::vector<float> got(x.size());
  {
    const reference ref(p, bn_mode::backward_training, in);
    const std::vector<golden> g = ref.goldens(output_id::diff_src);
    for (std::size_t i = 0; i < g.size(); ++i) got[i] = g[i].value;
  }
  bool passed = true;
  judge_phases t;
  for (auto _ : state) {
    passed = judge_timed(p, bn_mode::backward_training, in, output_id::diff_src, got, t) && passed;
  }
  const auto per_call = [&](double seconds) {
    return benchmark::Counter(seconds / static_cast<double>(state.iterations()) * 1e3);
  };
  state.counters["certified"] = static_cast<double>(t.certified);
  state.counters["fallbacks"] = static_cast<double>(t.fallbacks);
  state.counters["passed"] = passed ? 1 : 0;
  state.counters["ms_reference"] = per_call(t.reference);
  state.counters["ms_model"] = per_call(t.model);
  state.counters["ms_judge"] = per_call(t.judge);
  state.SetItemsProcessed(state.iterations() * rows * hidden);
}

void bm_double_loop(benchmark::State& state) {
  const data d = make(state.range(0), state.range(1));
  std::vector<float> y(d.x.size()), dx(d.x.size());
  std::vector<float> dgamma(64), dbeta(64);
  for (auto _ : state) {
    double_loop(d, y, dx, dgamma, dbeta);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(d.x.size()));
}

// {N, H=W}: 16·64·16·16 = 2^18 and 64·64·32·32 = 2^22 elements.
// The reference uses every core, so wall-clock time is what counts.
BENCHMARK(bm_reference)
    ->Args({16, 16})
    ->Args({64, 32})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2)
    ->UseRealTime();
BENCHMARK(bm_double_loop)->Args({16, 16})->Args({64, 32})->Unit(benchmark::kMillisecond);
BENCHMARK(bm_scaling)
    ->DenseRange(10, 26, 4)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5)
    ->UseRealTime();
BENCHMARK(bm_scaling)->Arg(28)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(bm_judge_layer_norm)
    ->Args({64, 256})
    ->Args({1024, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(bm_judge_resnet50)
    ->Args({16, 56})
    ->Args({64, 112})
    ->Args({256, 112})
    ->Unit(benchmark::kSecond)
    ->Iterations(1)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
