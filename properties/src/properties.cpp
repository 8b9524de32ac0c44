#include "bnoracle/properties.hpp"

#include "bnoracle/catalog.hpp"
#include "bnoracle/generators.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/reduction.hpp"

#include "support.hpp"

#include <rapidcheck.h>
#include <rapidcheck/detail/Configuration.h>
#include <rapidcheck/detail/TestListenerAdapter.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace bnoracle {

namespace {

using namespace property_support;  // NOLINT(google-build-using-namespace)
using rc::detail::CaseResult;

// ---- agreement with the exact reference ------------------------------------------------------

void prop_reference_agreement(const context& c) {
  gen::case_options o = c.cases();
  o.domain = gen::data_domain::any;
  o.shape.min_per_channel = 1;
  const property_case pc = generate(c, o);
  bool any = false;
  std::vector<float> save_mean, save_stat;
  if (c.info.supports(bn_mode::forward_training)) {
    any = true;
    const bool track = c.info.updates_running;
    const exact_side e(pc, bn_mode::forward_training, track);
    const call_result r =
        call(c, request_of(pc, bn_mode::forward_training, track), e.ref().refusal());
    if (!e.ref().refusal().empty()) {
      fail("forward_training: accepted a problem the " + pc.problem.convention +
           " convention rejects: " + e.ref().refusal());
    }
    judge(c, e, "forward_training", "dst", output_id::dst, r.dst);
    if (c.info.saves != BNK_SAVES_NONE) {
      judge(c, e, "forward_training", "save_mean", output_id::mean, r.save_mean);
      const char* stat = c.info.saves == BNK_SAVES_MEAN_INVSTD ? "invstd" : "var";
      judge(c, e, "forward_training", std::string("save_stat(") + stat + ")",
            c.info.saves == BNK_SAVES_MEAN_INVSTD ? output_id::invstd : output_id::var,
            r.save_stat);
      save_mean = r.save_mean;
      save_stat = r.save_stat;
    }
    if (track) {
      judge(c, e, "forward_training", "running_mean", output_id::running_mean, r.running_mean);
      judge(c, e, "forward_training", "running_var", output_id::running_var, r.running_var);
      if (r.num_batches_tracked != e.ref().num_batches_tracked()) {
        fail("forward_training: num_batches_tracked " + std::to_string(r.num_batches_tracked) +
             ", expected " + std::to_string(e.ref().num_batches_tracked()));
      }
    }
  }
  if (c.info.supports(bn_mode::backward_training)) {
    any = true;
    const exact_side e(pc, bn_mode::backward_training, false);
    call_request q = request_of(pc, bn_mode::backward_training, false);
    q.save_mean = save_mean;
    q.save_stat = save_stat;
    const call_result r = call(c, q, e.ref().refusal());
    if (!e.ref().refusal().empty()) {
      fail("backward_training: accepted a problem the " + pc.problem.convention +
           " convention rejects: " + e.ref().refusal());
    }
    judge(c, e, "backward_training", "diff_src", output_id::diff_src, r.diff_src);
    if (pc.affine) {
      judge(c, e, "backward_training", "diff_gamma", output_id::diff_gamma, r.diff_gamma);
      judge(c, e, "backward_training", "diff_beta", output_id::diff_beta, r.diff_beta);
    }
  }
  // Forward inference is element-wise: any float32 may appear, up to FLT_MAX (the reference's
  // IEEE rules decide overflow and NaN propagation). Backward inference reduces Σdy·x̂ and Σdy,
  // so it keeps to the batch's domain (an overflowing intermediate sum is outside the model).
  property_case pi = pc;
  for (float& x : pi.src) {
    if (*rc::gen::inRange(0, 8) == 0) x = *gen::any_float32();
  }
  {
    std::ostringstream os;
    showValue(pi, os);
    c.last_case =
        c.last_case + "\nand for forward inference, with special values in src:\n" + os.str();
  }
  for (const bn_mode m : {bn_mode::forward_inference, bn_mode::backward_inference}) {
    if (!c.info.supports(m)) continue;
    any = true;
    const property_case& data = m == bn_mode::forward_inference ? pi : pc;
    const exact_side e(data, m, false);
    const call_result r = call(c, request_of(data, m, false), e.ref().refusal());
    const std::string label(to_string(m));
    if (m == bn_mode::forward_inference) {
      judge(c, e, label, "dst", output_id::dst, r.dst);
    } else {
      judge(c, e, label, "diff_src", output_id::diff_src, r.diff_src);
      if (data.affine) {
        judge(c, e, label, "diff_gamma", output_id::diff_gamma, r.diff_gamma);
        judge(c, e, label, "diff_beta", output_id::diff_beta, r.diff_beta);
      }
    }
  }
  if (!any) discard("the kernel provides no mode");
}

// ---- bias invariance -------------------------------------------------------------------------

// The largest power of two dividing every value of channel c, and max |x| in units of it.
std::pair<double, double> channel_grid(const property_case& pc, std::int64_t ch) {
  const geometry g(pc.problem);
  std::vector<std::int64_t> members;
  g.for_each_in_channel(ch, [&members](std::int64_t, std::int64_t li) { members.push_back(li); });
  return grid_of(pc.src, members);
}

void prop_bias_invariance(const context& c) {
  gen::case_options o = c.cases();
  o.grid_bits = 12;
  const property_case pc = generate(c, o);
  const geometry g(pc.problem);
  // Per channel a constant shift c = k·q with |m + k| < 2^24 for every element m·q: exact.
  property_case shifted = pc;
  std::vector<double> shift(static_cast<std::size_t>(g.c()));
  for (std::int64_t ch = 0; ch < g.c(); ++ch) {
    const auto [q, m] = channel_grid(pc, ch);
    const double room = 0x1p24 - 1 - m;
    const int down = *rc::gen::inRange(0, 12);
    double k = std::floor(room * std::ldexp(1.0, -down));
    if (*rc::gen::arbitrary<bool>()) k = -k;
    shift[static_cast<std::size_t>(ch)] = k * q;
    for (std::int64_t n = 0; n < g.n(); ++n) {
      for (std::int64_t s = 0; s < g.spatial_size(); ++s) {
        auto& x = shifted.src[static_cast<std::size_t>(g.logical_index(n, ch, s))];
        const double v = static_cast<double>(x) + k * q;
        x = static_cast<float>(v);
        if (static_cast<double>(x) != v) fail("internal: inexact shift");  // cannot happen
      }
    }
  }
  const auto lvl = c.opt.level;
  const exact_side e1(pc, bn_mode::forward_training, false);
  const exact_side e2(shifted, bn_mode::forward_training, false);
  if (!e1.ref().refusal().empty()) discard("refused problem");
  const fwd_bwd r1 = forward_backward(c, pc);
  const fwd_bwd r2 = forward_backward(c, shifted);
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    expect_close(c, where(g, "dst", i) + " with a per-channel constant added to x", r1.fwd.dst[u],
                 r2.fwd.dst[u],
                 e1.bound(output_id::dst, i, lvl) + e2.bound(output_id::dst, i, lvl));
  }
  if (c.info.saves == BNK_SAVES_MEAN_INVSTD) {
    for (std::int64_t ch = 0; ch < g.c(); ++ch) {
      const auto u = static_cast<std::size_t>(ch);
      expect_close(c, "save_stat(invstd)[c=" + std::to_string(ch) + "] after the shift",
                   r1.fwd.save_stat[u], r2.fwd.save_stat[u],
                   e1.bound(output_id::invstd, ch, lvl) + e2.bound(output_id::invstd, ch, lvl));
    }
  }
  const exact_side b1(pc, bn_mode::backward_training, false);
  const exact_side b2(shifted, bn_mode::backward_training, false);
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    expect_close(c, where(g, "diff_src", i) + " with a per-channel constant added to x",
                 r1.bwd.diff_src[u], r2.bwd.diff_src[u],
                 b1.bound(output_id::diff_src, i, lvl) + b2.bound(output_id::diff_src, i, lvl));
  }
  if (pc.affine) {
    for (std::int64_t ch = 0; ch < g.c(); ++ch) {
      const auto u = static_cast<std::size_t>(ch);
      expect_close(
          c, "diff_gamma[c=" + std::to_string(ch) + "] after the shift", r1.bwd.diff_gamma[u],
          r2.bwd.diff_gamma[u],
          b1.bound(output_id::diff_gamma, ch, lvl) + b2.bound(output_id::diff_gamma, ch, lvl));
    }
  }
}

// ---- γ = sqrt(σ² + ε), β = μ recovers x -----------------------------------------------------

void prop_recovery(const context& c) {
  c.require(bn_mode::forward_training);
  property_case pc = generate(c, c.cases());
  const geometry g(pc.problem);
  const exact_side stats(pc, bn_mode::forward_training, false);
  if (!stats.ref().refusal().empty()) discard("refused problem");
  pc.affine = true;
  std::vector<double> mu(static_cast<std::size_t>(g.c())), delta(mu.size()), dbeta(mu.size());
  for (std::int64_t ch = 0; ch < g.c(); ++ch) {
    const auto u = static_cast<std::size_t>(ch);
    mu[u] = stats.mean(ch);
    const double w = stats.var(ch) + pc.problem.eps;
    const auto gamma = static_cast<float>(std::sqrt(w));
    const auto beta = static_cast<float>(mu[u]);
    if (!(w > 0) || !std::isfinite(gamma) || !std::isfinite(beta)) discard("degenerate channel");
    pc.gamma[u] = gamma;
    pc.beta[u] = beta;
    // γ·r − 1 and β − μ, from double approximations of the exact statistics: each carries at
    // most a few double roundings (budget "double_evaluation").
    const double slack = budgets::double_evaluation.value * k_u53;
    delta[u] = std::fabs(static_cast<double>(gamma) / std::sqrt(w) - 1) + slack;
    dbeta[u] = std::fabs(static_cast<double>(beta) - mu[u]) + slack * std::fabs(mu[u]);
  }
  const exact_side e(pc, bn_mode::forward_training, false);
  const call_result r = call(c, request_of(pc, bn_mode::forward_training, false));
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    const std::int64_t ch = g.coordinates_of(i).c;
    const auto cu = static_cast<std::size_t>(ch);
    const double x = static_cast<double>(pc.src[u]);
    const double tol =
        e.bound(output_id::dst, i, c.opt.level) + std::fabs(x - mu[cu]) * delta[cu] + dbeta[cu];
    if (std::isinf(tol)) continue;
    const double d = std::fabs(static_cast<double>(r.dst[u]) - x);
    if (!(d <= tol)) {
      std::ostringstream os;
      os << where(g, "dst", i) << " with gamma = sqrt(var + eps) = " << hex_float(pc.gamma[cu])
         << ", beta = mean = " << hex_float(pc.beta[cu]) << ": y = " << hex_float(r.dst[u])
         << " but x = " << hex_float(pc.src[u]) << ", differ by " << d << " > " << tol;
      fail(os.str());
    }
  }
}

// ---- Σdx = 0, Σdx·x̂ = 0; dβ = Σdy, dγ = Σdy·x̂ ------------------------------------------------

struct channel_sums {
  double sum = 0, sum_abs = 0;
};

// Σdx = 0 exactly. Σdx·x̂ = γ·r·L·m2·(1 − Σx̂²/L) = γ·r·(ε/(σ² + ε))·Σdy·x̂, which is 0 only for
// ε = 0 (docs/properties.md): the property checks that identity, with x̂ from the exact
// statistics evaluated in double.
void prop_gradient_sums(const context& c) {
  const property_case pc = generate(c, c.cases());
  const geometry g(pc.problem);
  const exact_side stats(pc, bn_mode::backward_training, false);
  if (!stats.ref().refusal().empty()) discard("refused problem");
  const fwd_bwd r = forward_backward(c, pc);
  const auto lvl = c.opt.level;
  const double dbl = budgets::double_evaluation.value;
  for (std::int64_t ch = 0; ch < g.c(); ++ch) {
    const double mu = stats.mean(ch);
    const double var = stats.var(ch);
    const double eps = pc.problem.eps;
    const double rr = 1 / std::sqrt(var + eps);
    if (!std::isfinite(mu) || !std::isfinite(rr)) continue;
    const double gamma =
        pc.affine ? static_cast<double>(pc.gamma[static_cast<std::size_t>(ch)]) : 1.0;
    double s1 = 0, s1_abs = 0, tol1 = 0;
    double s2 = 0, s2_abs = 0, tol2 = 0;
    double sdy = 0, sdy_abs = 0;
    const double L = static_cast<double>(g.per_channel());
    bool bounded = true;
    for (std::int64_t n = 0; n < g.n(); ++n) {
      for (std::int64_t s = 0; s < g.spatial_size(); ++s) {
        const std::int64_t i = g.logical_index(n, ch, s);
        const auto u = static_cast<std::size_t>(i);
        const double dx = static_cast<double>(r.bwd.diff_src[u]);
        const double dy = static_cast<double>(pc.diff_dst[u]);
        const double x = static_cast<double>(pc.src[u]);
        const double xhat = (x - mu) * rr;
        const double xhat_err = (std::fabs(x) + std::fabs(mu)) * rr;  // scale of x̂'s error
        const double b = stats.bound(output_id::diff_src, i, lvl);
        if (std::isinf(b)) bounded = false;
        s1 += dx;
        s1_abs += std::fabs(dx);
        tol1 += b;
        s2 += dx * xhat;
        s2_abs += std::fabs(dx) * (std::fabs(xhat) + xhat_err);
        tol2 += b * std::fabs(xhat);
        sdy += dy * xhat;
        sdy_abs += std::fabs(dy) * (std::fabs(xhat) + xhat_err);
      }
    }
    if (!bounded) continue;
    const double k = std::fabs(gamma) * rr * eps / (var + eps);
    const double expected = gamma * rr * (eps / (var + eps)) * sdy;
    const std::string cs = "[c=" + std::to_string(ch) + "]";
    expect_zero("sum of diff_src" + cs, s1, tol1 + (L + dbl) * k_u53 * s1_abs, level_name(c));
    expect_zero("sum of diff_src*xhat - gamma*r*eps/(var + eps)*sum(dy*xhat)" + cs, s2 - expected,
                tol2 + (L + dbl) * k_u53 * (s2_abs + 2 * k * sdy_abs), level_name(c));
  }
}

void prop_parameter_gradients(const context& c) {
  property_case pc = generate(c, c.cases());
  pc.affine = true;
  const geometry g(pc.problem);
  const auto lvl = c.opt.level;
  const double dbl = budgets::double_evaluation.value;
  bool any = false;
  for (const bn_mode m : {bn_mode::backward_training, bn_mode::backward_inference}) {
    if (!c.info.supports(m)) continue;
    any = true;
    const exact_side e(pc, m, false);
    if (!e.ref().refusal().empty()) discard("refused problem");
    call_result r;
    if (m == bn_mode::backward_training) {
      r = forward_backward(c, pc).bwd;
    } else {
      r = call(c, request_of(pc, m, false));
    }
    const std::string label(to_string(m));
    for (std::int64_t ch = 0; ch < g.c(); ++ch) {
      const auto cu = static_cast<std::size_t>(ch);
      const double mu = e.mean(ch);
      const double rr = 1 / std::sqrt(e.var(ch) + pc.problem.eps);
      double sdy = 0, sdy_abs = 0, sdx = 0, sdx_abs = 0;
      const double L = static_cast<double>(g.per_channel());
      for (std::int64_t n = 0; n < g.n(); ++n) {
        for (std::int64_t s = 0; s < g.spatial_size(); ++s) {
          const auto u = static_cast<std::size_t>(g.logical_index(n, ch, s));
          const double dy = static_cast<double>(pc.diff_dst[u]);
          const double x = static_cast<double>(pc.src[u]);
          const double xhat = (x - mu) * rr;
          sdy += dy;
          sdy_abs += std::fabs(dy);
          sdx += dy * xhat;
          sdx_abs += std::fabs(dy) * (std::fabs(xhat) + (std::fabs(x) + std::fabs(mu)) * rr);
        }
      }
      const std::string cs = "[c=" + std::to_string(ch) + "]";
      const double tb = e.bound(output_id::diff_beta, ch, lvl) + (L + dbl) * k_u53 * sdy_abs;
      const double db = static_cast<double>(r.diff_beta[cu]) - sdy;
      if (!(std::fabs(db) <= tb)) {
        std::ostringstream os;
        os << label << ": diff_beta" << cs << " = " << hex_float(r.diff_beta[cu])
           << " but sum(dy) = " << sdy << ", differ by " << std::fabs(db) << " > " << tb;
        fail(os.str());
      }
      const double tg = e.bound(output_id::diff_gamma, ch, lvl);
      if (std::isinf(tg) || !std::isfinite(mu) || !std::isfinite(rr)) continue;
      const double dg = static_cast<double>(r.diff_gamma[cu]) - sdx;
      const double tgt = tg + (L + dbl) * k_u53 * sdx_abs;
      if (!(std::fabs(dg) <= tgt)) {
        std::ostringstream os;
        os << label << ": diff_gamma" << cs << " = " << hex_float(r.diff_gamma[cu])
           << " but sum(dy*xhat) = " << sdx << ", differ by " << std::fabs(dg) << " > " << tgt;
        fail(os.str());
      }
    }
  }
  if (!any) discard("the kernel provides no backward mode");
}

// ---- eval-mode determinism -------------------------------------------------------------------

void prop_eval_determinism(const context& c) {
  c.require(bn_mode::forward_inference);
  gen::case_options o = c.cases();
  o.domain = gen::data_domain::any;
  const property_case pc = generate(c, o);
  const geometry g(pc.problem);
  const exact_side e(pc, bn_mode::forward_inference, false);
  const call_result r1 = call(c, request_of(pc, bn_mode::forward_inference, false));
  // Repetition: bit-identical.
  const call_result r2 = call(c, request_of(pc, bn_mode::forward_inference, false));
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    if (!bit_equal(r1.dst[u], r2.dst[u])) {
      fail(where(g, "dst", i) + " changed when the same call was repeated: " +
           hex_float(r1.dst[u]) + " then " + hex_float(r2.dst[u]));
    }
  }
  // Other batchmates: example j alone or among other examples (copies of the batch's examples,
  // scaled by −3), at another position. Eval mode must not look at them.
  const std::int64_t j = *rc::gen::inRange<std::int64_t>(0, g.n());
  const std::int64_t n2 = *rc::gen::inRange<std::int64_t>(1, g.n() + 3);
  const std::int64_t pos = *rc::gen::inRange<std::int64_t>(0, n2);
  property_case other = pc;
  other.problem.n = n2;
  if (other.problem.mem_layout == layout::strided) {  // keep the view dense: same dim order
    other.problem.mem_layout = dense_layout(other.problem.spatial.size());
    other.problem.strides.clear();
  }
  const geometry g2(other.problem);
  const std::int64_t per_example = g.c() * g.spatial_size();
  other.src.assign(static_cast<std::size_t>(g2.elements()), 0.0F);
  for (std::int64_t n = 0; n < n2; ++n) {
    const std::int64_t from = n == pos ? j : (j + n + 1) % g.n();
    for (std::int64_t k = 0; k < per_example; ++k) {
      const float v = pc.src[static_cast<std::size_t>(from * per_example + k)];
      other.src[static_cast<std::size_t>(n * per_example + k)] = n == pos ? v : -3.0F * v;
    }
  }
  other.diff_dst = other.src;
  const call_result r3 = call(c, request_of(other, bn_mode::forward_inference, false));
  for (std::int64_t k = 0; k < per_example; ++k) {
    const std::int64_t i = j * per_example + k;
    const float a = r1.dst[static_cast<std::size_t>(i)];
    const float b = r3.dst[static_cast<std::size_t>(pos * per_example + k)];
    const std::string what = where(g, "dst", i) + " in a batch of " + std::to_string(n2) +
                             " with other examples (at n=" + std::to_string(pos) + ")";
    if (!std::isfinite(a) || !std::isfinite(b)) {
      if (!same_value(a, b)) fail(what + ": " + hex_float(a) + " vs " + hex_float(b));
      continue;
    }
    expect_close(c, what, a, b, 2 * e.bound(output_id::dst, i, c.opt.level));
  }
}

// ---- run-to-run reproducibility ---------------------------------------------------------------

void reproducibility(const context& c, const gen::case_options& o) {
  const property_case pc = generate(c, o);
  bool any = false;
  for (const bn_mode m : {bn_mode::forward_training, bn_mode::forward_inference,
                          bn_mode::backward_training, bn_mode::backward_inference}) {
    if (!c.info.supports(m) || !has_mode(pc.problem.op, m)) continue;
    any = true;
    call_request q = request_of(pc, m, c.info.updates_running);
    // A training pass the convention refuses discards the case once the kernel refuses it.
    const bool trains = m == bn_mode::forward_training || m == bn_mode::backward_training;
    const std::string refusal = trains ? training_refusal(pc.problem) : std::string();
    if (m == bn_mode::backward_training && c.info.saves != BNK_SAVES_NONE &&
        c.info.supports(bn_mode::forward_training)) {
      const call_result f = call(c, request_of(pc, bn_mode::forward_training, false), refusal);
      q.save_mean = f.save_mean;
      q.save_stat = f.save_stat;
    }
    const call_result a = call(c, q, refusal);
    const call_result b = call(c, q, refusal);
    expect_same_call(m, a, b);
  }
  if (!any) discard("the kernel provides no mode");
}

// ---- running statistics follow the claimed convention ---------------------------------------

void prop_momentum_convention(const context& c) {
  c.require(bn_mode::forward_training);
  if (!c.info.updates_running) discard("the kernel keeps no running statistics");
  property_case pc = generate(c, c.cases());
  const geometry g(pc.problem);
  const int steps = *rc::gen::inRange(2, 5);
  for (int t = 0; t < steps; ++t) {
    property_case step = pc;
    if (t > 0) {  // new data each step: the batch rotated by 7t elements across channels
      const auto E = step.src.size();
      for (std::size_t i = 0; i < E; ++i)
        step.src[i] = pc.src[(i + 7 * static_cast<std::size_t>(t)) % E];
    }
    const exact_side e(step, bn_mode::forward_training, true);
    if (!e.ref().refusal().empty()) discard("refused problem");
    const call_result r = call(c, request_of(step, bn_mode::forward_training, true));
    const std::string label =
        "step " + std::to_string(t + 1) + " of " + std::to_string(steps) + " (momentum " +
        (pc.problem.momentum ? std::to_string(*pc.problem.momentum) : std::string("None")) + ", " +
        pc.problem.convention + ")";
    judge(c, e, label, "running_mean", output_id::running_mean, r.running_mean);
    judge(c, e, label, "running_var", output_id::running_var, r.running_var);
    if (r.num_batches_tracked != e.ref().num_batches_tracked()) {
      fail(label + ": num_batches_tracked " + std::to_string(r.num_batches_tracked) +
           ", expected " + std::to_string(e.ref().num_batches_tracked()));
    }
    // The next step starts from the kernel's own state (judged step by step).
    pc.running_mean = r.running_mean;
    pc.running_var = r.running_var;
    pc.num_batches_tracked = r.num_batches_tracked;
    for (const float v : pc.running_var) {
      if (!(v >= 0) || !std::isfinite(v)) fail(label + ": running_var became " + hex_float(v));
    }
  }
}

// ---- positive scale invariance ---------------------------------------------------------------

void scale_invariance(const context& c, const gen::case_options& o) {
  const property_case pc = generate(c, o);
  const geometry g(pc.problem);
  const reduction_map map(pc.problem.op, g);
  // a = 2^k keeps every nonzero |x| within [2^-60, 2^60] and ε·a² a normal float or 0.
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const float v : pc.src) {
    const double a = std::fabs(static_cast<double>(v));
    if (a == 0) continue;
    lo = std::min(lo, a);
    hi = std::max(hi, a);
  }
  int kmin = -20, kmax = 20;
  if (hi > 0) {
    kmin = std::max(kmin, static_cast<int>(std::ceil(-60 - std::log2(lo))));
    kmax = std::min(kmax, static_cast<int>(std::floor(60 - std::log2(hi))));
  }
  if (pc.problem.eps > 0) {
    const double le = std::log2(pc.problem.eps);
    kmin = std::max(kmin, static_cast<int>(std::ceil((-120 - le) / 2)));
    kmax = std::min(kmax, static_cast<int>(std::floor((120 - le) / 2)));
  }
  if (kmin > kmax) discard("no room to scale");
  int k = *rc::gen::inRange(kmin, kmax + 1);
  if (k == 0) k = kmax > 0 ? 1 : -1;
  if (k < kmin || k > kmax) discard("no room to scale");
  const double a = std::ldexp(1.0, k);
  property_case scaled = pc;
  for (float& v : scaled.src) v = static_cast<float>(static_cast<double>(v) * a);
  scaled.problem.eps = pc.problem.eps * a * a;
  const auto lvl = c.opt.level;
  const exact_side e1(pc, bn_mode::forward_training, false);
  const exact_side e2(scaled, bn_mode::forward_training, false);
  if (!e1.ref().refusal().empty()) discard("refused problem");
  const fwd_bwd r1 = forward_backward(c, pc);
  const fwd_bwd r2 = forward_backward(c, scaled);
  const std::string by =
      " with x scaled by 2^" + std::to_string(k) + " and eps by 2^" + std::to_string(2 * k);
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    expect_close(c, where(g, "dst", i) + by, r1.fwd.dst[u], r2.fwd.dst[u],
                 e1.bound(output_id::dst, i, lvl) + e2.bound(output_id::dst, i, lvl));
  }
  const exact_side b1(pc, bn_mode::backward_training, false);
  const exact_side b2(scaled, bn_mode::backward_training, false);
  for (std::int64_t i = 0; i < g.elements(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    // dx scales by 1/a: compare a·dx(scaled), whose bound is a times its own.
    expect_close(c, where(g, "diff_src", i) + by + " (times 2^" + std::to_string(k) + ")",
                 r1.bwd.diff_src[u],
                 static_cast<float>(static_cast<double>(r2.bwd.diff_src[u]) * a),
                 b1.bound(output_id::diff_src, i, lvl) + a * b2.bound(output_id::diff_src, i, lvl));
  }
  if (pc.affine) expect_diff_gamma_close(c, map, by, r1.bwd, r2.bwd, b1, b2);
}

// ---- permutation equivariance over the batch and spatial positions --------------------------

void prop_permutation(const context& c) {
  const property_case pc = generate(c, c.cases());
  const geometry g(pc.problem);
  const std::int64_t L = g.per_channel();
  // One permutation of the L positions (n, s), shared by every channel.
  std::vector<std::int64_t> perm(static_cast<std::size_t>(L));
  std::iota(perm.begin(), perm.end(), std::int64_t{0});
  for (std::int64_t i = L; i > 1; --i) {
    const std::int64_t j = *rc::gen::inRange<std::int64_t>(0, i);
    std::swap(perm[static_cast<std::size_t>(i - 1)], perm[static_cast<std::size_t>(j)]);
  }
  property_case permuted = pc;
  const reduction_map map(pc.problem.op, g);
  auto index = [&](std::int64_t pos, std::int64_t ch) {
    return static_cast<std::size_t>(map.member(ch, pos));
  };
  for (std::int64_t ch = 0; ch < g.c(); ++ch) {
    for (std::int64_t p = 0; p < L; ++p) {
      const std::int64_t from = perm[static_cast<std::size_t>(p)];
      permuted.src[index(p, ch)] = pc.src[index(from, ch)];
      permuted.diff_dst[index(p, ch)] = pc.diff_dst[index(from, ch)];
    }
  }
  const auto lvl = c.opt.level;
  const exact_side e1(pc, bn_mode::forward_training, false);
  const exact_side e2(permuted, bn_mode::forward_training, false);
  if (!e1.ref().refusal().empty()) discard("refused problem");
  const fwd_bwd r1 = forward_backward(c, pc);
  const fwd_bwd r2 = forward_backward(c, permuted);
  const exact_side b1(pc, bn_mode::backward_training, false);
  const exact_side b2(permuted, bn_mode::backward_training, false);
  for (std::int64_t ch = 0; ch < g.c(); ++ch) {
    for (std::int64_t p = 0; p < L; ++p) {
      const std::size_t to = index(p, ch);
      const std::size_t from = index(perm[static_cast<std::size_t>(p)], ch);
      const auto i2 = static_cast<std::int64_t>(to);
      const auto i1 = static_cast<std::int64_t>(from);
      const std::string what = " of the permuted batch (from " + where(g, "x", i1) + ")";
      expect_close(c, where(g, "dst", i2) + what, r2.fwd.dst[to], r1.fwd.dst[from],
                   e2.bound(output_id::dst, i2, lvl) + e1.bound(output_id::dst, i1, lvl));
      expect_close(c, where(g, "diff_src", i2) + what, r2.bwd.diff_src[to], r1.bwd.diff_src[from],
                   b2.bound(output_id::diff_src, i2, lvl) + b1.bound(output_id::diff_src, i1, lvl));
    }
    const auto u = static_cast<std::size_t>(ch);
    if (pc.affine) {
      expect_close(
          c, "diff_gamma[c=" + std::to_string(ch) + "] of the permuted batch", r2.bwd.diff_gamma[u],
          r1.bwd.diff_gamma[u],
          b2.bound(output_id::diff_gamma, ch, lvl) + b1.bound(output_id::diff_gamma, ch, lvl));
      expect_close(
          c, "diff_beta[c=" + std::to_string(ch) + "] of the permuted batch", r2.bwd.diff_beta[u],
          r1.bwd.diff_beta[u],
          b2.bound(output_id::diff_beta, ch, lvl) + b1.bound(output_id::diff_beta, ch, lvl));
    }
  }
}

// ---- channel independence --------------------------------------------------------------------

void prop_channel_independence(const context& c) {
  gen::case_options o = c.cases();
  o.shape.min_channels = 2;
  const property_case pc = generate(c, o);
  const geometry g(pc.problem);
  const std::int64_t j = *rc::gen::inRange<std::int64_t>(0, g.c());
  property_case changed = pc;
  const int how = *rc::gen::inRange(0, 3);  // 0: NaN one element, 1: +Inf, 2: new values
  const std::int64_t at = *rc::gen::inRange<std::int64_t>(0, g.per_channel());
  const reduction_map map(pc.problem.op, g);
  for (std::int64_t p = 0; p < g.per_channel(); ++p) {
    const auto u = static_cast<std::size_t>(map.member(j, p));
    if (how == 2) {
      changed.src[u] = changed.src[u] * -5.0F + 1.0F;
      changed.diff_dst[u] = changed.diff_dst[u] * 3.0F;
    } else if (p == at) {
      changed.src[u] = how == 0 ? std::numeric_limits<float>::quiet_NaN()
                                : std::numeric_limits<float>::infinity();
    }
  }
  const auto cj = static_cast<std::size_t>(j);
  changed.gamma[cj] *= 2.0F;
  changed.beta[cj] += 1.0F;
  changed.running_mean[cj] += 1.0F;
  changed.running_var[cj] *= 4.0F;
  const std::string label = " changed when channel " + std::to_string(j) + " was " +
                            (how == 0   ? "given a NaN"
                             : how == 1 ? "given a +Inf"
                                        : "changed");
  auto same_per_element = [&](const char* name, const std::vector<float>& a,
                              const std::vector<float>& b) {
    for (std::int64_t i = 0; i < g.elements(); ++i) {
      if (g.coordinates_of(i).c == j) continue;
      const auto u = static_cast<std::size_t>(i);
      if (!bit_equal(a[u], b[u])) {
        fail(where(g, name, i) + label + ": " + hex_float(a[u]) + " then " + hex_float(b[u]));
      }
    }
  };
  auto same_per_channel = [&](const std::string& name, const std::vector<float>& a,
                              const std::vector<float>& b) {
    for (std::int64_t ch = 0; ch < g.c(); ++ch) {
      const auto u = static_cast<std::size_t>(ch);
      if (ch == j || a.size() <= u || b.size() <= u) continue;
      if (!bit_equal(a[u], b[u])) {
        fail(name + "[c=" + std::to_string(ch) + "]" + label + ": " + hex_float(a[u]) + " then " +
             hex_float(b[u]));
      }
    }
  };
  bool any = false;
  if (c.info.supports(bn_mode::forward_training)) {
    any = true;
    const bool track = c.info.updates_running;
    const call_result a = call(c, request_of(pc, bn_mode::forward_training, track));
    const call_result b = call(c, request_of(changed, bn_mode::forward_training, track));
    same_per_element("dst", a.dst, b.dst);
    same_per_channel("save_mean", a.save_mean, b.save_mean);
    same_per_channel("save_stat", a.save_stat, b.save_stat);
    same_per_channel("running_mean", a.running_mean, b.running_mean);
    same_per_channel("running_var", a.running_var, b.running_var);
  }
  if (c.info.supports(bn_mode::forward_training) && c.info.supports(bn_mode::backward_training)) {
    const fwd_bwd a = forward_backward(c, pc);
    const fwd_bwd b = forward_backward(c, changed);
    same_per_element("diff_src", a.bwd.diff_src, b.bwd.diff_src);
    same_per_channel("diff_gamma", a.bwd.diff_gamma, b.bwd.diff_gamma);
    same_per_channel("diff_beta", a.bwd.diff_beta, b.bwd.diff_beta);
  }
  for (const bn_mode m : {bn_mode::forward_inference, bn_mode::backward_inference}) {
    if (!c.info.supports(m)) continue;
    any = true;
    const call_result a = call(c, request_of(pc, m, false));
    const call_result b = call(c, request_of(changed, m, false));
    if (m == bn_mode::forward_inference) {
      same_per_element("dst", a.dst, b.dst);
    } else {
      same_per_element("diff_src", a.diff_src, b.diff_src);
      same_per_channel("diff_gamma", a.diff_gamma, b.diff_gamma);
      same_per_channel("diff_beta", a.diff_beta, b.diff_beta);
    }
  }
  if (!any) discard("the kernel provides no mode");
}

// ---- agreement between layouts ---------------------------------------------------------------

// Channels-last strides (N, C, spatial...) for a shape: C innermost.
std::vector<std::int64_t> channels_last(const bn_problem& p) {
  std::vector<std::int64_t> st(2 + p.spatial.size(), 0);
  std::int64_t s = 1;
  st.at(1) = s;
  s *= p.c;
  for (std::size_t d = p.spatial.size(); d-- > 0;) {
    st[2 + d] = s;
    s *= p.spatial[d];
  }
  st[0] = s;
  return st;
}

void layout_agreement(const context& c, const gen::case_options& o) {
  const property_case pc = generate(c, o);
  const std::size_t rank = pc.problem.spatial.size();
  // The same logical problem in every layout the kernel takes for this rank.
  std::vector<bn_problem> views;
  auto add = [&](bn_problem p) {
    if ((c.info.layouts & layout_bit(p.mem_layout)) != 0) views.push_back(std::move(p));
  };
  bn_problem base = pc.problem;
  base.strides.clear();
  base.mem_layout = dense_layout(rank);
  add(base);
  if (rank == 2 || rank == 3) {
    bn_problem cl = base;
    cl.mem_layout = rank == 2 ? layout::nhwc : layout::ndhwc;
    add(cl);
  }
  bn_problem padded = base;  // channels-last as a strided view, every other float padding
  padded.mem_layout = layout::strided;
  padded.strides = channels_last(base);
  for (auto& s : padded.strides) s *= 2;
  add(padded);
  if (base.n > 1) {
    bn_problem reversed = padded;  // the same, reversed in N (a negative stride)
    reversed.strides[0] = -reversed.strides[0];
    add(reversed);
  }
  if (views.size() < 2) discard("the kernel takes only one layout for this rank");
  const auto lvl = c.opt.level;
  const geometry g(pc.problem);
  const exact_side e(pc, bn_mode::forward_training, false);
  const exact_side b(pc, bn_mode::backward_training, false);
  if (!e.ref().refusal().empty()) discard("refused problem");
  // A view the kernel does not take (a negative stride, say) is left out; the others are
  // compared with the first one it takes.
  std::vector<std::pair<bn_problem, fwd_bwd>> runs;
  for (const bn_problem& view : views) {
    property_case one = pc;
    one.problem = view;
    if (auto r = forward_backward_if_supported(c, one)) runs.emplace_back(view, std::move(*r));
  }
  if (runs.size() < 2) discard("the kernel takes fewer than two of the layouts for this problem");
  const fwd_bwd& r0 = runs.front().second;
  for (std::size_t v = 1; v < runs.size(); ++v) {
    const fwd_bwd& r = runs[v].second;
    const std::string label = " in " + describe(runs[v].first) + " vs " + describe(runs[0].first);
    for (std::int64_t i = 0; i < g.elements(); ++i) {
      const auto u = static_cast<std::size_t>(i);
      expect_close(c, where(g, "dst", i) + label, r.fwd.dst[u], r0.fwd.dst[u],
                   2 * e.bound(output_id::dst, i, lvl));
      expect_close(c, where(g, "diff_src", i) + label, r.bwd.diff_src[u], r0.bwd.diff_src[u],
                   2 * b.bound(output_id::diff_src, i, lvl));
    }
    if (pc.affine) {
      const reduction_map map(pc.problem.op, g);
      for (std::int64_t j = 0; j < map.params(); ++j) {
        const auto u = static_cast<std::size_t>(j);
        expect_close(c, "diff_gamma[" + map.param_name(j) + "]" + label, r.bwd.diff_gamma[u],
                     r0.bwd.diff_gamma[u], 2 * b.bound(output_id::diff_gamma, j, lvl));
      }
    }
  }
}

// ---- the table -------------------------------------------------------------------------------

constexpr property_entry k_properties[] = {
    {{"reference_agreement",
      "every output of every mode within the error bound of the exact reference, NaN/Inf by "
      "class"},
     prop_reference_agreement},
    {{"bias_invariance",
      "adding a per-channel constant to x leaves y, invstd, dx and dgamma unchanged (training)"},
     prop_bias_invariance},
    {{"recovery", "gamma = sqrt(var + eps), beta = mean gives back x (forward training)"},
     prop_recovery},
    {{"gradient_sums",
      "sum(dx) = 0 and sum(dx*xhat) = gamma*r*eps/(var + eps)*sum(dy*xhat), 0 for eps = 0, per "
      "channel (backward training)"},
     prop_gradient_sums},
    {{"parameter_gradients", "dbeta = sum(dy) and dgamma = sum(dy*xhat) per channel"},
     prop_parameter_gradients},
    {{"eval_determinism",
      "eval output of an example is independent of its batchmates and bit-identical on "
      "repetition; running statistics untouched"},
     prop_eval_determinism},
    {{"reproducibility",
      "every mode called twice on the same inputs gives bit-identical outputs (no run-to-run "
      "variation, pytorch #53691)"},
     [](const context& c) { reproducibility(c, c.cases()); }},
    {{"momentum_convention",
      "running statistics over 2-4 steps follow the claimed convention (momentum, estimator, "
      "cumulative average)"},
     prop_momentum_convention},
    {{"scale_invariance",
      "x scaled by 2^k with eps scaled by 4^k leaves y unchanged and scales dx by 2^-k"},
     [](const context& c) { scale_invariance(c, c.cases()); }},
    {{"permutation_equivariance",
      "permuting batch and spatial positions permutes y and dx alike, leaves dgamma, dbeta"},
     prop_permutation},
    {{"channel_independence",
      "changing, or putting NaN/Inf into, one channel leaves every other channel bit-identical"},
     prop_channel_independence},
    {{"layout_agreement",
      "the same problem in NCHW, channels-last and a padded reversed strided view agrees"},
     [](const context& c) { layout_agreement(c, c.cases()); }},
};

// RapidCheck reads RC_PARAMS once and prints "Using configuration: seed=<random>" on stderr.
// bnoracle passes its own seed with every check, so that line would only mislead: load the
// configuration once with stderr pointed at /dev/null.
void load_rapidcheck_configuration_quietly() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::fflush(stderr);
    const int saved = dup(STDERR_FILENO);
    const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && null >= 0) dup2(null, STDERR_FILENO);
    (void)rc::detail::configuration();
    std::cerr.flush();
    if (saved >= 0) {
      dup2(saved, STDERR_FILENO);
      close(saved);
    }
    if (null >= 0) close(null);
  });
}

const property_entry& find_property(std::string_view name) {
  for (const auto& p : k_properties) {
    if (p.info.name == name) return p;
  }
  for (const auto& p : operation_property_entries()) {
    if (p.info.name == name) return p;
  }
  for (const auto& p : family_property_entries()) {
    if (p.info.name == name) return p;
  }
  throw std::invalid_argument("unknown property '" + std::string(name) + "'");
}

}  // namespace

std::span<const property_info> property_list() {
  static const std::vector<property_info> list = [] {
    std::vector<property_info> v;
    for (const auto& p : k_properties) v.push_back(p.info);
    for (const auto& p : operation_property_entries()) v.push_back(p.info);
    for (const auto& p : family_property_entries()) v.push_back(p.info);
    return v;
  }();
  return list;
}

std::uint64_t property_seed(std::uint64_t seed, std::string_view name) {
  // FNV-1a over the name, mixed with the seed by splitmix64's finalizer.
  std::uint64_t h = 0xcbf2'9ce4'8422'2325ULL;
  for (const char ch : name) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100'0000'01b3ULL;
  }
  std::uint64_t z = seed + 0x9e37'79b9'7f4a'7c15ULL * (h | 1U);
  z = (z ^ (z >> 30U)) * 0xbf58'476d'1ce4'e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d0'49bb'1331'11ebULL;
  return z ^ (z >> 31U);
}

property_result check_property(std::string_view name, bn_kernel& kernel,
                               const property_options& options) {
  const property_entry& entry = find_property(name);
  load_rapidcheck_configuration_quietly();
  property_result out;
  out.name = std::string(entry.info.name);
  out.summary = std::string(entry.info.summary);
  out.rapidcheck_seed = property_seed(options.seed, name);
  {
    std::ostringstream os;
    // kernel_path is a plugin's path or a whole option such as --exec "CMD" (it starts with --).
    os << "bnoracle check "
       << (options.kernel_path.empty()             ? "--kernel KERNEL"
           : options.kernel_path.starts_with("--") ? options.kernel_path
                                                   : "--kernel " + options.kernel_path)
       << " --properties-only --filter property/" << out.name << " --seed " << options.seed
       << " --property-cases " << options.property_cases << " --level " << to_string(options.level);
    if (!options.convention.empty()) os << " --convention " << options.convention;
    // --exec runs without fork isolation by design: its option already says so.
    call_options shown{options.isolate, options.timeout};
    if (options.kernel_path.starts_with("--exec")) shown.isolate = true;
    os << repro_options(shown);
    out.repro = os.str();
  }
  // Batch norm's properties are generated as batch-norm problems, the family's as problems of
  // the other ops the kernel declares: a kernel without them has nothing to satisfy.
  if (!entry.info.family && !kernel.info().supports(op_kind::batch_norm)) {
    out.verdict = property_verdict::skip;
    out.reason = "the kernel does not support batch_norm (the property is batch norm's)";
    return out;
  }
  if ((entry.info.operation == property_operation::fold && !kernel.info().fold) ||
      (entry.info.operation == property_operation::syncbn_merge && !kernel.info().syncbn_merge)) {
    out.verdict = property_verdict::skip;
    out.reason =
        std::string("the kernel does not provide ") +
        (entry.info.operation == property_operation::fold ? "folding" : "the SyncBN merge");
    return out;
  }
  if (entry.info.family && family_ops_of(kernel.info()).empty()) {
    out.verdict = property_verdict::skip;
    out.reason =
        "the kernel supports none of layer_norm, rms_norm, group_norm, instance_norm (the "
        "property is theirs)";
    return out;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const context ctx{kernel,
                    kernel.info(),
                    options,
                    options.convention.empty() ? kernel.info().convention : options.convention,
                    call_options{options.isolate, options.timeout},
                    {}};
  bool failed_once = false;
  int evaluations_after_failure = 0;
  std::string failure, failure_case;  // the last failing evaluation: the shrunk counterexample
  std::string first_failure;          // the first one, before shrinking made it marginal
  bool failure_faulted = false;       // the last failing evaluation was a kernel fault
  auto body = [&] {
    // Once the budget is spent every shrink candidate counts as passing, so shrinking stops
    // at the smallest failing case found so far.
    if (failed_once && ++evaluations_after_failure > options.shrink_budget) return;
    ctx.faulted = false;
    try {
      entry.body(ctx);
    } catch (const CaseResult& r) {
      if (r.type == CaseResult::Type::Failure) {
        if (!failed_once) first_failure = r.description;
        failed_once = true;
        failure = r.description;
        failure_case = ctx.last_case;
        failure_faulted = ctx.faulted;
      }
      throw;
    } catch (const invalid_problem& e) {
      // A generated problem the reference rejects is a bug of the generators, not the kernel.
      failed_once = true;
      failure = std::string("internal error: generated an invalid problem: ") + e.what();
      failure_case = ctx.last_case;
      failure_faulted = false;
      throw CaseResult(CaseResult::Type::Failure, failure);
    } catch (const std::exception& e) {
      failed_once = true;
      failure = std::string("exception: ") + e.what();
      failure_case = ctx.last_case;
      failure_faulted = false;
      throw;
    }
  };
  rc::detail::TestParams params;
  params.seed = out.rapidcheck_seed;
  params.maxSuccess = options.property_cases;
  params.maxSize = options.property_max_size;
  params.maxDiscardRatio = 10;
  rc::detail::TestMetadata meta;
  meta.id = out.name;
  meta.description = out.summary;
  rc::detail::TestListenerAdapter quiet;
  const rc::detail::TestResult result =
      rc::detail::checkProperty(rc::detail::toProperty(body), meta, params, quiet);
  if (result.is<rc::detail::SuccessResult>()) {
    out.verdict = property_verdict::pass;
    out.cases = result.get<rc::detail::SuccessResult>().numSuccess;
  } else if (result.is<rc::detail::FailureResult>()) {
    const auto& f = result.get<rc::detail::FailureResult>();
    out.verdict = property_verdict::fail;
    out.cases = f.numSuccess;
    // RapidCheck re-runs the final case to show it; once the shrink budget is spent that re-run
    // passes, so the last failing evaluation recorded here is the counterexample.
    out.reason = failure.empty() ? f.description : failure;
    if (!first_failure.empty() && first_failure != out.reason) {
      out.reason += "\n(before shrinking: " + first_failure + ")";
    }
    out.counterexample = failure_case;
    out.fault = failure_faulted;
  } else if (result.is<rc::detail::GaveUpResult>()) {
    const auto& gu = result.get<rc::detail::GaveUpResult>();
    out.verdict = property_verdict::skip;
    out.cases = gu.numSuccess;
    out.reason = "too many generated cases did not apply: " + gu.description;
  } else {
    out.verdict = property_verdict::fail;
    out.reason = "RapidCheck error: " + result.get<rc::detail::Error>().description;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

bool property_applies(const property_info& p, const kernel_info* info, std::optional<op_kind> op) {
  const auto declared = [&](op_kind k) {
    return (info == nullptr || info->supports(k)) && (!op || *op == k);
  };
  if (info != nullptr &&
      ((p.operation == property_operation::fold && !info->fold) ||
       (p.operation == property_operation::syncbn_merge && !info->syncbn_merge))) {
    return false;
  }
  if (!p.family) return declared(op_kind::batch_norm);
  return declared(op_kind::layer_norm) || declared(op_kind::rms_norm) ||
         declared(op_kind::group_norm) || declared(op_kind::instance_norm);
}

std::vector<std::string_view> selected_properties(const kernel_info& info,
                                                  const property_options& options,
                                                  const std::string& filter) {
  // Only the properties of the ops the kernel declares (and of options.op), as the catalog runs
  // only their cases: a batch-norm kernel is not reported eleven skipped layer-norm properties
  // (check_property still answers skip for one named explicitly).
  std::vector<std::string_view> selected;
  std::size_t index = 0;  // of the properties that apply and pass the filter (--shard)
  for (const auto& p : property_list()) {
    if (!property_applies(p, &info, options.op)) continue;
    if (name_matches("property/" + std::string(p.name), filter) && in_shard(options, index++)) {
      selected.push_back(p.name);
    }
  }
  return selected;
}

std::vector<property_result> check_properties(bn_kernel& kernel, const property_options& options,
                                              const std::string& filter,
                                              const property_progress& progress) {
  const std::vector<std::string_view> selected =
      selected_properties(kernel.info(), options, filter);
  std::vector<property_result> out;
  std::int64_t failing = 0;
  for (std::size_t i = 0; i < selected.size(); ++i) {
    if (progress) progress(i, selected.size(), "property/" + std::string(selected[i]), failing);
    out.push_back(check_property(selected[i], kernel, options));
    if (out.back().verdict == property_verdict::fail) ++failing;
  }
  if (progress) progress(selected.size(), selected.size(), "", failing);
  return out;
}

namespace property_support {

void prop_reproducibility(const context& c, const gen::case_options& o) {
  reproducibility(c, o);
}
void prop_scale_invariance(const context& c, const gen::case_options& o) {
  scale_invariance(c, o);
}
void prop_layout_agreement(const context& c, const gen::case_options& o) {
  layout_agreement(c, o);
}

}  // namespace property_support

call_request request_of(const property_case& pc, bn_mode mode, bool track) {
  call_request q;
  q.mode = mode;
  q.problem = pc.problem;
  q.affine = pc.affine;
  q.track_running = mode == bn_mode::forward_training && track;
  q.src = pc.src;
  if (is_backward(mode)) q.diff_dst = pc.diff_dst;
  if (pc.affine) {
    q.gamma = pc.gamma;
    q.beta = pc.beta;
  }
  if (pc.problem.op.running_stats && (!is_training(mode) || q.track_running)) {
    q.running_mean = pc.running_mean;
    q.running_var = pc.running_var;
    q.num_batches_tracked = pc.num_batches_tracked;
  }
  return q;
}

}  // namespace bnoracle
