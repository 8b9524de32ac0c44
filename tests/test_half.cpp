// float16 and bfloat16: the formats' conversions, and the error model of kernels whose tensors
// are in those formats (docs/error-model.md, "Half precision").
//
// The conversions are checked against independent implementations: the bundled kernels' integer
// rounding of float bits (kernels/common/norm_kernel.hpp) and the reference's exact rounding of
// rationals. The model is checked both ways on simulated pipelines written here: a float32
// pipeline rounded once to the format lies within the bound, and pipelines with one more
// rounding (a half-precision mean, Llama's cast before the weight judged as one rounding) do
// not.
#include "bnoracle/error_model.hpp"
#include "bnoracle/exact.hpp"
#include "bnoracle/format.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/reference.hpp"
#include "common/norm_kernel.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace bnoracle;
namespace kn = bnoracle::kernels;

float half_value(const float_format& f, std::uint16_t bits) {
  return f.id == format_id::float16 ? kn::from_binary16(bits) : kn::from_bfloat16(bits);
}

float kernel_round(const float_format& f, float v) {
  return f.id == format_id::float16 ? kn::from_binary16(kn::to_binary16(v))
                                    : kn::from_bfloat16(kn::to_bfloat16(v));
}

TEST(HalfFormats, EncodeAndDecodeRoundTripEveryBitPattern) {
  for (const float_format* f : {&k_float16, &k_bfloat16}) {
    for (std::uint32_t b = 0; b < 0x10000U; ++b) {
      const auto bits = static_cast<std::uint16_t>(b);
      const float v = decode_half(*f, bits);
      const float independent = half_value(*f, bits);
      if (std::isnan(v)) {
        ASSERT_TRUE(std::isnan(independent)) << f->name << " bits " << b;
        ASSERT_TRUE(std::isnan(decode_half(*f, encode_half(*f, v))));
        continue;
      }
      ASSERT_TRUE(bit_equal(v, independent)) << f->name << " bits " << b;
      ASSERT_TRUE(representable(*f, v)) << f->name << " bits " << b;
      ASSERT_EQ(encode_half(*f, v), bits) << f->name << " value " << v;
    }
    EXPECT_THROW((void)encode_half(*f, 1.0F + 0x1p-20F), std::invalid_argument);
  }
  EXPECT_THROW((void)encode_half(k_float16, 65536.0F), std::invalid_argument);
  EXPECT_THROW((void)encode_half(k_float32, 1.0F), std::invalid_argument);
}

TEST(HalfFormats, RoundingAgreesWithTheKernelsIntegerRoundingAndTheExactOne) {
  std::vector<float> values{65504.0F,        65519.996F,      65520.0F,     65520.004F,   0x1p-25F,
                            0x1.000002p-25F, 0x1.8p-24F,      0x1.4p-24F,   0x1.fffp-15F, -0x1p-14F,
                            0x1.ff8p-1F,     0x1.ff7fffp127F, 0x1.ff8p127F, 3.0F,         -0.0F};
  std::mt19937 rng(5);
  for (int i = 0; i < 400000; ++i) {
    const float v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isfinite(v)) values.push_back(v);
  }
  // Values near the float16 range, where both exponent handling and overflow matter.
  std::uniform_real_distribution<float> near(-70000.0F, 70000.0F);
  for (int i = 0; i < 100000; ++i) values.push_back(near(rng) * std::ldexp(1.0F, -(i % 40)));
  for (const float_format* f : {&k_float16, &k_bfloat16}) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float v = values[i];
      const float ours = round_to_format(*f, v);
      ASSERT_TRUE(bit_equal(ours, kernel_round(*f, v))) << f->name << " " << v;
      // The exact rounding of the reference, on a sample (it is slower).
      if (i % 97 == 0) {
        const golden g = round_to(*f, to_rational(v));
        ASSERT_TRUE(bit_equal(ours, g.value)) << f->name << " " << v;
      }
      const float saturated = round_to_format(*f, v, true);
      if (std::isinf(ours)) {
        const float largest = std::ldexp(2.0F - std::ldexp(1.0F, 1 - f->precision), f->emax);
        ASSERT_EQ(saturated, std::copysign(largest, v));
      } else {
        ASSERT_TRUE(bit_equal(saturated, ours));
      }
    }
  }
}

// ---- The error model --------------------------------------------------------------------------

// Values of format f drawn as N(offset, spread²).
std::vector<float> draw(const float_format& f, std::size_t n, double offset, double spread,
                        unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(offset, spread);
  std::vector<float> v(n);
  for (float& e : v) e = round_to_format(f, static_cast<float>(d(rng)), true);
  return v;
}

struct row_problem {
  bn_problem p;
  std::vector<float> x, dy, gamma, beta;
  std::int64_t rows = 0, H = 0;
};

// A layer or RMS norm over rows of H values, every tensor in `types`.
row_problem rows_of(op_desc op, data_types types, std::int64_t rows, std::int64_t H, double offset,
                    unsigned seed) {
  row_problem r;
  r.rows = rows;
  r.H = H;
  r.p.n = rows;
  r.p.c = H;
  r.p.mem_layout = layout::nc;
  r.p.eps = 1e-6;
  r.p.op = op;
  r.p.types = types;
  const float_format& d = format_of(types.data);
  const float_format& w = format_of(types.parameters);
  r.x = draw(d, static_cast<std::size_t>(rows * H), offset, 1.0, seed);
  r.dy = draw(d, r.x.size(), 0.0, 1.0, seed + 1);
  r.gamma = draw(w, static_cast<std::size_t>(H), 1.0, 0.3, seed + 2);
  r.beta = draw(w, static_cast<std::size_t>(H), 0.0, 0.5, seed + 3);
  return r;
}

// Forward training of a float32 pipeline (two-pass statistics, fused y), y rounded to the data
// format; with `cast_before_weight`, Llama's order: fl_D(γ·fl_D(x̂)). With `half_mean`, the
// row sum is accumulated in float16 (a bug).
std::vector<float> forward(const row_problem& r, bool cast_before_weight, bool half_mean = false) {
  const float_format& d = format_of(r.p.types.data);
  const bool centred = r.p.op.centred;
  std::vector<float> y(r.x.size());
  for (std::int64_t row = 0; row < r.rows; ++row) {
    const float* x = &r.x[static_cast<std::size_t>(row * r.H)];
    float s = 0.0F;
    for (std::int64_t j = 0; j < r.H; ++j) {
      s = half_mean ? round_to_format(k_float16, s + x[j]) : s + x[j];
    }
    const float mean = centred ? s / static_cast<float>(r.H) : 0.0F;
    float m2 = 0.0F;
    for (std::int64_t j = 0; j < r.H; ++j) m2 += (x[j] - mean) * (x[j] - mean);
    const float rstd = 1.0F / std::sqrt(m2 / static_cast<float>(r.H) + static_cast<float>(r.p.eps));
    for (std::int64_t j = 0; j < r.H; ++j) {
      const auto k = static_cast<std::size_t>(j);
      const float beta = centred ? r.beta[k] : 0.0F;
      const float xhat = (x[j] - mean) * rstd;
      y[static_cast<std::size_t>(row * r.H + j)] =
          cast_before_weight ? round_to_format(d, r.gamma[k] * round_to_format(d, xhat)) + beta
                             : round_to_format(d, xhat * r.gamma[k] + beta);
    }
  }
  return y;
}

struct tally {
  std::int64_t judged = 0, outside = 0, no_claim = 0;
  double worst = 0;
};

tally judge_dst(const row_problem& r, const std::vector<float>& y, bool llama_bound) {
  row_problem q = r;
  q.p.op.cast_before_weight = llama_bound;
  bn_inputs in;
  in.src = q.x.data();
  in.gamma = q.gamma;
  if (q.p.op.centred) in.beta = q.beta;
  const reference ref(q.p, bn_mode::forward_training, in);
  const error_model model(ref, in, data_tier::general);
  tally t;
  for (std::int64_t i = 0; i < ref.output_size(output_id::dst); ++i) {
    const double b = model.bound(output_id::dst, i, accuracy_level::strict);
    if (!std::isfinite(b)) {
      ++t.no_claim;
      continue;
    }
    const golden g = ref.round(output_id::dst, i);
    const double err =
        std::fabs(error_ulps(y[static_cast<std::size_t>(i)], g)) * std::ldexp(1.0, g.ulp_exp);
    ++t.judged;
    if (err > b) ++t.outside;
    t.worst = std::max(t.worst, err / b);
  }
  return t;
}

TEST(HalfErrorModel, AFloat32PipelineRoundedOnceToTheFormatIsWithinTheBound) {
  for (const data_types types :
       {data_types{format_id::float16, format_id::float32, format_id::float32},
        data_types{format_id::bfloat16, format_id::bfloat16, format_id::float32},
        data_types{format_id::float16, format_id::float16, format_id::float16}}) {
    for (const op_desc op : {layer_norm_op(), rms_norm_op()}) {
      const row_problem r = rows_of(op, types, 16, 512, 3.0, 11);
      const tally t = judge_dst(r, forward(r, false), false);
      EXPECT_EQ(t.outside, 0) << describe(op) << " " << describe(types) << " worst " << t.worst;
      EXPECT_EQ(t.judged, 16 * 512);
      // Not needlessly loose either: the final rounding alone reaches a good part of it.
      EXPECT_GT(t.worst, 0.25) << describe(op) << " " << describe(types);
    }
  }
}

TEST(HalfErrorModel, CastBeforeTheWeightNeedsItsOwnBound) {
  const data_types bf16{format_id::bfloat16, format_id::bfloat16, format_id::float32};
  const row_problem r = rows_of(rms_norm_op(), bf16, 16, 1024, 0.0, 21);
  const std::vector<float> llama = forward(r, true);
  // Judged as one rounding at the end (Gemma's convention) the second rounding shows...
  const tally as_gemma = judge_dst(r, llama, false);
  EXPECT_GT(as_gemma.outside, 100) << "worst " << as_gemma.worst;
  // ...and under its own convention every element is within its bound.
  const tally as_llama = judge_dst(r, llama, true);
  EXPECT_EQ(as_llama.outside, 0) << "worst " << as_llama.worst;
  // One rounding at the end also meets the Llama bound (it is the looser one).
  EXPECT_EQ(judge_dst(r, forward(r, false), true).outside, 0);
}

TEST(HalfErrorModel, AMeanAccumulatedInFloat16FallsOutsideTheBound) {
  const data_types f16{format_id::float16, format_id::float32, format_id::float32};
  const row_problem r = rows_of(layer_norm_op(), f16, 8, 2048, 40.0, 31);
  const tally t = judge_dst(r, forward(r, false, true), false);
  EXPECT_GT(t.outside, 0) << "worst " << t.worst;
}

TEST(HalfErrorModel, NoClaimOnlyWhereTheResultMayRoundEitherSideOfFloat16Overflow) {
  // y = γ·x̂ + β with x̂ = ±1 exactly (two values per row) and β near the rounding threshold.
  bn_problem p;
  p.n = 3;
  p.c = 2;
  p.mem_layout = layout::nc;
  p.eps = 0;
  p.op = layer_norm_op();
  p.types = {format_id::float16, format_id::float32, format_id::float32};
  const std::vector<float> x{-1, 1, -1, 1, -1, 1};
  const std::vector<float> gamma{1, 1};
  for (const float beta : {65518.0F, 65519.0F, 65600.0F, 60000.0F}) {
    const std::vector<float> b{beta, beta};
    bn_inputs in;
    in.src = x.data();
    in.gamma = gamma;
    in.beta = b;
    const reference ref(p, bn_mode::forward_training, in);
    const error_model model(ref, in, data_tier::general);
    // Element 1: y = β + 1.
    const double bound = model.bound(output_id::dst, 1, accuracy_level::strict);
    const golden g = ref.round(output_id::dst, 1);
    if (beta == 65519.0F) {
      // 65520 is the threshold itself: the float32 result may land on either side.
      EXPECT_TRUE(std::isinf(bound));
    } else if (beta == 65600.0F) {
      EXPECT_TRUE(std::isfinite(bound));
      EXPECT_EQ(g.cls, golden_class::overflow);
      EXPECT_EQ(error_ulps(std::numeric_limits<float>::infinity(), g), 0.0);
    } else {
      EXPECT_TRUE(std::isfinite(bound)) << beta;
      EXPECT_EQ(g.cls, golden_class::finite);
    }
  }
}

}  // namespace
