// The reference's certified fast path (fast_path.hpp, double_word.hpp): each building block is
// checked against exact rational arithmetic, and the goldens it produces against the exact path
// (reference::set_fast_path(false)) on the whole default catalog — every op, mode, layout and
// data-type configuration, three seeds — and on adversarial problems made to land on rounding
// boundaries. The value, class, ulp exponent and format must agree bit for bit, the residual
// within the 2^-40 ulp accuracy both paths state (exact.hpp).
#include "bnoracle/catalog.hpp"
#include "bnoracle/double_word.hpp"
#include "bnoracle/fast_path.hpp"
#include "bnoracle/reference.hpp"
#include "test_env.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace bnoracle;

rational exact(double v) {
  return to_rational(v);
}
rational exact(dw::dword x) {
  return to_rational(x.hi) + to_rational(x.lo);
}
rational abs_of(const rational& q) {
  return q < 0 ? rational(-q) : q;
}

// A double word with |lo| <= ulp(hi)/2, spread over a wide exponent range, with a random sign.
dw::dword random_dword(std::mt19937_64& rng, int exp_lo, int exp_hi) {
  std::uniform_real_distribution<double> unit(1.0, 2.0);
  std::uniform_int_distribution<int> exp(exp_lo, exp_hi);
  std::bernoulli_distribution sign(0.5);
  const double a = std::ldexp(unit(rng), exp(rng)) * (sign(rng) ? -1.0 : 1.0);
  const double b = std::ldexp(unit(rng), exp(rng) - 60) * (sign(rng) ? -1.0 : 1.0);
  return dw::two_sum(a, b);
}

// |computed − exact| <= k_op_error·|exact| for one operation.
::testing::AssertionResult within_op_bound(dw::dword computed, const rational& truth) {
  const rational err = abs_of(exact(computed) - truth);
  const rational bound = abs_of(truth) * to_rational(dw::k_op_error);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "error " << to_hp(err) << " above " << to_hp(bound);
}

TEST(DoubleWord, EachOperationIsWithinItsStatedRelativeError) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const dw::dword x = random_dword(rng, -40, 40);
    dw::dword y = random_dword(rng, -40, 40);
    // One case in four makes y nearly −x: the sums then cancel.
    if (i % 4 == 0) y = dw::add(dw::neg(x), std::ldexp(x.hi, -30 - i % 50));
    const double d = y.hi;
    ASSERT_TRUE(within_op_bound(dw::add(x, d), exact(x) + exact(d))) << i;
    ASSERT_TRUE(within_op_bound(dw::add(x, y), exact(x) + exact(y))) << i;
    ASSERT_TRUE(within_op_bound(dw::mul(x, d), exact(x) * exact(d))) << i;
    ASSERT_TRUE(within_op_bound(dw::mul(x, y), exact(x) * exact(y))) << i;
    const dw::dword p = dw::two_prod(x.hi, d);
    ASSERT_EQ(exact(p), exact(x.hi) * exact(d)) << "TwoProd is exact";
  }
}

TEST(DoubleWord, AFusedMultiplyAddWouldBreakTwoProdAndIsNotFormed) {
  // With a contracted a*b − p, the low part of TwoProd would be computed from a product rounded
  // differently; this pair exposes it (the exact low part is 2^-104 here).
  const double a = 1.0 + 0x1p-52;
  const double b = 1.0 + 0x1p-52;
  const dw::dword p = dw::two_prod(a, b);
  EXPECT_EQ(exact(p), exact(a) * exact(b));
  EXPECT_EQ(p.lo, 0x1p-104);
}

TEST(FastPath, ConstantsEncloseTheirExactValues) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> bits(1, 300);
  int converted = 0;
  for (int i = 0; i < 3000; ++i) {
    big_int num = 0;
    big_int den = 0;
    const int nb = bits(rng);
    const int db = bits(rng);
    for (int k = 0; k < nb; k += 64) num = (num << 64) + big_int(rng());
    for (int k = 0; k < db; k += 64) den = (den << 64) + big_int(rng());
    num >>= static_cast<unsigned>((nb + 63) / 64 * 64 - nb);
    den >>= static_cast<unsigned>((db + 63) / 64 * 64 - db);
    if (den == 0 || num == 0) continue;
    if (i % 2 == 1) num = -num;
    const std::int64_t e = static_cast<std::int64_t>(rng() % 400) - 200;
    const rational q = rational(num, den) * (e >= 0 ? rational(pow2(e)) : rational(1, pow2(-e)));
    const std::optional<fast::approx> a = fast::approx_of(num, den, e);
    // Declined only beyond 2^±400 (the magnitude is 2^(s ± 1)).
    const std::int64_t s = bit_length(num) - bit_length(den) + e;
    if (!a) {
      ASSERT_GT(std::abs(s), 398) << i;
      continue;
    }
    ASSERT_LE(abs_of(exact(a->v) - q), to_rational(a->err)) << i;
    ASSERT_LE(to_rational(a->err), abs_of(q) * to_rational(0x1p-104)) << "tight, " << i;
    // 1/sqrt(w) for w = |q|: (v ± err)² bracket 1/w.
    const rational w = abs_of(q);
    const std::optional<fast::approx> r = fast::approx_rsqrt(w);
    if (!r) continue;
    const rational lo = exact(r->v) - to_rational(r->err);
    const rational hi = exact(r->v) + to_rational(r->err);
    ASSERT_LE(lo * lo * w, rational(1)) << i;
    ASSERT_GE(hi * hi * w, rational(1)) << i;
    ASSERT_LE(to_rational(r->err), exact(r->v) * to_rational(0x1p-104)) << "tight, " << i;
    ++converted;
  }
  EXPECT_GT(converted, 1500);
  // Beyond 2^±400 the fast path declines (its operations must stay far from overflow).
  EXPECT_FALSE(fast::approx_of(big_int(1), big_int(1), 500).has_value());
  EXPECT_FALSE(fast::approx_of(big_int(1), big_int(1), -500).has_value());
  EXPECT_TRUE(fast::approx_of(big_int(0), big_int(1), 0).has_value());
}

TEST(FastPath, CertifiedRoundingsAreTheExactRoundings) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> unit(1.0, 2.0);
  int certified = 0;
  int declined = 0;
  for (const float_format* f : {&k_float32, &k_float16, &k_bfloat16}) {
    for (int i = 0; i < 20000; ++i) {
      // Near a representable value or near a midpoint of the format, at distances from 2^-60
      // to 1 ulp, or anywhere.
      const int e =
          f->emin - 2 + static_cast<int>(rng() % static_cast<unsigned>(f->emax - f->emin + 4));
      const double ulp = std::ldexp(1.0, e - f->precision + 1);
      const double base = std::nearbyint(std::ldexp(unit(rng), f->precision - 1)) * ulp;
      const double at = i % 3 == 0 ? base : base + 0.5 * ulp;
      const double delta = std::ldexp(unit(rng), -static_cast<int>(rng() % 60)) * ulp *
                           (rng() % 2 == 0 ? 1.0 : -1.0);
      dw::dword y = dw::two_sum(at, i % 5 == 0 ? 0.0 : delta * 0x1p-30);
      if (i % 7 == 0) y = dw::two_sum(at, delta);
      if (i % 2 == 1) y = dw::neg(y);
      const double err =
          i % 4 == 0 ? 0.0 : std::fabs(delta) * 0x1p-31 * static_cast<double>(rng() % 3);
      const std::optional<golden> g = fast::certify(y, err, *f);
      const rational value = exact(y);
      if (!g) {
        ++declined;
        continue;
      }
      ++certified;
      // Every value of [y − err, y + err] rounds to the certified one, with ulp and residual.
      for (const rational& v : {value, value - to_rational(err), value + to_rational(err)}) {
        const golden r = round_to(*f, v);
        ASSERT_EQ(std::bit_cast<std::uint32_t>(r.value), std::bit_cast<std::uint32_t>(g->value))
            << f->name << " " << i;
        ASSERT_EQ(r.ulp_exp, g->ulp_exp) << f->name << " " << i;
        ASSERT_EQ(r.cls, golden_class::finite);
      }
      const golden r = round_to(*f, value);
      ASSERT_LE(std::fabs(r.residual - g->residual), 0x1p-40) << f->name << " " << i;
      ASSERT_EQ(g->format, f->id);
    }
  }
  EXPECT_GT(certified, 20000);
  EXPECT_GT(declined, 5000) << "midpoints, powers of two and ranges must decline";
  // Exactly on a midpoint, a power of two, zero, or beyond the range: declined.
  EXPECT_FALSE(fast::certify({1.0 + 0x1p-24, 0.0}, 0.0, k_float32).has_value());
  EXPECT_FALSE(fast::certify({1.0, 0.0}, 0.0, k_float32).has_value());
  EXPECT_FALSE(fast::certify({0.0, 0.0}, 0.0, k_float32).has_value());
  EXPECT_FALSE(fast::certify({70000.0, 0.0}, 0.0, k_float16).has_value());
  EXPECT_FALSE(fast::certify({1e-40, 0.0}, 0.0, k_float32).has_value());
  EXPECT_TRUE(fast::certify({1.5 + 0x1p-30, 0.0}, 0.0, k_float32).has_value());
  // An interval that reaches a midpoint is declined however close its centre is to a float.
  EXPECT_FALSE(fast::certify({1.5 + 0x1p-25, 0.0}, 0x1p-24, k_float32).has_value());
}

// Inputs of mode m for a case's data, as the runner gives them.
bn_inputs inputs_of(const case_spec& spec, const case_data& d, bn_mode m) {
  bn_inputs in;
  in.src = d.src.data();
  in.diff_dst = d.diff_dst.data();
  if (spec.affine && spec.problem.op.params != param_placement::none) {
    in.gamma = d.gamma;
    in.beta = d.beta;
  }
  const bool training = m == bn_mode::forward_training || m == bn_mode::backward_training;
  if (!training) {
    in.running_mean = d.running_mean;
    in.running_var = d.running_var;
  }
  in.num_batches_tracked = d.num_batches_tracked;
  return in;
}

struct agreement {
  std::int64_t compared = 0;
  std::int64_t certified = 0;
  std::int64_t fallbacks = 0;
};

// The goldens of every per-element output of (spec, types), fast against exact.
void expect_same_goldens(const case_spec& base, const data_types& types, agreement& total) {
  case_spec spec = base;
  spec.problem.types = types;
  const case_data d = make_case_data(spec, 0);
  for (const bn_mode m : {bn_mode::forward_training, bn_mode::forward_inference,
                          bn_mode::backward_training, bn_mode::backward_inference}) {
    if (!has_mode(spec.problem.op, m)) continue;
    const bn_inputs in = inputs_of(spec, d, m);
    std::optional<reference> fast_ref;
    try {
      fast_ref.emplace(spec.problem, m, in);
    } catch (const invalid_problem&) {
      continue;  // e.g. inference of an op without running statistics
    }
    reference exact_ref(spec.problem, m, in);
    exact_ref.set_fast_path(false);
    for (const output_id id : fast_ref->outputs()) {
      if (!per_element(id)) continue;
      const std::vector<golden> a = fast_ref->goldens(id);
      const std::vector<golden> b = exact_ref.goldens(id);
      ASSERT_EQ(a.size(), b.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        const std::string where = spec.name + " " + describe(types) + " " +
                                  std::string(to_string(m)) + " " + std::string(to_string(id)) +
                                  "[" + std::to_string(i) + "]";
        ASSERT_EQ(a[i].cls, b[i].cls) << where;
        ASSERT_EQ(std::bit_cast<std::uint32_t>(a[i].value),
                  std::bit_cast<std::uint32_t>(b[i].value))
            << where;
        if (a[i].cls != golden_class::finite) continue;
        ASSERT_EQ(a[i].ulp_exp, b[i].ulp_exp) << where;
        ASSERT_EQ(a[i].format, b[i].format) << where;
        // Each residual is within 2^-40 ulp of the exact one.
        ASSERT_LE(std::fabs(a[i].residual - b[i].residual), 0x1p-39) << where;
      }
      total.compared += static_cast<std::int64_t>(a.size());
    }
    total.certified += fast_ref->evaluations().certified;
    total.fallbacks += fast_ref->evaluations().exact;
    EXPECT_EQ(exact_ref.evaluations().certified, 0) << "the exact path was asked for";
  }
}

// CI's sanitizer pass samples (BNORACLE_PROPERTY_CASES below 100): one seed of the catalog and
// every fourth case in the other configurations, where the exact path runs ten times slower.
bool sampled() {
  return testing_env::property_cases() < 100;
}

TEST(FastPath, AgreesWithTheExactPathOnTheWholeCatalog) {
  agreement total;
  const std::vector<std::uint64_t> seeds =
      sampled() ? std::vector<std::uint64_t>{1} : std::vector<std::uint64_t>{1, 2, 3};
  for (const std::uint64_t seed : seeds) {
    for (const case_spec& spec : default_catalog(seed)) {
      expect_same_goldens(spec, data_types{}, total);
      if (HasFatalFailure()) return;
    }
  }
  std::cout << total.compared << " goldens compared, " << total.certified << " certified, "
            << total.fallbacks << " from the exact path\n";
  EXPECT_GT(total.certified, total.compared / 2);
  EXPECT_GT(total.fallbacks, 0) << "the catalog has constant channels and special values";
}

TEST(FastPath, AgreesWithTheExactPathInEveryDataTypeConfiguration) {
  agreement total;
  for (const named_types& t : named_data_types()) {
    const std::vector<case_spec> cases = default_catalog(4);
    for (std::size_t i = 0; i < cases.size(); i += sampled() ? 4U : 1U) {
      const case_spec& spec = cases[i];
      expect_same_goldens(spec, t.types, total);
      if (HasFatalFailure()) return;
    }
  }
  std::cout << total.compared << " goldens compared, " << total.certified << " certified, "
            << total.fallbacks << " from the exact path\n";
  EXPECT_GT(total.certified, total.compared / 2);
}

// Problems whose exact outputs sit on or next to rounding boundaries: channels of a few values
// whose normalized values are exact (x̂ = ±1 with ε = 0), offsets of 2^k, and a variance that is
// a perfect square, so that many outputs are exactly representable or exact midpoints. The fast
// path must decline every one it cannot decide and agree on the rest.
TEST(FastPath, AgreesOnProblemsMadeToLandOnRoundingBoundaries) {
  agreement total;
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    case_spec spec;
    spec.name = "boundary/" + std::to_string(trial);
    spec.problem.n = 2 + trial % 3;
    spec.problem.c = 3;
    spec.problem.spatial = {1 + trial % 4, 2};
    spec.problem.eps = trial % 2 == 0 ? 0.0 : std::ldexp(1.0, -2 * (trial % 7));
    switch (trial % 4) {
      case 0:
        spec.problem.op = layer_norm_op(2);
        break;
      case 1:
        spec.problem.op = rms_norm_op(1);
        spec.problem.op.weight_offset = trial % 8 == 1;  // Gemma's (1 + w)
        break;
      case 2:
        spec.problem.op = group_norm_op(3);
        break;
      default:
        spec.problem.op = batch_norm_op();
        break;
    }
    spec.recipes = {{channel_kind::exact_pairs, std::ldexp(1.0, trial % 9 - 4), 1.0},
                    {channel_kind::constant, 3.0, 0.0},
                    {channel_kind::normal, 0.0, std::ldexp(1.0, -(trial % 30))}};
    spec.seed = rng();
    spec.tier = data_tier::exact;
    expect_same_goldens(spec, data_types{}, total);
    if (HasFatalFailure()) return;
  }
  std::cout << total.compared << " goldens compared, " << total.certified << " certified, "
            << total.fallbacks << " from the exact path\n";
  EXPECT_GT(total.fallbacks, total.compared / 20) << "boundaries must be met";
  EXPECT_GT(total.certified, 0);
}

}  // namespace
