// The reference checked by routes that share no code with oracle/src/.
//
// Each expected value below is computed a second way: exact rationals by the two-pass formula,
// the textbook formulas in Boost's binary floats at two precisions, finite differences of the
// loss, the unfolded layer, whole-batch moments, and a rounding procedure of our own. The
// reference is only read through its public outputs; of the library, only its types (`rational`,
// `big_int`, `hp_float`) are used here, never its arithmetic on them.
#include "bnoracle/exact.hpp"
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <boost/multiprecision/cpp_bin_float.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace {

namespace mp = boost::multiprecision;
using bnoracle::big_int;
using bnoracle::bn_mode;
using bnoracle::golden;
using bnoracle::golden_class;
using bnoracle::hp_float;
using bnoracle::rational;  // boost::multiprecision::cpp_rational with expression templates off

template <unsigned Bits>
using binary_float = mp::number<mp::cpp_bin_float<Bits, mp::digit_base_2>, mp::et_off>;
using bf200 = binary_float<200>;
using bf300 = binary_float<300>;
using bf400 = binary_float<400>;
using bf600 = binary_float<600>;

// ---- Exact conversions and rounding of our own ------------------------------------------------

big_int two_to(unsigned k) {
  return big_int(1) << k;
}

// The exact rational of a finite double, from frexp: d = m·2^e with m·2^53 an integer.
rational exact_rational(double d) {
  int e = 0;
  const double m = std::frexp(d, &e);
  const auto mi = static_cast<std::int64_t>(std::ldexp(m, 53));
  e -= 53;
  const big_int num(mi);
  if (e >= 0) return rational(num << static_cast<unsigned>(e));
  return rational(num, two_to(static_cast<unsigned>(-e)));
}
rational exact_rational(float f) {
  return exact_rational(static_cast<double>(f));
}

template <class F>
F to_bf(const rational& q) {
  return F(mp::numerator(q)) / F(mp::denominator(q));
}

// floor(log2 |q|) for q != 0, exactly: the bit lengths give a candidate, one comparison fixes it.
std::int64_t floor_log2(const rational& q) {
  const big_int num = mp::abs(mp::numerator(q));
  const big_int& den = mp::denominator(q);
  const auto e = static_cast<std::int64_t>(mp::msb(num)) - static_cast<std::int64_t>(mp::msb(den));
  // |q| lies in (2^(e-1), 2^(e+1)); it is at least 2^e exactly when num >= den·2^e.
  const bool at_least =
      e >= 0 ? num >= (den << static_cast<unsigned>(e)) : (num << static_cast<unsigned>(-e)) >= den;
  return at_least ? e : e - 1;
}

rational pow2_rational(std::int64_t k) {
  return k >= 0 ? rational(two_to(static_cast<unsigned>(k)))
                : rational(big_int(1), two_to(static_cast<unsigned>(-k)));
}

// Round-to-nearest-even of a binary float to float32, by our own code: scale |v| so that the
// float32 ulp of its binade is 1, split off the integer part (exact in a binary float), and
// decide from the fraction. Overflow gives ±Inf. An exact zero gives +0.
template <class F>
float round_bf(const F& v) {
  if (v == 0) return 0.0F;
  const bool negative = v < 0;
  const F a = negative ? F(-v) : v;
  int e = 0;
  (void)mp::frexp(a, &e);  // a = m·2^e with m in [1/2, 1): floor(log2 a) = e − 1
  const int lsb = std::max(e - 1 - 23, -149);
  const F scaled = mp::ldexp(a, -lsb);
  const F whole = mp::floor(scaled);
  const F frac = scaled - whole;
  auto q = whole.template convert_to<std::uint64_t>();  // <= 2^24 - 1
  if (frac > F(0.5) || (frac == F(0.5) && (q & 1U) != 0U)) ++q;
  float magnitude = std::numeric_limits<float>::infinity();
  if (std::ldexp(static_cast<double>(q), lsb) < std::ldexp(1.0, 128)) {
    magnitude = std::ldexp(static_cast<float>(q), lsb);  // q <= 2^24: both steps are exact
  }
  return negative ? -magnitude : magnitude;
}

// Whether `f` is the round-to-nearest-even of the exact `q`, decided in exact rationals from the
// midpoints to f's neighbours (2^128 stands in for the neighbour above FLT_MAX, as in IEEE 754).
// An exact zero must give +0; a non-zero value that rounds to zero keeps its sign.
bool rounds_to(const rational& q, float f) {
  const rational top = pow2_rational(128);
  if (std::isnan(f)) return false;
  if (q.is_zero()) return f == 0.0F && !std::signbit(f);
  if ((q < 0) != std::signbit(f)) return false;
  const rational threshold = top - pow2_rational(103);  // midpoint of FLT_MAX and 2^128
  if (std::isinf(f)) return mp::abs(q) >= threshold;
  const float below = std::nextafter(f, -std::numeric_limits<float>::infinity());
  const float above = std::nextafter(f, std::numeric_limits<float>::infinity());
  const rational fr = exact_rational(f);
  const rational lo = std::isinf(below) ? rational(-top) : exact_rational(below);
  const rational hi = std::isinf(above) ? top : exact_rational(above);
  const rational lo_mid = (lo + fr) / 2;
  const rational hi_mid = (fr + hi) / 2;
  const bool even = (std::bit_cast<std::uint32_t>(f) & 1U) == 0U;
  if (lo_mid < q && q < hi_mid) return true;
  return even && (q == lo_mid || q == hi_mid);
}

// The float32 rounding of an exact rational by our own route: 400 bits, then `round_bf`. The
// result is then certified by the exact midpoint test, so a double rounding cannot go unnoticed.
float independent_round(const rational& q) {
  const float f = round_bf(to_bf<bf400>(q));
  EXPECT_TRUE(rounds_to(q, f)) << "the test's own rounding route failed for " << q;
  return f;
}

std::string hexf(float v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
  return buf;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

std::string seed_text(std::uint32_t seed) {
  return "std::mt19937 seed " + std::to_string(seed);
}

// The residual (v − f)/ulp(v) in float32 ulps of v's binade, from a high-precision value; an
// overflowed f counts as ±2^128, as in the golden's definition.
template <class F>
double residual_of(const F& v, float f, int* ulp_exp) {
  int e = 0;
  (void)mp::frexp(mp::abs(v), &e);
  *ulp_exp = std::max(e - 1 - 23, -149);
  F fv(f);
  if (std::isinf(f)) fv = f < 0 ? F(-mp::ldexp(F(1), 128)) : mp::ldexp(F(1), 128);
  const F r = mp::ldexp(v - fv, -*ulp_exp);
  return r.template convert_to<double>();
}

// A golden against an element computed independently at two precisions. `v300` and `v600` must
// round to the same float (otherwise 300 bits did not decide the rounding and the comparison
// would be unfounded), the golden must hold that float with the right class (overflow when it
// rounds to ±Inf), and its residual must agree with ours to the 2^-40 ulp the header promises
// (our 600-bit value is far more accurate than that). An exact zero must be +0 with residual 0.
testing::AssertionResult matches_golden(const golden& g, const bf300& v300, const bf600& v600) {
  const float f300 = round_bf(v300);
  const float f600 = round_bf(v600);
  if (!same_bits(f300, f600)) {
    return testing::AssertionFailure()
           << "300 and 600 bits round differently: " << hexf(f300) << " vs " << hexf(f600);
  }
  const golden_class cls = std::isinf(f600) ? golden_class::overflow : golden_class::finite;
  if (g.cls != cls || !same_bits(g.value, f600)) {
    return testing::AssertionFailure()
           << "golden " << hexf(g.value) << " (class " << static_cast<int>(g.cls)
           << "), independent " << hexf(f600) << " (class " << static_cast<int>(cls) << ") from "
           << v600.str(40);
  }
  if (v600 == 0) {
    if (g.residual == 0.0) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "exact zero with residual " << g.residual;
  }
  int ulp_exp = 0;
  const double res = residual_of(v600, f600, &ulp_exp);
  if (g.ulp_exp != ulp_exp || std::abs(g.residual - res) > std::ldexp(1.0, -40)) {
    return testing::AssertionFailure() << "residual " << g.residual << " (ulp 2^" << g.ulp_exp
                                       << "), independent " << res << " (ulp 2^" << ulp_exp << ")";
  }
  return testing::AssertionSuccess();
}

// |a − b| <= 2^-k · scale; a failure reports both values and their difference.
testing::AssertionResult close_to(const bf600& got, const bf600& want, const bf600& scale, int k) {
  const bf600 diff = mp::abs(got - want);
  if (diff <= mp::ldexp(scale, -k)) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "got " << got.str(45) << ", want " << want.str(45) << ", |diff| = " << diff.str(6)
         << " exceeds 2^-" << k << " x " << scale.str(6);
}

// |fd − exact| <= 2^-k·scale + 2^-250·|exact|: the second term is hp()'s own accuracy (its
// relative error is below 2^-250 by the header's contract).
testing::AssertionResult close_to_hp(const bf600& fd, const bf600& exact, const bf600& scale,
                                     int k) {
  return close_to(fd, exact, mp::ldexp(scale, 250 - k) + mp::abs(exact), 250);
}

// ---- Random data ------------------------------------------------------------------------------

float uniform(std::mt19937& rng, float lo, float hi) {
  return std::uniform_real_distribution<float>(lo, hi)(rng);
}

int uniform_int(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// A value of magnitude in [lo, hi] with a random sign.
float signed_away_from_zero(std::mt19937& rng, float lo, float hi) {
  const float m = uniform(rng, lo, hi);
  return uniform_int(rng, 0, 1) == 0 ? m : -m;
}

// Channel data of a few kinds that stress different parts of the exact statistics.
enum class data_kind { centered, large_offset, wide_exponents, negative_offset, tiny, extreme };
constexpr data_kind k_kinds[] = {data_kind::centered,       data_kind::large_offset,
                                 data_kind::wide_exponents, data_kind::negative_offset,
                                 data_kind::tiny,           data_kind::extreme};

float draw(data_kind kind, std::mt19937& rng) {
  switch (kind) {
    case data_kind::centered:
      return uniform(rng, -1.0F, 1.0F);
    case data_kind::large_offset:
      return 1e4F + uniform(rng, -1e-3F, 1e-3F);
    case data_kind::wide_exponents:
      return std::ldexp(signed_away_from_zero(rng, 1.0F, 2.0F), uniform_int(rng, -40, 40));
    case data_kind::negative_offset:
      return -3e5F + static_cast<float>(uniform_int(rng, -8, 8));
    case data_kind::tiny:  // down into the subnormal range
      return std::ldexp(signed_away_from_zero(rng, 1.0F, 2.0F), uniform_int(rng, -149, -120));
    case data_kind::extreme:  // the whole float32 range in one channel: x² spans 2^-298..2^256
      return std::ldexp(signed_away_from_zero(rng, 1.0F, 2.0F), uniform_int(rng, -149, 127));
  }
  return 0.0F;
}

// ---- Shapes and the textbook formulas ---------------------------------------------------------

// A problem in logical order (n, c, spatial...) row-major, plus every input any mode reads.
struct bn_data {
  std::int64_t n = 1;
  std::int64_t c = 1;
  std::vector<std::int64_t> spatial;
  double eps = 1e-5;
  std::vector<float> x, dy, gamma, beta, run_mean, run_var;

  [[nodiscard]] std::size_t per_spatial() const {
    std::size_t s = 1;
    for (const auto e : spatial) s *= static_cast<std::size_t>(e);
    return s;
  }
  [[nodiscard]] std::size_t per_channel() const {
    return static_cast<std::size_t>(n) * per_spatial();
  }
  // Logical indices of channel ch's elements, n-major then spatial.
  [[nodiscard]] std::vector<std::size_t> channel(std::size_t ch) const {
    const std::size_t S = per_spatial();
    const auto C = static_cast<std::size_t>(c);
    std::vector<std::size_t> idx;
    for (std::size_t in = 0; in < static_cast<std::size_t>(n); ++in) {
      for (std::size_t s = 0; s < S; ++s) idx.push_back((in * C + ch) * S + s);
    }
    return idx;
  }
};

// Exact two-pass statistics: μ = Σx/L, σ² = Σ(x − μ)²/L.
struct two_pass {
  rational mean;
  rational var;
};

two_pass two_pass_moments(const std::vector<float>& values) {
  two_pass m;
  const auto L = static_cast<std::int64_t>(values.size());
  rational sum(0);
  for (const float v : values) sum += exact_rational(v);
  m.mean = sum / L;
  rational ss(0);
  for (const float v : values) {
    const rational d = exact_rational(v) - m.mean;
    ss += d * d;
  }
  m.var = ss / L;
  return m;
}

std::vector<float> gather(const std::vector<float>& v, const std::vector<std::size_t>& idx) {
  std::vector<float> out;
  out.reserve(idx.size());
  for (const auto i : idx) out.push_back(v[i]);
  return out;
}

// Every output of every mode by the textbook formulas at precision F, in logical order.
template <class F>
struct textbook {
  std::vector<F> dst_train, invstd, diff_src_train, diff_gamma_train, diff_beta;
  std::vector<F> dst_infer, diff_src_infer, diff_gamma_infer;

  explicit textbook(const bn_data& d) {
    const auto C = static_cast<std::size_t>(d.c);
    const std::size_t total = d.x.size();
    dst_train.resize(total);
    diff_src_train.resize(total);
    dst_infer.resize(total);
    diff_src_infer.resize(total);
    const F eps(d.eps);  // a double converts exactly to a binary float of 300+ bits
    for (std::size_t ch = 0; ch < C; ++ch) {
      const auto idx = d.channel(ch);
      const F L(static_cast<double>(idx.size()));
      const two_pass m = two_pass_moments(gather(d.x, idx));
      const F mu = to_bf<F>(m.mean);
      const F r = F(1) / mp::sqrt(to_bf<F>(m.var + exact_rational(d.eps)));
      const F g(d.gamma[ch]);
      const F b(d.beta[ch]);
      invstd.push_back(r);
      // Training: x̂ = (x − μ)·r, y = γ·x̂ + β, dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)).
      F sum_dy(0);
      F sum_dy_xhat(0);
      for (const auto i : idx) {
        const F xhat = (F(d.x[i]) - mu) * r;
        dst_train[i] = g * xhat + b;
        sum_dy += F(d.dy[i]);
        sum_dy_xhat += F(d.dy[i]) * xhat;
      }
      const F mean_dy = sum_dy / L;
      const F mean_dy_xhat = sum_dy_xhat / L;
      for (const auto i : idx) {
        const F xhat = (F(d.x[i]) - mu) * r;
        diff_src_train[i] = g * r * (F(d.dy[i]) - mean_dy - xhat * mean_dy_xhat);
      }
      diff_gamma_train.push_back(sum_dy_xhat);
      diff_beta.push_back(sum_dy);
      // Inference: the running statistics are constants.
      const F rr = F(1) / mp::sqrt(F(d.run_var[ch]) + eps);
      const F rm(d.run_mean[ch]);
      F dg(0);
      for (const auto i : idx) {
        const F xhat = (F(d.x[i]) - rm) * rr;
        dst_infer[i] = g * xhat + b;
        diff_src_infer[i] = g * F(d.dy[i]) * rr;
        dg += F(d.dy[i]) * xhat;
      }
      diff_gamma_infer.push_back(dg);
    }
  }
};

// The memory image of the logical tensor in NHWC-style channels-last order, with the offsets
// computed here: element (n, c, s) lives at (n·S + s)·C + c.
std::vector<float> channels_last(const bn_data& d, const std::vector<float>& logical) {
  const std::size_t S = d.per_spatial();
  const auto C = static_cast<std::size_t>(d.c);
  std::vector<float> mem(logical.size());
  for (std::size_t in = 0; in < static_cast<std::size_t>(d.n); ++in) {
    for (std::size_t ch = 0; ch < C; ++ch) {
      for (std::size_t s = 0; s < S; ++s)
        mem[(in * S + s) * C + ch] = logical[(in * C + ch) * S + s];
    }
  }
  return mem;
}

// A reference over `d` stored in `mem_layout` (canonical or channels-last).
struct stored_problem {
  bnoracle::bn_problem problem;
  std::vector<float> src, diff_dst;

  stored_problem(const bn_data& d, bnoracle::layout mem_layout, const std::string& convention) {
    problem.n = d.n;
    problem.c = d.c;
    problem.spatial = d.spatial;
    problem.mem_layout = mem_layout;
    problem.eps = d.eps;
    problem.convention = convention;
    const bool last = mem_layout == bnoracle::layout::nhwc || mem_layout == bnoracle::layout::ndhwc;
    src = last ? channels_last(d, d.x) : d.x;
    diff_dst = last ? channels_last(d, d.dy) : d.dy;
  }

  [[nodiscard]] bnoracle::reference run(const bn_data& d, bn_mode mode) const {
    bnoracle::bn_inputs in;
    in.src = src.data();
    in.diff_dst = diff_dst.data();
    in.gamma = d.gamma;
    in.beta = d.beta;
    if (mode != bn_mode::forward_training && mode != bn_mode::backward_training) {
      in.running_mean = d.run_mean;
      in.running_var = d.run_var;
    }
    return bnoracle::reference(problem, mode, in);
  }
};

// ---- 1. Exact statistics against two-pass rationals -------------------------------------------

// The mean and biased variance are exact rationals; the reference computes them from one-pass
// sums (Σx, Σx²), this test by the two-pass formula in rationals, so agreement checks the algebra
// and the exact accumulation. Kinds include large offsets (where the one-pass formula cancels
// catastrophically in floating point) and values down into the subnormal range.
TEST(IndependentRoutes, StatisticsEqualTwoPassRationalComputation) {
  constexpr std::uint32_t seed = 1001;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  struct shape {
    std::int64_t n;
    std::vector<std::int64_t> spatial;
  };
  const std::vector<shape> shapes = {{1, {}}, {2, {}},     {1, {3}},
                                     {7, {}}, {4, {5, 5}}, {8, {5, 25}}};
  for (const auto& sh : shapes) {
    bn_data d;
    d.n = sh.n;
    d.c = static_cast<std::int64_t>(std::size(k_kinds));
    d.spatial = sh.spatial;
    d.x.resize(d.per_channel() * static_cast<std::size_t>(d.c));
    for (std::size_t ch = 0; ch < static_cast<std::size_t>(d.c); ++ch) {
      for (const auto i : d.channel(ch)) d.x[i] = draw(k_kinds[ch], rng);
    }
    d.dy = d.x;
    const std::size_t L = d.per_channel();
    SCOPED_TRACE("L = " + std::to_string(L));
    // ONNX's convention: its biased running variance lets L = 1 train (PyTorch refuses it).
    const stored_problem sp(d, bnoracle::dense_layout(d.spatial.size()), "onnx");
    const auto ref = sp.run(d, bn_mode::forward_training);
    ASSERT_TRUE(ref.refusal().empty()) << ref.refusal();
    const auto means = ref.goldens("mean");
    const auto vars = ref.goldens("var");
    for (std::size_t ch = 0; ch < static_cast<std::size_t>(d.c); ++ch) {
      SCOPED_TRACE("channel " + std::to_string(ch));
      const two_pass m = two_pass_moments(gather(d.x, d.channel(ch)));
      // The extreme kind's variance exceeds FLT_MAX: its golden must then say overflow.
      const float mean_f = independent_round(m.mean);
      const float var_f = independent_round(m.var);
      EXPECT_EQ(means[ch].cls, golden_class::finite);
      EXPECT_EQ(vars[ch].cls, std::isinf(var_f) ? golden_class::overflow : golden_class::finite);
      EXPECT_PRED2(same_bits, means[ch].value, mean_f);
      EXPECT_PRED2(same_bits, vars[ch].value, var_f);
      if (L == 1) {
        EXPECT_TRUE(m.var.is_zero());  // a single value has no spread
      }
      // hp() carries the exact value to 2^-250 relative (header); 2^-240 leaves room for the
      // rounding of our own 600-bit conversion (2^-599) and states the claim with margin.
      const auto c = static_cast<std::int64_t>(ch);
      const bf600 mean_hp(ref.exact("mean", c).hp());
      const bf600 var_hp(ref.exact("var", c).hp());
      EXPECT_TRUE(close_to(mean_hp, to_bf<bf600>(m.mean), mp::abs(to_bf<bf600>(m.mean)), 240));
      EXPECT_TRUE(close_to(var_hp, to_bf<bf600>(m.var), mp::abs(to_bf<bf600>(m.var)), 240));
    }
  }
}

// ---- 2. Every output at two precisions ---------------------------------------------------------

bn_data random_problem(std::mt19937& rng, std::int64_t n, std::int64_t c,
                       std::vector<std::int64_t> spatial) {
  bn_data d;
  d.n = n;
  d.c = c;
  d.spatial = std::move(spatial);
  const std::size_t total = d.per_channel() * static_cast<std::size_t>(c);
  d.x.resize(total);
  d.dy.resize(total);
  for (std::size_t ch = 0; ch < static_cast<std::size_t>(c); ++ch) {
    // Channels rotate through a centered, a large-offset and a wide-exponent distribution.
    const data_kind kinds[] = {data_kind::centered, data_kind::large_offset,
                               data_kind::wide_exponents};
    const data_kind kind = kinds[ch % 3];
    for (const auto i : d.channel(ch)) {
      d.x[i] = kind == data_kind::wide_exponents
                   ? std::ldexp(signed_away_from_zero(rng, 1.0F, 2.0F), uniform_int(rng, -8, 8))
                   : draw(kind, rng);
      d.dy[i] = uniform(rng, -2.0F, 2.0F);
    }
    // γ and β away from 1 and 0 so that a kernel or reference ignoring them would show.
    d.gamma.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
    d.beta.push_back(signed_away_from_zero(rng, 0.5F, 4.0F));
    const two_pass m = two_pass_moments(gather(d.x, d.channel(ch)));
    const float mean = to_bf<bf200>(m.mean).convert_to<float>();
    const float var = to_bf<bf200>(m.var).convert_to<float>();
    d.run_mean.push_back(mean + uniform(rng, -0.5F, 0.5F) * std::sqrt(var));
    d.run_var.push_back(var * uniform(rng, 0.5F, 2.0F));
  }
  return d;
}

void expect_all_outputs_match(const bn_data& d, bnoracle::layout mem_layout) {
  const textbook<bf300> t300(d);
  const textbook<bf600> t600(d);
  const stored_problem sp(d, mem_layout, "pytorch");
  const auto check = [](const std::vector<golden>& g, const std::vector<bf300>& a,
                        const std::vector<bf600>& b, const char* name) {
    ASSERT_EQ(g.size(), b.size()) << name;
    for (std::size_t i = 0; i < g.size(); ++i) {
      EXPECT_TRUE(matches_golden(g[i], a[i], b[i])) << name << "[" << i << "]";
    }
  };
  {
    const auto ref = sp.run(d, bn_mode::forward_training);
    check(ref.goldens("dst"), t300.dst_train, t600.dst_train, "forward_training dst");
    check(ref.goldens("invstd"), t300.invstd, t600.invstd, "invstd");
  }
  {
    const auto ref = sp.run(d, bn_mode::backward_training);
    check(ref.goldens("diff_src"), t300.diff_src_train, t600.diff_src_train,
          "backward_training diff_src");
    check(ref.goldens("diff_gamma"), t300.diff_gamma_train, t600.diff_gamma_train,
          "backward_training diff_gamma");
    check(ref.goldens("diff_beta"), t300.diff_beta, t600.diff_beta, "backward_training diff_beta");
  }
  {
    const auto ref = sp.run(d, bn_mode::forward_inference);
    check(ref.goldens("dst"), t300.dst_infer, t600.dst_infer, "forward_inference dst");
  }
  {
    const auto ref = sp.run(d, bn_mode::backward_inference);
    check(ref.goldens("diff_src"), t300.diff_src_infer, t600.diff_src_infer,
          "backward_inference diff_src");
    check(ref.goldens("diff_gamma"), t300.diff_gamma_infer, t600.diff_gamma_infer,
          "backward_inference diff_gamma");
    check(ref.goldens("diff_beta"), t300.diff_beta, t600.diff_beta, "backward_inference diff_beta");
  }
}

// The textbook formulas evaluated at 300 and at 600 bits must round to the same float32 and to
// the golden: if 300 bits already decide the rounding, so does the exact value (the two
// enclosures nest), and agreement with the golden checks the reference's certified rounding.
TEST(IndependentRoutes, OutputsEqualTextbookFormulasRoundedFromTwoPrecisions) {
  constexpr std::uint32_t seed = 2002;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  {
    SCOPED_TRACE("nchw 8x3x6x5, eps 1e-5");
    const bn_data d = random_problem(rng, 8, 3, {6, 5});
    expect_all_outputs_match(d, bnoracle::layout::nchw);
  }
  {
    SCOPED_TRACE("nhwc 6x4x5x5, eps 1e-5");
    const bn_data d = random_problem(rng, 6, 4, {5, 5});
    expect_all_outputs_match(d, bnoracle::layout::nhwc);
  }
  {
    // ε comparable to channel 0's variance, so that ε weighs as much as the data in r.
    SCOPED_TRACE("nhwc 5x3x2x3, eps near the variance");
    bn_data d = random_problem(rng, 5, 3, {2, 3});
    const two_pass m = two_pass_moments(gather(d.x, d.channel(0)));
    d.eps = to_bf<bf200>(m.var).convert_to<double>() * 0.75;
    expect_all_outputs_match(d, bnoracle::layout::nhwc);
  }
  {
    SCOPED_TRACE("ncdhw 2x2x2x2x3, eps 1e-5");
    const bn_data d = random_problem(rng, 2, 2, {2, 2, 3});
    expect_all_outputs_match(d, bnoracle::layout::ncdhw);
  }
  {
    SCOPED_TRACE("nc 2x3 (L = 2), eps near the variance");
    bn_data d = random_problem(rng, 2, 3, {});
    const two_pass m = two_pass_moments(gather(d.x, d.channel(0)));
    d.eps = to_bf<bf200>(m.var).convert_to<double>() * 1.5;
    expect_all_outputs_match(d, bnoracle::layout::nc);
  }
  {
    SCOPED_TRACE("ncl 1x3x7 (L = 7), eps 1e-5");
    const bn_data d = random_problem(rng, 1, 3, {7});
    expect_all_outputs_match(d, bnoracle::layout::ncl);
  }
  // A sweep over random shapes of every spatial rank, in canonical and channels-last layouts.
  for (int trial = 0; trial < 24; ++trial) {
    const auto rank = static_cast<std::size_t>(trial % 4);
    std::vector<std::int64_t> spatial;
    for (std::size_t k = 0; k < rank; ++k) spatial.push_back(uniform_int(rng, 1, 4));
    // n >= 2: PyTorch refuses to train on one value per channel.
    bn_data d = random_problem(rng, uniform_int(rng, 2, 6), uniform_int(rng, 1, 5), spatial);
    if (trial % 3 == 1) {
      const two_pass m = two_pass_moments(gather(d.x, d.channel(0)));
      d.eps =
          to_bf<bf200>(m.var).convert_to<double>() * static_cast<double>(uniform(rng, 0.1F, 10.0F));
    }
    const bool last = trial % 2 == 1 && rank >= 2;
    const bnoracle::layout mem_layout =
        last ? (rank == 2 ? bnoracle::layout::nhwc : bnoracle::layout::ndhwc)
             : bnoracle::dense_layout(rank);
    SCOPED_TRACE("sweep trial " + std::to_string(trial) + ", " +
                 std::string(bnoracle::to_string(mem_layout)) + ", eps " + std::to_string(d.eps));
    expect_all_outputs_match(d, mem_layout);
  }
}

// Outputs that are exact float32 midpoints must round to even. With ε = 0 and a channel of values
// m ± 2^k, σ = 2^k and x̂ = ±1 exactly, so y = β ± γ; with γ in [1, 2) and β an odd multiple of
// 2^-24 each such y lies exactly halfway between two floats. The reference cannot decide these
// from an enclosure of the square root and must fall back to exact arithmetic; our binary floats
// hold the midpoints exactly. dx is then exactly 0 (x̂² = 1 cancels it), which must be +0.
TEST(IndependentRoutes, OutputsOnExactMidpointsRoundToEven) {
  constexpr std::uint32_t seed = 2003;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  bn_data d;
  d.n = 2;
  d.c = 6;
  d.spatial = {1, 2};
  d.eps = 0.0;
  d.x.resize(d.per_channel() * 6);
  d.dy.resize(d.x.size());
  for (std::size_t ch = 0; ch < 6; ++ch) {
    const float m = std::ldexp(static_cast<float>(uniform_int(rng, -64, 64)), -3);
    const int k = uniform_int(rng, -3, 3);
    const float dev = std::ldexp(1.0F, k);
    std::size_t j = 0;
    for (const auto i : d.channel(ch)) {
      d.x[i] = (j++ % 2 == 0) ? m - dev : m + dev;
      d.dy[i] = std::ldexp(static_cast<float>(uniform_int(rng, -(1 << 20), 1 << 20)), -18);
    }
    d.gamma.push_back(uniform(rng, 1.0F, 2.0F) * (ch % 2 == 0 ? 1.0F : -1.0F));
    d.beta.push_back(std::ldexp(static_cast<float>(2 * uniform_int(rng, -20, 20) + 1), -24));
    d.run_mean.push_back(m);
    d.run_var.push_back(dev * dev);  // inference then sees the same x̂ = ±1
  }
  for (const auto mem_layout : {bnoracle::layout::nchw, bnoracle::layout::nhwc}) {
    SCOPED_TRACE(std::string(bnoracle::to_string(mem_layout)));
    expect_all_outputs_match(d, mem_layout);
  }
  // The data really produce ties: each dst with |y| in [1, 2) is a midpoint (its 2^-24 bit set).
  const textbook<bf600> t(d);
  std::size_t ties = 0;
  for (const auto& v : t.dst_train) {
    int ulp_exp = 0;
    const float f = round_bf(v);
    ties += std::abs(residual_of(v, f, &ulp_exp)) == 0.5 ? 1U : 0U;
  }
  EXPECT_GT(ties, d.x.size() / 2) << "the construction should put most outputs on midpoints";
}

// Results in the subnormal range (tiny γ, β = 0) and beyond FLT_MAX (huge γ) are rounded like any
// other: subnormals to 2^-149 steps, overflow to ±Inf with class overflow.
TEST(IndependentRoutes, SubnormalAndOverflowingOutputsEqualTextbookRounding) {
  constexpr std::uint32_t seed = 2004;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  bn_data d = random_problem(rng, 4, 4, {2, 3});
  d.gamma = {std::ldexp(1.37F, -135), -std::ldexp(1.9F, -146), 3.4e38F, -3.3e38F};
  d.beta = {0.0F, 0.0F, 0.0F, 0.0F};
  for (std::size_t ch = 0; ch < 4; ++ch) {
    for (const auto i : d.channel(ch)) d.dy[i] = std::ldexp(d.dy[i], ch < 2 ? 0 : 100);
  }
  expect_all_outputs_match(d, bnoracle::layout::nchw);
  expect_all_outputs_match(d, bnoracle::layout::nhwc);
  // The data really reach both ranges, in the forward and in the backward outputs.
  const textbook<bf600> t(d);
  const auto count = [](const std::vector<bf600>& v, bool tiny) {
    std::size_t k = 0;
    for (const auto& e : v) {
      const float f = round_bf(e);
      k += (tiny ? (f != 0.0F && std::abs(f) < std::numeric_limits<float>::min()) : std::isinf(f))
               ? 1U
               : 0U;
    }
    return k;
  };
  EXPECT_GT(count(t.dst_train, true), 10U);
  EXPECT_GT(count(t.dst_train, false), 5U);
  EXPECT_GT(count(t.diff_src_train, true), 10U);
  EXPECT_GT(count(t.diff_src_train, false), 5U);
  EXPECT_GT(count(t.diff_src_infer, false), 5U);
}

// ---- 3. The analytic backward against finite differences --------------------------------------

// ℓ = Σ dy·(γ·(x − μ)/sqrt(σ² + ε) + β) at 600 bits. `training` takes μ and σ² from x itself
// (biased), otherwise from the running statistics, which are then constants.
bf600 loss(const bn_data& d, const std::vector<bf600>& x, const std::vector<bf600>& gamma,
           const std::vector<bf600>& beta, bool training) {
  bf600 total(0);
  for (std::size_t ch = 0; ch < static_cast<std::size_t>(d.c); ++ch) {
    const auto idx = d.channel(ch);
    const bf600 L(static_cast<double>(idx.size()));
    bf600 mu(d.run_mean[ch]);
    bf600 var(d.run_var[ch]);
    if (training) {
      bf600 s(0);
      for (const auto i : idx) s += x[i];
      mu = s / L;
      bf600 ss(0);
      for (const auto i : idx) ss += (x[i] - mu) * (x[i] - mu);
      var = ss / L;
    }
    const bf600 r = bf600(1) / mp::sqrt(var + bf600(d.eps));
    for (const auto i : idx) total += bf600(d.dy[i]) * (gamma[ch] * (x[i] - mu) * r + beta[ch]);
  }
  return total;
}

// Central difference of `f` along the coordinate `v[k]` with step 2^-100·|v[k]|.
template <class Loss>
bf600 central_difference(std::vector<bf600>& v, std::size_t k, Loss&& f) {
  const bf600 saved = v[k];
  const bf600 h = mp::ldexp(mp::abs(saved), -100);
  v[k] = saved + h;
  const bf600 up = f();
  v[k] = saved - h;
  const bf600 down = f();
  v[k] = saved;
  return (up - down) / (2 * h);
}

void expect_backward_matches_finite_differences(const bn_data& d, bool training) {
  const stored_problem sp(d, bnoracle::layout::nchw, "pytorch");
  const auto ref = sp.run(d, training ? bn_mode::backward_training : bn_mode::backward_inference);
  std::vector<bf600> x(d.x.begin(), d.x.end());
  std::vector<bf600> gamma(d.gamma.begin(), d.gamma.end());
  std::vector<bf600> beta(d.beta.begin(), d.beta.end());
  const auto f = [&] { return loss(d, x, gamma, beta, training); };

  for (std::size_t ch = 0; ch < static_cast<std::size_t>(d.c); ++ch) {
    SCOPED_TRACE("channel " + std::to_string(ch));
    const auto idx = d.channel(ch);
    const two_pass m = two_pass_moments(gather(d.x, idx));
    const rational w = training ? m.var + exact_rational(d.eps)
                                : exact_rational(d.run_var[ch]) + exact_rational(d.eps);
    const bf600 r = bf600(1) / mp::sqrt(to_bf<bf600>(w));
    const bf600 mu = training ? to_bf<bf600>(m.mean) : bf600(d.run_mean[ch]);
    // Scales of the gradients: S for dx (|γ|·r·Σ|dy|, the size of its terms before they cancel)
    // and T for the loss itself (Σ|dy|·(|γ·x̂| + |β|)).
    bf600 sum_abs_dy(0);
    bf600 t(0);
    for (const auto i : idx) {
      const bf600 ady = mp::abs(bf600(d.dy[i]));
      sum_abs_dy += ady;
      t += ady * (mp::abs(gamma[ch] * (bf600(d.x[i]) - mu) * r) + mp::abs(beta[ch]));
    }
    const bf600 s = mp::abs(gamma[ch]) * r * sum_abs_dy;
    // Tolerance for dx. The central difference's truncation error is h²/6·|f‴|. Along one
    // x_j the loss is γ·Σdy·(an analytic function of t/s'), s' = sqrt(σ² + ε), whose Taylor
    // coefficients are O(1) for |x̂| <= sqrt(L) < 4: |f‴| <= K·S/s'² with K < 2^12 (S has the
    // units of dℓ/dx). Here h = 2^-100·|x_j| and |x_j|/s' <= 2^5, so (h/s')² <= 2^-190 and the
    // truncation is below 2^-190·2^12/6·S < 2^-180·S (observed: about 2^-206·S). Rounding at
    // 600 bits adds about 2^-590·T/h <= 2^-482·T (|x_j| >= 2^-8), hp() 2^-250 relative. In
    // inference ℓ is affine in x: no truncation. We assert 2^-160·S + 2^-400·T in training
    // (2^20 above the truncation bound) and 2^-400·(S + T) in inference.
    const int k_dx = training ? 160 : 400;
    for (const auto i : idx) {
      ASSERT_LE(mp::abs(bf600(d.x[i])) * r, bf600(32)) << "the derivation assumes |x_j|/s' <= 2^5";
    }
    for (const auto i : idx) {
      const bf600 fd = central_difference(x, i, f);
      const bf600 exact(ref.exact("diff_src", static_cast<std::int64_t>(i)).hp());
      const bf600 tol_scale = mp::ldexp(s, 400 - k_dx) + t;
      EXPECT_TRUE(close_to_hp(fd, exact, tol_scale, 400)) << "diff_src[" << i << "]";
    }
    // ℓ is affine in γ and in β, so their central differences carry rounding only:
    // 2^-590·T/h with h = 2^-100·|γ| or |β| (>= 0.3) is below 2^-488·T; we assert 2^-400·T.
    const auto c = static_cast<std::int64_t>(ch);
    const bf600 dg = central_difference(gamma, ch, f);
    const bf600 db = central_difference(beta, ch, f);
    EXPECT_TRUE(close_to_hp(dg, bf600(ref.exact("diff_gamma", c).hp()), t, 400)) << "diff_gamma";
    EXPECT_TRUE(close_to_hp(db, bf600(ref.exact("diff_beta", c).hp()), t, 400)) << "diff_beta";
  }
}

bn_data small_backward_problem(std::mt19937& rng, double eps) {
  bn_data d;
  d.n = 3;
  d.c = 2;
  d.spatial = {2, 2};
  d.eps = eps;
  const std::size_t total = d.per_channel() * 2;
  for (std::size_t i = 0; i < total; ++i) {
    // |x| in [2^-8, 4] keeps the relative step 2^-100·|x| meaningful and max|x|/s' small.
    d.x.push_back(signed_away_from_zero(rng, 0.00390625F, 4.0F));
    d.dy.push_back(uniform(rng, -1.0F, 1.0F));
  }
  for (std::size_t ch = 0; ch < 2; ++ch) {
    d.gamma.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
    d.beta.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
    d.run_mean.push_back(uniform(rng, -1.0F, 1.0F));
    d.run_var.push_back(uniform(rng, 0.25F, 4.0F));
  }
  return d;
}

// Differentiating the forward formula numerically at 600 bits is a route to the gradient that
// shares nothing with the closed-form backward: a wrong sign, a missing 1/L or a missing x̂ term
// in the reference would show as an O(1) relative difference.
TEST(IndependentRoutes, TrainingBackwardEqualsHighPrecisionFiniteDifferences) {
  constexpr std::uint32_t seed = 3003;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const double eps : {1e-5, 0.5}) {
    SCOPED_TRACE("eps " + std::to_string(eps));
    expect_backward_matches_finite_differences(small_backward_problem(rng, eps), true);
  }
}

TEST(IndependentRoutes, InferenceBackwardEqualsHighPrecisionFiniteDifferences) {
  constexpr std::uint32_t seed = 3004;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const double eps : {1e-5, 0.5}) {
    SCOPED_TRACE("eps " + std::to_string(eps));
    expect_backward_matches_finite_differences(small_backward_problem(rng, eps), false);
  }
}

// ---- 4. The folded layer against the unfolded composition -------------------------------------

void expect_fold_matches_composition(std::mt19937& rng, bool with_bias, double eps) {
  constexpr std::size_t O = 4;
  constexpr std::size_t K = 6;
  constexpr std::size_t inputs = 5;
  std::vector<float> w, b, gamma, beta, rm, rv;
  for (std::size_t i = 0; i < O * K; ++i) w.push_back(uniform(rng, -2.0F, 2.0F));
  for (std::size_t o = 0; o < O; ++o) {
    if (with_bias) b.push_back(uniform(rng, -1.0F, 1.0F));
    gamma.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
    beta.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
    rm.push_back(uniform(rng, -2.0F, 2.0F));
    // One channel with a running variance below ε, where ε dominates the scale.
    rv.push_back(o == 0 ? static_cast<float>(eps) * 0.25F : uniform(rng, 0.1F, 4.0F));
  }
  bnoracle::fold_inputs in;
  in.out_channels = static_cast<std::int64_t>(O);
  in.fan_in = static_cast<std::int64_t>(K);
  in.weight = w;
  in.bias = b;
  in.gamma = gamma;
  in.beta = beta;
  in.running_mean = rm;
  in.running_var = rv;
  in.eps = eps;
  const bnoracle::fold_reference fold(in);

  std::vector<bf600> r(O);  // 1/sqrt(var + ε) per output channel
  for (std::size_t o = 0; o < O; ++o) r[o] = bf600(1) / mp::sqrt(bf600(rv[o]) + bf600(eps));

  // The goldens are the roundings of W·γ·r and (b − μ)·γ·r + β computed here at two precisions.
  const auto wg = fold.weight_goldens();
  const auto bg = fold.bias_goldens();
  for (std::size_t o = 0; o < O; ++o) {
    const bf300 r300 = bf300(1) / mp::sqrt(bf300(rv[o]) + bf300(eps));
    const float bo = with_bias ? b[o] : 0.0F;
    for (std::size_t k = 0; k < K; ++k) {
      const std::size_t i = o * K + k;
      EXPECT_TRUE(matches_golden(wg[i], bf300(w[i]) * bf300(gamma[o]) * r300,
                                 bf600(w[i]) * bf600(gamma[o]) * r[o]))
          << "weight[" << i << "]";
    }
    EXPECT_TRUE(
        matches_golden(bg[o], (bf300(bo) - bf300(rm[o])) * bf300(gamma[o]) * r300 + bf300(beta[o]),
                       (bf600(bo) - bf600(rm[o])) * bf600(gamma[o]) * r[o] + bf600(beta[o])))
        << "bias[" << o << "]";
  }

  for (std::size_t t = 0; t < inputs; ++t) {
    std::vector<float> u;
    for (std::size_t k = 0; k < K; ++k) u.push_back(uniform(rng, -3.0F, 3.0F));
    for (std::size_t o = 0; o < O; ++o) {
      // Unfolded: z = W·u + b (exact at 600 bits: K products of 48 bits in a narrow exponent
      // range), then eval batch norm with the running statistics.
      bf600 z(with_bias ? b[o] : 0.0F);
      for (std::size_t k = 0; k < K; ++k) z += bf600(w[o * K + k]) * bf600(u[k]);
      const bf600 y = bf600(gamma[o]) * (z - bf600(rm[o])) * r[o] + bf600(beta[o]);
      // Folded: z' = W'·u + b' from the reference's exact folded values.
      const bf600 bias_hp(fold.bias(static_cast<std::int64_t>(o)).hp());
      bf600 folded = bias_hp;
      bf600 m = mp::abs(bias_hp) + mp::abs(bf600(beta[o]));
      for (std::size_t k = 0; k < K; ++k) {
        const bf600 wk(fold.weight(static_cast<std::int64_t>(o * K + k)).hp());
        folded += wk * bf600(u[k]);
        m += mp::abs(wk * bf600(u[k]));
      }
      // Each hp() value is within 2^-250 relative of its exact value (header), so the folded
      // sum is within 2^-250·M of exact, M = Σ|W'·u| + |b'| + |β|; both routes' 600-bit
      // roundings add about (K + 4)·2^-599·M, and |γ·r·(z − μ)| <= Σ|W'·u| + |b'| + |β| bounds
      // the unfolded terms by M as well. Total below 2^-249·M; we assert 2^-248·M.
      EXPECT_TRUE(close_to(folded, y, m, 248)) << "input " << t << ", output channel " << o;
    }
  }
}

// Folding is an algebraic identity, so the folded layer must reproduce the layer followed by
// eval-mode batch norm to the precision of the exact values — a check of W' and b' that does not
// go through the reference's formulas.
TEST(IndependentRoutes, FoldedLayerEqualsLayerFollowedByEvalBatchNorm) {
  constexpr std::uint32_t seed = 4004;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const bool with_bias : {true, false}) {
    for (const double eps : {1e-5, 1e-3}) {
      SCOPED_TRACE(std::string(with_bias ? "with" : "without") + " bias, eps " +
                   std::to_string(eps));
      expect_fold_matches_composition(rng, with_bias, eps);
    }
  }
}

// ---- 5. SyncBN merge against the whole batch ---------------------------------------------------

// Merging shards' exact moments is exact arithmetic, so it must give the whole batch's moments as
// rationals, equal and not merely close; the whole batch is also checked against two-pass
// rationals. Shards of 0 and 1 elements are the edge cases of Chan's update.
TEST(IndependentRoutes, MergedShardMomentsEqualWholeBatchMoments) {
  constexpr std::uint32_t seed = 5005;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  const std::vector<std::vector<std::size_t>> splits = {
      {0, 1, 5, 0, 17, 2, 1, 40, 3}, {1, 1}, {0, 0, 13}, {64}, {1, 0, 1, 0, 1, 30, 7}};
  for (const data_kind kind : k_kinds) {
    for (const auto& sizes : splits) {
      std::vector<float> whole;
      for (const auto sz : sizes) {
        for (std::size_t i = 0; i < sz; ++i) whole.push_back(draw(kind, rng));
      }
      SCOPED_TRACE("kind " + std::to_string(static_cast<int>(kind)) +
                   ", L = " + std::to_string(whole.size()));
      std::vector<bnoracle::shard_moments> parts;
      std::size_t at = 0;
      for (const auto sz : sizes) {
        parts.push_back(bnoracle::moments_of(std::span<const float>(whole).subspan(at, sz)));
        at += sz;
      }
      const auto all = bnoracle::moments_of(whole);
      const auto merged = bnoracle::merge(parts);
      EXPECT_EQ(merged.count, all.count);
      EXPECT_EQ(merged.mean, all.mean);
      EXPECT_EQ(merged.m2, all.m2);
      // The same after merging in reverse order and as a two-level tree.
      std::vector<bnoracle::shard_moments> reversed(parts.rbegin(), parts.rend());
      const auto merged_reversed = bnoracle::merge(reversed);
      EXPECT_EQ(merged_reversed.mean, all.mean);
      EXPECT_EQ(merged_reversed.m2, all.m2);
      const std::size_t half = parts.size() / 2;
      const std::vector<bnoracle::shard_moments> tree = {
          bnoracle::merge(std::span<const bnoracle::shard_moments>(parts).first(half)),
          bnoracle::merge(std::span<const bnoracle::shard_moments>(parts).subspan(half))};
      const auto merged_tree = bnoracle::merge(tree);
      EXPECT_EQ(merged_tree.mean, all.mean);
      EXPECT_EQ(merged_tree.m2, all.m2);
      // And the whole batch against the two-pass rationals.
      const two_pass m = two_pass_moments(whole);
      EXPECT_EQ(all.count, static_cast<std::int64_t>(whole.size()));
      EXPECT_EQ(all.mean, m.mean);
      EXPECT_EQ(all.m2, m.var * static_cast<std::int64_t>(whole.size()));
    }
  }
}

// A shard whose float32 mean and biased variance are exact: pairs c ± d_j with few significant
// bits around one centre (the mean is c, the variance Σd_j²/p for p pairs), a single value, or
// nothing.
struct exact_shard {
  std::vector<float> values;
  bnoracle::shard_stats_f32 stats;
};

exact_shard make_exact_shard(std::mt19937& rng) {
  exact_shard s;
  const int form = uniform_int(rng, 0, 4);
  if (form == 0) return s;  // empty; its mean and variance are never read
  const float centre = std::ldexp(static_cast<float>(uniform_int(rng, -200, 200)), -4);
  if (form == 1) {
    s.values = {centre};
    s.stats = {1, centre, 0.0F};
    return s;
  }
  const int pairs = 1 << uniform_int(rng, 0, 2);  // a power of two: Σd²/p stays exact
  float sum_d2 = 0.0F;  // integers times 2^-10 below 2^12: exact in float32
  for (int j = 0; j < pairs; ++j) {
    const float dev = std::ldexp(static_cast<float>(uniform_int(rng, 1, 15)), -5);
    s.values.push_back(centre + dev);
    s.values.push_back(centre - dev);
    sum_d2 += dev * dev;
  }
  s.stats = {2 * pairs, centre, sum_d2 / static_cast<float>(pairs)};
  return s;
}

// With float32 shard statistics that are exact, the merged SyncBN statistics are the whole
// batch's exact statistics, so after rounding they must equal the whole-batch reference's goldens
// bit for bit (and our own rounding of the two-pass rationals).
TEST(IndependentRoutes, SyncBatchNormOfExactShardStatisticsEqualsWholeBatchGoldens) {
  constexpr std::uint32_t seed = 5006;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const char* convention : {"pytorch", "onnx"}) {
    for (int trial = 0; trial < 20; ++trial) {
      SCOPED_TRACE(std::string(convention) + " trial " + std::to_string(trial));
      std::vector<exact_shard> shards(static_cast<std::size_t>(uniform_int(rng, 1, 6)));
      for (auto& s : shards) s = make_exact_shard(rng);
      shards.push_back(exact_shard{});  // always one empty shard
      shards.push_back(make_exact_shard(rng));
      std::vector<float> whole;
      std::vector<bnoracle::shard_stats_f32> stats;
      for (const auto& s : shards) {
        // Precondition of the test: the shard's float32 statistics are its exact statistics.
        if (!s.values.empty()) {
          const two_pass m = two_pass_moments(s.values);
          ASSERT_EQ(m.mean, exact_rational(s.stats.mean));
          ASSERT_EQ(m.var, exact_rational(s.stats.var));
        }
        whole.insert(whole.end(), s.values.begin(), s.values.end());
        stats.push_back(s.stats);
      }
      if (whole.size() < 2) continue;  // PyTorch refuses training with L = 1
      const float old_mean = uniform(rng, -1.0F, 1.0F);
      const float old_var = uniform(rng, 0.5F, 2.0F);
      bnoracle::bn_problem p;
      p.n = static_cast<std::int64_t>(whole.size());
      p.c = 1;
      p.mem_layout = bnoracle::layout::nc;
      p.eps = 1e-5;
      p.convention = convention;
      p.momentum = std::string(convention) == "onnx" ? 0.9 : 0.1;
      bnoracle::bn_inputs in;
      in.src = whole.data();
      const std::vector<float> rm = {old_mean};
      const std::vector<float> rv = {old_var};
      in.running_mean = rm;
      in.running_var = rv;
      in.num_batches_tracked = 3;
      const bnoracle::reference ref(p, bn_mode::forward_training, in);
      ASSERT_TRUE(ref.refusal().empty()) << ref.refusal();
      const auto sync = bnoracle::syncbn_merge(p, stats, old_mean, old_var, 3);
      const auto expect_same = [&](const golden& got, const char* name) {
        const golden want = ref.goldens(name)[0];
        EXPECT_EQ(got.cls, want.cls) << name;
        EXPECT_PRED2(same_bits, got.value, want.value) << name;
      };
      expect_same(sync.mean.round(), "mean");
      expect_same(sync.var.round(), "var");
      expect_same(sync.invstd.round(), "invstd");
      expect_same(sync.running.mean.round(), "running_mean");
      expect_same(sync.running.var.round(), "running_var");
      const two_pass m = two_pass_moments(whole);
      EXPECT_PRED2(same_bits, sync.mean.round().value, independent_round(m.mean));
      EXPECT_PRED2(same_bits, sync.var.round().value, independent_round(m.var));
    }
  }
}

// ---- 6. The rounding itself ---------------------------------------------------------------------

// Our residual (q − f)/ulp(q), exactly: ulp(q) = 2^max(floor(log2|q|) − 23, −149), and an
// overflowed value counts as ±2^128.
double exact_residual(const rational& q, float f, std::int64_t* ulp_exp) {
  *ulp_exp = std::max<std::int64_t>(floor_log2(q) - 23, -149);
  rational fr;
  if (std::isinf(f)) {
    fr = f < 0 ? rational(-pow2_rational(128)) : pow2_rational(128);
  } else {
    fr = exact_rational(f);
  }
  const rational units = (q - fr) / pow2_rational(*ulp_exp);
  return to_bf<bf200>(units).convert_to<double>();
}

// `round_to_float(q)` against the expected float and class; the residual must match our exact
// one to the 2^-40 ulp the header promises, plus one ulp of the double that carries it
// (2^-52·|residual|, two roundings of half an ulp): an overflowed value far above 2^128 has a
// residual of 2^23 and more, which no double holds to 2^-40.
void expect_rounding(const rational& q, float want, golden_class cls) {
  const golden g = bnoracle::round_to_float(q);
  EXPECT_EQ(g.cls, cls) << q;
  EXPECT_PRED2(same_bits, g.value, want) << q;
  if (q.is_zero()) return;
  std::int64_t ulp_exp = 0;
  const double res = exact_residual(q, want, &ulp_exp);
  EXPECT_EQ(g.ulp_exp, ulp_exp) << q;
  EXPECT_LE(std::abs(g.residual - res), std::ldexp(1.0, -40) + std::ldexp(std::abs(res), -52))
      << q << ": residual " << g.residual << ", exact " << res;
}

golden_class class_of(float f) {
  return std::isinf(f) ? golden_class::overflow : golden_class::finite;
}

// Random rationals p/q·2^k spanning subnormals to overflow: the expected float comes from a
// 200-bit binary float and our own rounding, and is certified exactly by the midpoint test (a
// random rational lies within 2^-176 of a midpoint with probability about 2^-150).
TEST(IndependentRoutes, RoundingOfRandomRationalsEqualsIndependentRounding) {
  constexpr std::uint32_t seed = 6006;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  const auto random_big = [&](int bits) {
    big_int v(0);
    for (int i = 0; i < bits; i += 30) v = (v << 30U) + big_int(rng() & 0x3FFFFFFFU);
    v >>= static_cast<unsigned>((30 - bits % 30) % 30);
    return v + 1;  // positive
  };
  for (int trial = 0; trial < 20000; ++trial) {
    const int pbits = uniform_int(rng, 1, 180);
    const int qbits = uniform_int(rng, 1, 180);
    const big_int num = random_big(pbits);
    const big_int den = random_big(qbits);
    // One trial in ten reaches far beyond the overflow threshold, up to 2^300.
    const int k = uniform_int(rng, -175, trial % 10 == 0 ? 300 : 135) - (pbits - qbits);
    rational q = rational(num, den) * pow2_rational(k);
    if (uniform_int(rng, 0, 1) == 1) q = -q;
    const float want = round_bf(bf200(mp::numerator(q)) / bf200(mp::denominator(q)));
    ASSERT_TRUE(rounds_to(q, want)) << "the test's own rounding route failed for " << q;
    expect_rounding(q, want, class_of(want));
  }
}

// Exact midpoints between adjacent floats must go to the even neighbour; a hair above or below
// must go to the nearer one. Covered: random normals, random subnormals, the midpoint between 0
// and the smallest subnormal (→ ±0), the subnormal/normal boundary, binade boundaries, and the
// midpoint between FLT_MAX and 2^128 — IEEE 754's overflow threshold, which rounds to +Inf.
TEST(IndependentRoutes, RoundingOfMidpointsTiesToEvenAndOverflowsAtTheThreshold) {
  constexpr std::uint32_t seed = 6007;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  const auto even_of = [](float a, float b) {
    return (std::bit_cast<std::uint32_t>(a) & 1U) == 0U ? a : b;
  };
  const auto check_between = [&](float a, float b) {  // a < b adjacent, both finite
    SCOPED_TRACE("between " + hexf(a) + " and " + hexf(b));
    const rational ra = exact_rational(a);
    const rational rb = exact_rational(b);
    const rational mid = (ra + rb) / 2;
    const rational hair = (rb - ra) * pow2_rational(-200);
    const float tie = even_of(a, b);
    expect_rounding(mid, tie, golden_class::finite);
    expect_rounding(mid + hair, b, golden_class::finite);
    expect_rounding(mid - hair, a, golden_class::finite);
    expect_rounding(-mid, -tie, golden_class::finite);
  };
  const float inf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 3000; ++trial) {
    const auto normal_bits = static_cast<std::uint32_t>(uniform_int(rng, 0x00800000, 0x7F7FFFFE));
    const float a = std::bit_cast<float>(normal_bits);
    check_between(a, std::nextafter(a, inf));
    const auto sub_bits = static_cast<std::uint32_t>(uniform_int(rng, 1, 0x007FFFFE));
    const float s = std::bit_cast<float>(sub_bits);
    check_between(s, std::nextafter(s, inf));
  }
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float min_normal = std::numeric_limits<float>::min();
  check_between(0.0F, tiny);      // 2^-150 ties to +0
  check_between(tiny, 2 * tiny);  // 3·2^-150 ties to 2^-148
  check_between(std::nextafter(min_normal, 0.0F), min_normal);
  check_between(std::nextafter(1.0F, 0.0F), 1.0F);  // across a binade boundary
  check_between(std::nextafter(0x1p-100F, 0.0F), 0x1p-100F);
  // −2^-150 rounds to −0: a non-zero value keeps its sign (IEEE 754), only an exact zero is +0.
  expect_rounding(-exact_rational(tiny) / 2, -0.0F, golden_class::finite);
  expect_rounding(rational(0), 0.0F, golden_class::finite);

  const float max = std::numeric_limits<float>::max();
  const rational rmax = exact_rational(max);
  const rational threshold = (rmax + pow2_rational(128)) / 2;  // = FLT_MAX + 2^103
  const rational hair = pow2_rational(-50);
  check_between(std::nextafter(max, 0.0F), max);
  expect_rounding(threshold, inf, golden_class::overflow);  // FLT_MAX is odd: the tie goes up
  expect_rounding(-threshold, -inf, golden_class::overflow);
  expect_rounding(threshold - hair, max, golden_class::finite);
  expect_rounding(-(threshold - hair), -max, golden_class::finite);
  expect_rounding(threshold + hair, inf, golden_class::overflow);
  expect_rounding(rmax * (1 + pow2_rational(-24)), inf, golden_class::overflow);
  expect_rounding(pow2_rational(200), inf, golden_class::overflow);
  // Residuals of overflowed values just above 2^128 and far above it (ulp 2^105 and 2^177).
  expect_rounding(pow2_rational(128) * (1 + rational(3, 10) * pow2_rational(-23)), inf,
                  golden_class::overflow);
  expect_rounding(-pow2_rational(200) * (1 + rational(3, 10) * pow2_rational(-23)), -inf,
                  golden_class::overflow);
  // At the threshold the exact value is 2^128 − 2^103, half an ulp (2^104) below 2^128.
  EXPECT_EQ(bnoracle::round_to_float(threshold).residual, -0.5);
}

// ---- 9. Layer, RMS, group and instance norm against the textbook formulas --------------------

// The members of the family, with the statistic groups and γ/β entries written out here from
// their definitions (not from the library's reduction map), over the logical (n, c, spatial...)
// tensor with S the spatial size and li = (n·C + c)·S + s.
struct family_case {
  std::string name;
  bnoracle::op_desc op;
  std::int64_t n = 1, c = 1;
  std::vector<std::int64_t> spatial;
  double eps = 1e-5;
  std::vector<float> x, dy, gamma, beta, run_mean, run_var;

  [[nodiscard]] std::size_t S() const {
    std::size_t s = 1;
    for (const auto e : spatial) s *= static_cast<std::size_t>(e);
    return s;
  }
  [[nodiscard]] std::size_t total() const { return static_cast<std::size_t>(n * c) * S(); }
  // Layer and RMS norm: the product of the last k extents of (c, spatial...).
  [[nodiscard]] std::size_t row() const {
    std::size_t r = 1;
    const auto rank = static_cast<int>(spatial.size());
    for (int k = 0; k < op.normalized_axes; ++k) {
      r *= static_cast<std::size_t>(k < rank ? spatial[static_cast<std::size_t>(rank - 1 - k)] : c);
    }
    return r;
  }
  [[nodiscard]] std::size_t group_of(std::size_t li) const {
    const std::size_t ch = li / S() % static_cast<std::size_t>(c);
    const std::size_t in = li / S() / static_cast<std::size_t>(c);
    switch (op.kind) {
      case bnoracle::op_kind::instance_norm:
        return li / S();
      case bnoracle::op_kind::group_norm: {
        const auto G = static_cast<std::size_t>(op.groups);
        return in * G + ch / (static_cast<std::size_t>(c) / G);
      }
      default:
        return li / row();
    }
  }
  [[nodiscard]] std::size_t param_of(std::size_t li) const {
    if (op.params == bnoracle::param_placement::per_normalized_element) return li % row();
    return li / S() % static_cast<std::size_t>(c);
  }
  [[nodiscard]] std::size_t groups() const {
    std::size_t g = 0;
    for (std::size_t li = 0; li < total(); ++li) g = std::max(g, group_of(li) + 1);
    return g;
  }
};

// Forward and backward outputs of one family case by the textbook formulas at precision F:
// x̂ = (x − μ)/sqrt(σ² + ε) (RMS norm: x/sqrt(mean(x²) + ε)), y = γ·x̂ + β with γ applied as
// 1 + w under the weight offset, g = γ·dy, dx = r·(g − mean(g) − x̂·mean(g·x̂)) (no mean(g)
// for RMS norm), dγ = Σdy·x̂ and dβ = Σdy over each entry's elements.
template <class F>
struct family_textbook {
  std::vector<F> dst, mean, var, invstd, diff_src, diff_gamma, diff_beta;

  explicit family_textbook(const family_case& d) {
    const std::size_t total = d.total();
    const std::size_t G = d.groups();
    const bool centred = d.op.centred;
    const bool params = !d.gamma.empty();
    const auto gamma = [&](std::size_t j) {
      if (!params) return F(1);
      return d.op.weight_offset ? F(1) + F(d.gamma[j]) : F(d.gamma[j]);
    };
    const auto beta = [&](std::size_t j) { return params ? F(d.beta[j]) : F(0); };
    std::vector<std::vector<std::size_t>> members(G);
    for (std::size_t li = 0; li < total; ++li) members[d.group_of(li)].push_back(li);
    dst.resize(total);
    diff_src.resize(total);
    if (params) {
      diff_gamma.assign(d.gamma.size(), F(0));
      diff_beta.assign(d.gamma.size(), F(0));
    }
    std::vector<F> xhat(total);
    for (std::size_t g = 0; g < G; ++g) {
      const auto& idx = members[g];
      const F L(static_cast<double>(idx.size()));
      F mu(0);
      if (centred) {
        for (const auto i : idx) mu += F(d.x[i]);
        mu /= L;
      }
      F v(0);
      for (const auto i : idx) v += (F(d.x[i]) - mu) * (F(d.x[i]) - mu);
      v /= L;
      const F r = F(1) / mp::sqrt(v + F(d.eps));
      mean.push_back(mu);
      var.push_back(v);
      invstd.push_back(r);
      F sum_g(0);
      F sum_g_xhat(0);
      for (const auto i : idx) {
        const std::size_t j = d.param_of(i);
        xhat[i] = (F(d.x[i]) - mu) * r;
        dst[i] = gamma(j) * xhat[i] + beta(j);
        sum_g += gamma(j) * F(d.dy[i]);
        sum_g_xhat += gamma(j) * F(d.dy[i]) * xhat[i];
        if (params) {
          diff_gamma[j] += F(d.dy[i]) * xhat[i];
          diff_beta[j] += F(d.dy[i]);
        }
      }
      const F mean_g = centred ? sum_g / L : F(0);
      for (const auto i : idx) {
        const F gi = gamma(d.param_of(i)) * F(d.dy[i]);
        diff_src[i] = r * (gi - mean_g - xhat[i] * (sum_g_xhat / L));
      }
    }
  }
};

family_case random_family_case(std::mt19937& rng, std::string name, bnoracle::op_desc op,
                               std::int64_t n, std::int64_t c, std::vector<std::int64_t> spatial,
                               bool params = true) {
  family_case d;
  d.name = std::move(name);
  d.op = op;
  d.n = n;
  d.c = c;
  d.spatial = std::move(spatial);
  const std::size_t total = d.total();
  const std::size_t G = d.groups();
  // Groups rotate through a centred, a large-offset and a wide-exponent distribution.
  const data_kind kinds[] = {data_kind::centered, data_kind::large_offset,
                             data_kind::wide_exponents};
  d.x.resize(total);
  d.dy.resize(total);
  for (std::size_t li = 0; li < total; ++li) {
    const data_kind kind = kinds[d.group_of(li) % 3];
    d.x[li] = kind == data_kind::wide_exponents
                  ? std::ldexp(signed_away_from_zero(rng, 1.0F, 2.0F), uniform_int(rng, -8, 8))
                  : draw(kind, rng);
    d.dy[li] = uniform(rng, -2.0F, 2.0F);
  }
  if (params && op.params != bnoracle::param_placement::none) {
    std::size_t P = 0;
    for (std::size_t li = 0; li < total; ++li) P = std::max(P, d.param_of(li) + 1);
    for (std::size_t j = 0; j < P; ++j) {
      d.gamma.push_back(signed_away_from_zero(rng, 0.3F, 3.0F));
      d.beta.push_back(signed_away_from_zero(rng, 0.5F, 4.0F));
    }
  }
  (void)G;
  return d;
}

bnoracle::bn_problem family_problem(const family_case& d) {
  bnoracle::bn_problem p;
  p.n = d.n;
  p.c = d.c;
  p.spatial = d.spatial;
  p.mem_layout = bnoracle::dense_layout(d.spatial.size());
  p.eps = d.eps;
  p.op = d.op;
  return p;
}

void expect_family_outputs_match(const family_case& d) {
  SCOPED_TRACE(d.name + " " + bnoracle::describe(d.op));
  const family_textbook<bf300> t300(d);
  const family_textbook<bf600> t600(d);
  const bnoracle::bn_problem p = family_problem(d);
  bnoracle::bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  const auto check = [](const std::vector<golden>& g, const std::vector<bf300>& a,
                        const std::vector<bf600>& b, const char* name) {
    ASSERT_EQ(g.size(), b.size()) << name;
    for (std::size_t i = 0; i < g.size(); ++i) {
      EXPECT_TRUE(matches_golden(g[i], a[i], b[i])) << name << "[" << i << "]";
    }
  };
  {
    const bnoracle::reference ref(p, bn_mode::forward_training, in);
    check(ref.goldens("dst"), t300.dst, t600.dst, "dst");
    check(ref.goldens("invstd"), t300.invstd, t600.invstd, "invstd");
    // RMS norm has no mean; its `var` is the mean square that takes the variance's place.
    check(ref.goldens("var"), t300.var, t600.var, "var");
    if (d.op.centred) {
      check(ref.goldens("mean"), t300.mean, t600.mean, "mean");
    } else {
      EXPECT_FALSE(ref.has_output(bnoracle::output_id::mean));
    }
  }
  {
    const bnoracle::reference ref(p, bn_mode::backward_training, in);
    check(ref.goldens("diff_src"), t300.diff_src, t600.diff_src, "diff_src");
    if (!d.gamma.empty()) {
      check(ref.goldens("diff_gamma"), t300.diff_gamma, t600.diff_gamma, "diff_gamma");
      check(ref.goldens("diff_beta"), t300.diff_beta, t600.diff_beta, "diff_beta");
    } else {
      EXPECT_FALSE(ref.has_output(bnoracle::output_id::diff_gamma));
    }
  }
}

TEST(IndependentRoutes, FamilyOutputsEqualTextbookFormulasRoundedFromTwoPrecisions) {
  constexpr std::uint32_t seed = 9009;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  using bnoracle::group_norm_op;
  using bnoracle::instance_norm_op;
  using bnoracle::layer_norm_op;
  using bnoracle::rms_norm_op;
  // Rows of hidden sizes that are not multiples of a vector width, normalized shapes of one and
  // several axes, groups of one channel, of all channels and of a non-power-of-two count.
  expect_family_outputs_match(random_family_case(rng, "rows", layer_norm_op(1), 5, 7, {}));
  expect_family_outputs_match(random_family_case(rng, "hidden 1", layer_norm_op(1), 4, 1, {}));
  expect_family_outputs_match(random_family_case(rng, "2 axes", layer_norm_op(2), 3, 4, {5}));
  expect_family_outputs_match(random_family_case(rng, "3 axes", layer_norm_op(3), 2, 2, {3, 2}));
  expect_family_outputs_match(
      random_family_case(rng, "no gamma", layer_norm_op(1), 3, 9, {}, false));
  expect_family_outputs_match(random_family_case(rng, "rows", rms_norm_op(1), 6, 5, {}));
  expect_family_outputs_match(random_family_case(rng, "2 axes", rms_norm_op(2), 2, 3, {4}));
  bnoracle::op_desc gemma = rms_norm_op(1);
  gemma.weight_offset = true;
  expect_family_outputs_match(random_family_case(rng, "weight offset", gemma, 4, 6, {}));
  expect_family_outputs_match(random_family_case(rng, "G=2", group_norm_op(2), 3, 6, {2, 2}));
  expect_family_outputs_match(random_family_case(rng, "G=1", group_norm_op(1), 2, 3, {3}));
  expect_family_outputs_match(random_family_case(rng, "G=C", group_norm_op(4), 2, 4, {3}));
  expect_family_outputs_match(random_family_case(rng, "48/16", group_norm_op(16), 2, 48, {}));
  expect_family_outputs_match(random_family_case(rng, "nchw", instance_norm_op(), 3, 4, {2, 3}));
  expect_family_outputs_match(random_family_case(rng, "ncl", instance_norm_op(), 2, 3, {5}));
  // ε near a group's variance.
  family_case near = random_family_case(rng, "eps near the variance", layer_norm_op(1), 3, 6, {});
  near.eps = family_textbook<bf300>(near).var[0].convert_to<double>() * 0.75;
  expect_family_outputs_match(near);
}

// Instance norm's running statistics follow PyTorch: every instance (n, c) updates its copy of
// the channel's running statistics with its own mean and Bessel-corrected variance, and the
// copies are averaged over n. In inference it normalizes with the channel's running statistics.
TEST(IndependentRoutes, InstanceNormRunningStatisticsAverageThePerInstanceUpdates) {
  std::mt19937 rng(9010);
  family_case d = random_family_case(rng, "running", bnoracle::instance_norm_op(true), 3, 2, {4});
  d.run_mean = {0.25F, -1.5F};
  d.run_var = {2.0F, 0.75F};
  const bnoracle::bn_problem p = family_problem(d);
  bnoracle::bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  in.running_mean = d.run_mean;
  in.running_var = d.run_var;
  const bnoracle::reference train(p, bn_mode::forward_training, in);
  const family_textbook<bf300> t300(d);
  const family_textbook<bf600> t600(d);
  const std::vector<golden> rm = train.goldens("running_mean");
  const std::vector<golden> rv = train.goldens("running_var");
  ASSERT_EQ(rm.size(), 2U);
  const auto S = static_cast<double>(d.S());
  for (std::size_t ch = 0; ch < 2; ++ch) {
    bf300 m300(0), v300(0);
    bf600 m600(0), v600(0);
    for (std::size_t in_ = 0; in_ < 3; ++in_) {
      const std::size_t g = in_ * 2 + ch;
      // momentum 0.1 is a double; the update is (1 − m)·old + m·new per copy.
      const bf600 m(0.1);
      m600 += (1 - m) * bf600(d.run_mean[ch]) + m * t600.mean[g];
      v600 += (1 - m) * bf600(d.run_var[ch]) + m * t600.var[g] * S / (S - 1);
      const bf300 m3(0.1);
      m300 += (1 - m3) * bf300(d.run_mean[ch]) + m3 * t300.mean[g];
      v300 += (1 - m3) * bf300(d.run_var[ch]) + m3 * t300.var[g] * S / (S - 1);
    }
    EXPECT_TRUE(matches_golden(rm[ch], m300 / 3, m600 / 3)) << "running_mean[" << ch << "]";
    EXPECT_TRUE(matches_golden(rv[ch], v300 / 3, v600 / 3)) << "running_var[" << ch << "]";
  }
  const bnoracle::reference infer(p, bn_mode::forward_inference, in);
  const std::vector<golden> y = infer.goldens("dst");
  for (std::size_t li = 0; li < d.total(); ++li) {
    const std::size_t ch = li / d.S() % 2;
    const auto value = [&](auto one) {
      using F = decltype(one);
      return F(d.gamma[ch]) * (F(d.x[li]) - F(d.run_mean[ch])) /
                 mp::sqrt(F(d.run_var[ch]) + F(d.eps)) +
             F(d.beta[ch]);
    };
    EXPECT_TRUE(matches_golden(y[li], value(bf300(1)), value(bf600(1)))) << "dst[" << li << "]";
  }
}

// dγ of layer norm adds one term per row, each scaled by its row's 1/sqrt(σ² + ε). Terms can
// cancel exactly — rows whose x̂ are equal while their variances differ by a square factor, with
// opposite dy — and leave a rational sum that can sit on a rounding boundary, which no enclosure
// decides. With ε = 0: row 1 is 2·row 0 (variance ×4, x̂ identical) with dy negated, so the two
// cancel in every column; rows 2 and 3 have x̂ = ∓1 exactly, and their dy make
// dγ_0 = (−1)(−1) + (−2^-24)(−1) = 1 + 2^-24, halfway between 1 and its successor: it must round
// to even (1) with residual +0.5, and the other columns to +0 with residual 0.
TEST(IndependentRoutes, LayerNormGammaGradientOfCancellingRowsIsDecidedExactly) {
  family_case d;
  d.name = "cancelling rows";
  d.op = bnoracle::layer_norm_op(1);
  d.n = 4;
  d.c = 4;
  d.eps = 0.0;
  d.x = {0.3F, 1.7F, -0.9F, 0.5F};
  for (std::size_t k = 0; k < 4; ++k) d.x.push_back(2 * d.x[k]);
  d.x.insert(d.x.end(), {3.0F, 5.0F, 3.0F, 5.0F, 0.0F, 2.0F, 0.0F, 2.0F});
  d.dy = {0.75F,
          -1.25F,
          0.5F,
          0.25F,
          -0.75F,
          1.25F,
          -0.5F,
          -0.25F,
          -1.0F,
          0.0F,
          0.0F,
          0.0F,
          -std::ldexp(1.0F, -24),
          0.0F,
          0.0F,
          0.0F};
  d.gamma.assign(4, 1.0F);
  d.beta.assign(4, 0.0F);
  bnoracle::bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  const bnoracle::reference ref(family_problem(d), bn_mode::backward_training, in);
  const family_textbook<bf600> t(d);
  ASSERT_TRUE(t.diff_gamma[0] == bf600(1) + mp::ldexp(bf600(1), -24));
  const golden g0 = ref.round("diff_gamma", 0);
  EXPECT_EQ(g0.cls, golden_class::finite);
  EXPECT_TRUE(same_bits(g0.value, 1.0F)) << hexf(g0.value);
  EXPECT_EQ(g0.residual, 0.5);
  for (std::int64_t j = 1; j < 4; ++j) {
    const golden g = ref.round("diff_gamma", j);
    EXPECT_EQ(g.cls, golden_class::finite);
    EXPECT_TRUE(same_bits(g.value, 0.0F)) << j << ": " << hexf(g.value);
    EXPECT_EQ(g.residual, 0.0) << j;
    EXPECT_EQ(ref.exact("diff_gamma", j).hp(), 0) << j;
  }
}

// Group norm with one channel per group is instance norm, and with one group is layer norm over
// (c, spatial...): the goldens of every output agree bit for bit.
TEST(IndependentRoutes, GroupNormAtItsLimitsEqualsInstanceAndLayerNorm) {
  std::mt19937 rng(9011);
  const family_case d = random_family_case(rng, "limits", bnoracle::group_norm_op(3), 2, 3, {2, 2});
  bnoracle::bn_inputs in;
  in.src = d.x.data();
  in.diff_dst = d.dy.data();
  in.gamma = d.gamma;
  in.beta = d.beta;
  const auto goldens = [&](const bnoracle::op_desc& op, bn_mode mode, const char* out) {
    family_case e = d;
    e.op = op;
    return bnoracle::reference(family_problem(e), mode, in).goldens(out);
  };
  const auto same = [](const std::vector<golden>& a, const std::vector<golden>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same_bits(a[i].value, b[i].value) || a[i].residual != b[i].residual) return false;
    }
    return true;
  };
  for (const char* out : {"dst", "mean", "invstd"}) {
    EXPECT_TRUE(same(goldens(bnoracle::group_norm_op(3), bn_mode::forward_training, out),
                     goldens(bnoracle::instance_norm_op(), bn_mode::forward_training, out)))
        << out;
  }
  for (const char* out : {"diff_src", "diff_gamma", "diff_beta"}) {
    EXPECT_TRUE(same(goldens(bnoracle::group_norm_op(3), bn_mode::backward_training, out),
                     goldens(bnoracle::instance_norm_op(), bn_mode::backward_training, out)))
        << out;
  }
  // G = 1 against layer norm over all three axes without γ/β (layer norm's γ is per element).
  in.gamma = {};
  in.beta = {};
  for (const char* out : {"dst", "mean", "var", "invstd"}) {
    EXPECT_TRUE(same(goldens(bnoracle::group_norm_op(1), bn_mode::forward_training, out),
                     goldens(bnoracle::layer_norm_op(3), bn_mode::forward_training, out)))
        << out;
  }
  EXPECT_TRUE(same(goldens(bnoracle::group_norm_op(1), bn_mode::backward_training, "diff_src"),
                   goldens(bnoracle::layer_norm_op(3), bn_mode::backward_training, "diff_src")));
}

}  // namespace
