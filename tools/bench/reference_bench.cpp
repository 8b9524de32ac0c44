// Throughput of the exact reference next to a plain double-precision loop on the same data.
//
// Each iteration computes forward training (dst and the per-channel statistics) and backward
// training (diff_src, diff_gamma, diff_beta), i.e. everything a conformance case needs. Counters
// report elements (L·C) per second. Sizes: L·C = 2^18 (C = 64, N = 16, 16×16) and
// 2^22 (C = 64, N = 64, 32×32). Run: build/default/tools/bnoracle_bench
#include "bnoracle/reference.hpp"

#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
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

void bm_reference(benchmark::State& state) {
  const data d = make(state.range(0), state.range(1));
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

// The plain loop a "double-precision reference" would use: two-pass mean and variance, then the
// textbook backward, all in double, results stored as float.
void bm_double_loop(benchmark::State& state) {
  const data d = make(state.range(0), state.range(1));
  const std::int64_t C = d.p.c;
  const std::int64_t S = d.p.spatial[0] * d.p.spatial[1];
  const std::int64_t N = d.p.n;
  const double L = static_cast<double>(N * S);
  std::vector<float> y(d.x.size()), dx(d.x.size());
  std::vector<float> dgamma(64), dbeta(64);
  for (auto _ : state) {
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

}  // namespace

BENCHMARK_MAIN();
