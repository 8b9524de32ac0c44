#include "bnoracle/generators.hpp"

#include "bnoracle/catalog.hpp"
#include "bnoracle/exact.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/reduction.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>
#include <ostream>
#include <string>

namespace bnoracle {

namespace {

void show_vector(std::ostream& os, const char* name, const std::vector<float>& v) {
  if (v.empty()) return;
  os << "\n  " << name << " = [";
  for (std::size_t i = 0; i < v.size(); ++i) os << (i == 0 ? "" : ", ") << hex_float(v[i]);
  os << ']';
}

}  // namespace

void showValue(const property_case& c, std::ostream& os) {
  os << describe(c.problem) << (c.affine ? "" : " affine=false")
     << " num_batches_tracked=" << c.num_batches_tracked
     << " (tensors in logical order n, c, spatial...)";
  show_vector(os, "src", c.src);
  show_vector(os, "diff_dst", c.diff_dst);
  show_vector(os, "gamma", c.gamma);
  show_vector(os, "beta", c.beta);
  show_vector(os, "running_mean", c.running_mean);
  show_vector(os, "running_var", c.running_var);
}

namespace gen {

namespace {

float make_float(bool negative, int exponent, std::uint32_t mantissa) {
  const std::uint32_t bits = (negative ? 0x8000'0000U : 0U) |
                             (static_cast<std::uint32_t>(exponent + 127) << 23) |
                             (mantissa & 0x7f'ffffU);
  return std::bit_cast<float>(bits);
}

// An integer in [lo, hi] that shrinks towards `toward` (clamped into the range), alternating
// sides: toward, toward+1, toward−1, toward+2, ...
int int_toward(int lo, int hi, int toward) {
  toward = std::clamp(toward, lo, hi);
  const int span = hi - lo;
  const int k = *rc::gen::inRange(0, span + 1);
  // Enumerate the values of [lo, hi] by distance from `toward`.
  int d = 0;
  int seen = 0;
  while (true) {
    for (const int cand : {toward + d, toward - d}) {
      if (d == 0 && cand != toward) continue;
      if (cand < lo || cand > hi) continue;
      if (seen == k) return cand;
      ++seen;
    }
    ++d;
  }
}

// A value from a list, shrinking towards the first.
template <class T>
T pick(std::initializer_list<T> values) {
  const int k = *rc::gen::inRange(0, static_cast<int>(values.size()));
  return *(values.begin() + k);
}

bool coin(int one_in) {
  return *rc::gen::inRange(0, one_in) == one_in - 1;
}

std::uint32_t mantissa() {
  return *rc::gen::inRange<std::uint32_t>(0, 1U << 23);
}

double pow10(int k) {
  return std::pow(10.0, k);
}

// Rounds to the grid of `bits` significant bits below the magnitude of `scale`.
double grid_quantum(double max_abs, int bits) {
  if (max_abs == 0) return 1;
  int e = 0;
  (void)std::frexp(max_abs, &e);  // max_abs < 2^e
  return std::ldexp(1.0, e - bits);
}

// Channel kinds of the sound domain.
enum class kind : int { normal, near_constant, constant, wide, pairs, outlier, count };

struct channel_plan {
  kind k = kind::normal;
  double offset = 0;
  int spread_exp = 0;  // spread = 2^spread_exp
};

channel_plan plan_channel() {
  channel_plan c;
  c.k = static_cast<kind>(*rc::gen::inRange(0, static_cast<int>(kind::count)));
  if (!coin(3)) {
    const int k10 = int_toward(-6, 9, 0);
    c.offset = (coin(2) ? -1.0 : 1.0) * pow10(k10);
  }
  if (c.offset != 0) {
    int e = 0;
    (void)std::frexp(c.offset, &e);
    c.spread_exp = e - 1 + int_toward(-22, 4, 0);
  } else {
    c.spread_exp = int_toward(-30, 30, 0);
  }
  c.spread_exp = std::clamp(c.spread_exp, -50, 40);
  return c;
}

float value_of(const channel_plan& c, std::int64_t i, std::int64_t L) {
  const double spread = std::ldexp(1.0, c.spread_exp);
  switch (c.k) {
    case kind::normal:
    case kind::count: {
      const float z = coin(16) ? 0.0F : *float32(-6, 1);
      return static_cast<float>(c.offset + spread * static_cast<double>(z));
    }
    case kind::near_constant: {
      const auto o = static_cast<float>(c.offset == 0 ? spread : c.offset);
      const int steps = *rc::gen::inRange(-3, 4);
      float v = o;
      for (int s = 0; s < std::abs(steps); ++s) {
        v = std::nextafter(v, steps > 0 ? std::numeric_limits<float>::infinity()
                                        : -std::numeric_limits<float>::infinity());
      }
      return v;
    }
    case kind::constant:
      return static_cast<float>(c.offset == 0 ? spread : c.offset);
    case kind::wide: {
      const int e = std::clamp(c.spread_exp + int_toward(-20, 10, 0), -60, 50);
      return make_float(coin(2), e, mantissa());
    }
    case kind::pairs:
      return static_cast<float>(c.offset + (i % 2 == 0 ? spread : -spread));
    case kind::outlier:
      if (i == L / 2) return static_cast<float>(c.offset + spread * 64.0);
      return static_cast<float>(c.offset + spread * static_cast<double>(*float32(-6, -1)));
  }
  return 0.0F;
}

}  // namespace

rc::Gen<float> float32(int min_exp, int max_exp, bool specials) {
  return rc::gen::exec([=]() -> float {
    if (specials) {
      switch (*rc::gen::inRange(0, 12)) {
        case 1:
          return coin(2) ? -0.0F : 0.0F;
        case 2:  // subnormal
          return std::bit_cast<float>((coin(2) ? 0x8000'0000U : 0U) | std::max(1U, mantissa()));
        case 3:  // within a factor 2 of FLT_MAX
          return make_float(coin(2), 127, mantissa());
        default:
          break;
      }
    }
    const bool negative = *rc::gen::arbitrary<bool>();
    const int e = int_toward(min_exp, max_exp, 0);
    return make_float(negative, e, mantissa());
  });
}

rc::Gen<float> any_float32() {
  return rc::gen::exec([]() -> float {
    switch (*rc::gen::inRange(0, 10)) {
      case 1:
        return coin(2) ? std::numeric_limits<float>::infinity()
                       : -std::numeric_limits<float>::infinity();
      case 2:
        return std::numeric_limits<float>::quiet_NaN();
      default:
        return *float32(-126, 127, true);
    }
  });
}

rc::Gen<float> special_float32() {
  return rc::gen::exec([]() -> float {
    switch (*rc::gen::inRange(0, 5)) {
      case 0:
        return std::numeric_limits<float>::quiet_NaN();
      case 1:
        return std::numeric_limits<float>::infinity();
      case 2:
        return -std::numeric_limits<float>::infinity();
      case 3:
        return std::bit_cast<float>((coin(2) ? 0x8000'0000U : 0U) | std::max(1U, mantissa()));
      default:
        return coin(2) ? -0.0F : 0.0F;
    }
  });
}

rc::Gen<bn_problem> problem(const shape_options& o) {
  return rc::gen::withSize([o](int size) {
    return rc::gen::exec([o, size]() {
      std::vector<layout> allowed;
      for (const layout l : {layout::nchw, layout::nc, layout::ncl, layout::nhwc, layout::ncdhw,
                             layout::ndhwc, layout::strided}) {
        if ((o.layouts & layout_bit(l)) != 0) allowed.push_back(l);
      }
      RC_PRE(!allowed.empty());
      bn_problem p;
      p.mem_layout =
          allowed[static_cast<std::size_t>(*rc::gen::inRange(0, static_cast<int>(allowed.size())))];
      int rank = 0;
      if (p.mem_layout == layout::strided) {
        rank = *rc::gen::inRange(0, 4);
      } else {
        rank = *spatial_rank(p.mem_layout);
      }
      auto extent = [] {
        return static_cast<std::int64_t>(pick({2, 1, 3, 4, 5, 7, 8, 9, 16, 17, 31}));
      };
      p.n = static_cast<std::int64_t>(pick({2, 1, 3, 4, 5, 7, 8, 16, 17, 32, 33, 64, 65}));
      p.c = *rc::gen::inRange<std::int64_t>(std::max<std::int64_t>(1, o.min_channels),
                                            std::max<std::int64_t>(7, o.min_channels + 1));
      p.spatial.clear();
      for (int i = 0; i < rank; ++i) p.spatial.push_back(extent());
      // Keep within the size budget: halve the largest extent until it fits.
      const std::int64_t budget =
          std::max<std::int64_t>(16, o.max_elements * std::max(size, 1) / 100);
      auto elements = [&p] {
        std::int64_t e = p.n * p.c;
        for (auto s : p.spatial) e *= s;
        return e;
      };
      while (elements() > budget) {
        std::int64_t* largest = &p.n;
        for (auto& s : p.spatial) {
          if (s > *largest) largest = &s;
        }
        if (*largest <= 1) {
          if (p.c > std::max<std::int64_t>(1, o.min_channels)) {
            p.c = std::max<std::int64_t>(std::max<std::int64_t>(1, o.min_channels), p.c / 2);
            continue;
          }
          break;
        }
        *largest = (*largest + 1) / 2;
      }
      std::int64_t spatial = 1;
      for (auto s : p.spatial) spatial *= s;
      if (p.n * spatial < o.min_per_channel) {
        p.n = (o.min_per_channel + spatial - 1) / spatial;
      }
      if (p.mem_layout == layout::strided) {
        // Dims in a random memory order, each padded, some reversed.
        const std::size_t dims = 2 + p.spatial.size();
        std::vector<std::int64_t> ext{p.n, p.c};
        ext.insert(ext.end(), p.spatial.begin(), p.spatial.end());
        std::vector<std::size_t> order(dims);
        std::iota(order.begin(), order.end(), std::size_t{0});
        for (std::size_t i = dims; i > 1; --i) {  // Fisher–Yates, innermost last
          const auto j = static_cast<std::size_t>(*rc::gen::inRange<int>(0, static_cast<int>(i)));
          std::swap(order[i - 1], order[j]);
        }
        p.strides.assign(dims, 0);
        std::int64_t stride = 1;
        for (std::size_t k = dims; k-- > 0;) {
          const std::size_t d = order[k];
          p.strides[d] = stride;
          const std::int64_t pad = pick<std::int64_t>({0, 1, 3});
          stride *= ext[d] + pad;
        }
        if (o.strided_negative) {
          for (auto& s : p.strides) {
            if (coin(4)) s = -s;
          }
        }
      }
      return p;
    });
  });
}

rc::Gen<std::optional<double>> momentum(bool cumulative) {
  return rc::gen::exec([cumulative]() -> std::optional<double> {
    if (cumulative && coin(5)) return std::nullopt;
    if (coin(2)) return pick({0.1, 0.01, 0.3, 0.9, 0.99, 0.2, 0.75});
    // Uniform over [0.02, 0.48] ∪ [0.52, 0.98] on a grid of 2^-20.
    const int k = *rc::gen::inRange(0, 2 * 483'393);
    const double v = 0.02 + static_cast<double>(k % 483'393) * std::ldexp(1.0, -20);
    return k < 483'393 ? v : v + 0.5;
  });
}

namespace {

// Draws the L values of one statistic group, and its dy, into pc.src and pc.diff_dst at logical
// indexes at(0..L-1); returns the group's variance in double (its mean square when the op does
// not subtract the mean), NaN or 0 where the group is degenerate.
template <class At>
double draw_group(property_case& pc, const case_options& o, std::int64_t L, bool centred, At at) {
  const channel_plan plan = plan_channel();
  std::vector<float> x(static_cast<std::size_t>(L));
  for (std::int64_t k = 0; k < L; ++k) x[static_cast<std::size_t>(k)] = value_of(plan, k, L);
  if (o.grid_bits > 0) {
    double max_abs = 0;
    for (const float v : x) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
    const double q = grid_quantum(max_abs, o.grid_bits);
    for (float& v : x) v = static_cast<float>(std::nearbyint(static_cast<double>(v) / q) * q);
  }
  if (o.domain == data_domain::any && L > 0 && coin(4)) {
    const auto k = static_cast<std::size_t>(*rc::gen::inRange<std::int64_t>(0, L));
    x[k] = *special_float32();
  }
  double mean = 0;
  if (centred) {
    for (const float v : x) mean += static_cast<double>(v);
    mean = L > 0 ? mean / static_cast<double>(L) : 0.0;
  }
  double var = 0;
  for (const float v : x) var += (static_cast<double>(v) - mean) * (static_cast<double>(v) - mean);
  var = L > 0 ? var / static_cast<double>(L) : 0.0;
  for (std::int64_t k = 0; k < L; ++k) pc.src[at(k)] = x[static_cast<std::size_t>(k)];
  // dy: centred or offset, its own scale; sometimes constant.
  const int dy_exp = int_toward(-12, 12, 0);
  const double dy_offset = coin(4) ? std::ldexp(1.0, dy_exp + 2) : 0.0;
  const bool dy_constant = coin(8);
  for (std::int64_t k = 0; k < L; ++k) {
    const double z = dy_constant ? 1.0 : static_cast<double>(*float32(-6, 1));
    pc.diff_dst[at(k)] = static_cast<float>(dy_offset + std::ldexp(z, dy_exp));
  }
  if (o.domain == data_domain::any && L > 0 && coin(8)) {
    const std::int64_t k = *rc::gen::inRange<std::int64_t>(0, L);
    pc.diff_dst[at(k)] = *special_float32();
  }
  return var;
}

// γ away from 1, β away from 0.
float draw_gamma() {
  return coin(8) ? 1.0F : make_float(coin(4), int_toward(-6, 6, 0), mantissa());
}
float draw_beta() {
  return coin(6) ? 0.0F : make_float(coin(2), int_toward(-10, 10, 0), mantissa());
}

// A running variance near `var` (or near 1 where var is degenerate).
float draw_running_var(double var) {
  const double rv =
      (var > 0 && std::isfinite(var) ? var : 1.0) *
      std::ldexp(1.0 + static_cast<double>(mantissa()) * 0x1p-23, int_toward(-3, 3, 0));
  return static_cast<float>(std::min(rv, 1e30));
}

// The `any` domain: in one channel of eight the running mean is NaN or ±Inf or the running
// variance NaN or +Inf (as after a diverged step), which inference reads (a +Inf variance makes
// r = 0: y = β, dx = 0) and training's update blends in. Drawn after everything else, so that
// the other values of a case do not depend on it.
void draw_special_running(property_case& pc, const case_options& o) {
  if (o.domain != data_domain::any) return;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t c = 0; c < pc.running_mean.size(); ++c) {
    if (!coin(8)) continue;
    if (coin(2)) {
      pc.running_mean[c] = pick<float>({nan, inf, -inf});
    } else {
      pc.running_var[c] = pick<float>({nan, inf});
    }
  }
}

// ε: the common defaults, or near the variance of one statistic group, or far from it.
double draw_eps(const std::vector<double>& var_of, bool any_constant) {
  double eps = 1e-5;
  switch (*rc::gen::inRange(0, 6)) {
    case 0:
      break;
    case 1:
      eps = 1e-3;
      break;
    case 2:
    case 3: {
      const auto c = static_cast<std::size_t>(
          *rc::gen::inRange<std::int64_t>(0, static_cast<std::int64_t>(var_of.size())));
      const double v = var_of[c] > 0 && std::isfinite(var_of[c]) ? var_of[c] : 1.0;
      eps = static_cast<double>(static_cast<float>(v * std::ldexp(1.0, int_toward(-3, 3, 0))));
      break;
    }
    case 4:
      eps = static_cast<double>(make_float(false, int_toward(-40, 4, -17), mantissa()));
      break;
    case 5:
      // ε = 0 only where every group has a nonzero variance (else y is 0/0, by design).
      eps = any_constant ? 1e-5 : 0.0;
      break;
    default:
      break;
  }
  if (!(eps < std::numeric_limits<double>::infinity())) eps = 1e-5;
  return eps;
}

// The op of a family case for the drawn shape.
op_desc draw_op(const std::vector<op_kind>& ops, const bn_problem& p) {
  const op_kind k =
      ops[static_cast<std::size_t>(*rc::gen::inRange(0, static_cast<int>(ops.size())))];
  const int rank = static_cast<int>(p.spatial.size());
  switch (k) {
    case op_kind::layer_norm:
      return layer_norm_op(int_toward(1, rank + 1, 1));
    case op_kind::rms_norm: {
      op_desc op = rms_norm_op(int_toward(1, rank + 1, 1));
      op.weight_offset = coin(3);
      return op;
    }
    case op_kind::group_norm: {
      std::vector<std::int64_t> divisors;
      for (std::int64_t d = 1; d <= p.c; ++d) {
        if (p.c % d == 0) divisors.push_back(d);
      }
      return group_norm_op(divisors[static_cast<std::size_t>(
          *rc::gen::inRange(0, static_cast<int>(divisors.size())))]);
    }
    case op_kind::instance_norm:
      return instance_norm_op(coin(2));
    case op_kind::batch_norm:
      break;
  }
  return batch_norm_op();
}

property_case family_case(const case_options& o) {
  property_case pc;
  pc.problem = *problem(o.shape);
  pc.problem.op = draw_op(o.ops, pc.problem);
  const geometry g(pc.problem);
  const reduction_map map(pc.problem.op, g);
  const auto E = static_cast<std::size_t>(g.elements());
  pc.src.assign(E, 0.0F);
  pc.diff_dst.assign(E, 0.0F);
  const std::int64_t L = map.group_size();
  std::vector<double> var_of;
  bool any_constant = false;
  for (std::int64_t grp = 0; grp < map.groups(); ++grp) {
    const double var = draw_group(pc, o, L, pc.problem.op.centred, [&](std::int64_t k) {
      return static_cast<std::size_t>(map.member(grp, k));
    });
    var_of.push_back(var);
    if (!(var > 0)) any_constant = true;
  }
  if (var_of.empty()) var_of.push_back(1.0);
  pc.affine = !coin(10);
  for (std::int64_t j = 0; j < map.params(); ++j) {
    pc.gamma.push_back(pc.affine ? draw_gamma() : 1.0F);
    pc.beta.push_back(pc.affine ? draw_beta() : 0.0F);
  }
  pc.problem.op.weight_offset = pc.problem.op.weight_offset && pc.affine;  // needs γ
  for (std::int64_t r = 0; r < map.running_size(); ++r) {
    const double var = var_of[static_cast<std::size_t>(r) % var_of.size()];
    const double sd = var > 0 && std::isfinite(var) ? std::sqrt(var) : 1.0;
    pc.running_mean.push_back(static_cast<float>(sd * static_cast<double>(*float32(-4, 1))));
    pc.running_var.push_back(draw_running_var(var));
  }
  pc.problem.eps = draw_eps(var_of, any_constant);
  // Instance norm's running statistics have no cumulative average (momentum=None).
  pc.problem.momentum = *momentum(o.cumulative && !pc.problem.op.running_stats);
  pc.num_batches_tracked = pick<std::int64_t>({0, 1, 5, 1000});
  draw_special_running(pc, o);
  return pc;
}

}  // namespace

// ---- The fold and the SyncBN merge -------------------------------------------------------------

namespace {

// A value at 10^k·(1 + small) with k drawn around 0 (the running mean, the layer's bias).
float offset_value(int lo, int hi) {
  const double base = (coin(2) ? -1.0 : 1.0) * pow10(int_toward(lo, hi, 0));
  return static_cast<float>(base * (1.0 + static_cast<double>(*float32(-8, -1))));
}

// A variance of one of the adversarial kinds, relative to ε: 0, below ε, near ε, far above it,
// a subnormal, or wide.
float adversarial_var(double eps) {
  switch (*rc::gen::inRange(0, 7)) {
    case 0:
      return 0.0F;
    case 1:
      return static_cast<float>(eps * std::ldexp(1.0, -int_toward(1, 20, 1)));
    case 2:
      return static_cast<float>(eps * (1.0 + static_cast<double>(*float32(-10, -1))));
    case 3:
      return std::bit_cast<float>(std::max(1U, mantissa()));
    case 4:
      return make_float(false, int_toward(-30, 30, 0), mantissa());
    default:
      return static_cast<float>(
          std::ldexp(1.0 + static_cast<double>(mantissa()) * 0x1p-23, int_toward(-6, 6, 0)));
  }
}

double operation_eps() {
  return pick<double>({1e-5, 1e-3, 0.0, 0.5, 0x1p-20});
}

std::string hex_of(double v) {
  char text[40];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}

float special_value(bool variance) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return variance ? pick<float>({nan, inf}) : pick<float>({nan, inf, -inf});
}

}  // namespace

rc::Gen<fold_data> fold_data_of(data_domain domain) {
  return rc::gen::exec([domain]() {
    fold_data d;
    d.out_channels = int_toward(1, 8, 1);
    d.fan_in = pick<std::int64_t>({1, 2, 3, 9, 16, 27});
    d.eps = operation_eps();
    const bool bias = !coin(3);
    const auto O = static_cast<std::size_t>(d.out_channels);
    for (std::size_t o = 0; o < O; ++o) {
      const float mean = coin(4) ? 0.0F : offset_value(-3, 6);
      d.running_mean.push_back(mean);
      // The layer's bias near the running mean half of the time: b − μ cancels.
      if (bias) d.bias.push_back(coin(2) ? mean * (1.0F + *float32(-24, -8)) : offset_value(-3, 3));
      d.running_var.push_back(adversarial_var(d.eps > 0 ? d.eps : 1e-5));
      d.gamma.push_back(coin(6) ? 1.0F : make_float(coin(4), int_toward(-12, 12, 0), mantissa()));
      d.beta.push_back(coin(6) ? 0.0F : make_float(coin(2), int_toward(-10, 10, 0), mantissa()));
      for (std::int64_t k = 0; k < d.fan_in; ++k) {
        d.weight.push_back(coin(12) ? 0.0F
                                    : make_float(coin(2), int_toward(-20, 8, -2), mantissa()));
      }
    }
    if (domain == data_domain::any && coin(2)) {
      // One input of one channel NaN or infinite.
      const auto o = static_cast<std::size_t>(*rc::gen::inRange<std::int64_t>(0, d.out_channels));
      switch (*rc::gen::inRange(0, 5)) {
        case 0:
          d.running_mean[o] = special_value(false);
          break;
        case 1:
          d.running_var[o] = special_value(true);
          break;
        case 2:
          d.gamma[o] = special_value(false);
          break;
        case 3:
          d.beta[o] = special_value(false);
          break;
        default:
          if (d.fan_in > 0) {
            d.weight[o * static_cast<std::size_t>(d.fan_in)] = special_value(false);
          } else if (!d.bias.empty()) {
            d.bias[o] = special_value(false);
          }
      }
    }
    return d;
  });
}

rc::Gen<syncbn_data> syncbn_data_of(const std::string& convention, data_domain domain,
                                    bool cumulative) {
  return rc::gen::exec([convention, domain, cumulative]() {
    syncbn_data d;
    d.convention = convention;
    d.channels = int_toward(1, 4, 1);
    const int shards = int_toward(1, 8, 2);
    std::int64_t total = 0;
    for (int k = 0; k < shards; ++k) {
      d.counts.push_back(pick<std::int64_t>({4, 0, 1, 2, 3, 7, 16, 33, 100}));
      total += d.counts.back();
    }
    if (total < 2) d.counts.back() += 2 - total;  // two elements in all: a variance exists
    d.eps = operation_eps();
    const auto C = static_cast<std::size_t>(d.channels);
    const auto S = d.counts.size();
    d.shard_mean.assign(S * C, 0.0F);
    d.shard_var.assign(S * C, 0.0F);
    for (std::size_t c = 0; c < C; ++c) {
      // The channel's shards: means around one offset, near each other or far apart, variances
      // of the adversarial kinds (near-constant shards have a variance near 0 or ε).
      const double offset = coin(3) ? 0.0 : static_cast<double>(offset_value(-2, 6));
      const int apart = int_toward(-20, 8, -4);  // shard means spread by 2^apart (relative)
      for (std::size_t k = 0; k < S; ++k) {
        const std::size_t i = k * C + c;
        if (d.counts[k] == 0) continue;
        const double scale = offset != 0 ? std::fabs(offset) : 1.0;
        d.shard_mean[i] = static_cast<float>(
            offset + scale * std::ldexp(static_cast<double>(*float32(-4, 1)), apart));
        if (d.counts[k] > 1) d.shard_var[i] = adversarial_var(d.eps > 0 ? d.eps : 1e-5);
      }
      d.running_mean.push_back(coin(3) ? 0.0F : offset_value(-2, 4));
      d.running_var.push_back(adversarial_var(1.0));
    }
    d.momentum = cumulative && coin(4) ? std::nullopt
                                       : std::optional<double>(pick<double>({0.1, 0.3, 0.01, 0.9}));
    d.num_batches_tracked = pick<std::int64_t>({0, 1, 5});
    if (domain == data_domain::any && coin(2)) {
      // In one channel: a shard whose data held a NaN or an infinity (its mean NaN or ±Inf and
      // its variance NaN, as a shard's own batch norm computes them), or a running statistic NaN
      // or infinite.
      const auto c = static_cast<std::size_t>(*rc::gen::inRange<std::int64_t>(0, d.channels));
      const auto k = static_cast<std::size_t>(
          *rc::gen::inRange<std::int64_t>(0, static_cast<std::int64_t>(S)));
      switch (*rc::gen::inRange(0, 3)) {
        case 0:
          if (d.counts[k] > 0) {
            d.shard_mean[k * C + c] = special_value(false);
            d.shard_var[k * C + c] = std::numeric_limits<float>::quiet_NaN();
          }
          break;
        case 1:
          d.running_mean[c] = special_value(false);
          break;
        default:
          d.running_var[c] = special_value(true);
      }
    }
    return d;
  });
}

void show_fold_data(const fold_data& d, std::ostream& os) {
  os << "fold " << d.out_channels << "x" << d.fan_in << " eps=" << hex_of(d.eps)
     << (d.bias.empty() ? " without bias" : " with bias");
  show_vector(os, "weight", d.weight);
  if (!d.bias.empty()) show_vector(os, "bias", d.bias);
  show_vector(os, "gamma", d.gamma);
  show_vector(os, "beta", d.beta);
  show_vector(os, "running_mean", d.running_mean);
  show_vector(os, "running_var", d.running_var);
}

void show_syncbn_data(const syncbn_data& d, std::ostream& os) {
  os << "syncbn_merge of " << d.counts.size() << " shards, " << d.channels
     << " channels, convention=" << d.convention << " eps=" << hex_of(d.eps)
     << " momentum=" << (d.momentum ? hex_of(*d.momentum) : std::string("None"))
     << " num_batches_tracked=" << d.num_batches_tracked << "\n  count = [";
  for (std::size_t k = 0; k < d.counts.size(); ++k) os << (k > 0 ? ", " : "") << d.counts[k];
  os << ']';
  show_vector(os, "shard_mean", d.shard_mean);
  show_vector(os, "shard_var", d.shard_var);
  show_vector(os, "running_mean", d.running_mean);
  show_vector(os, "running_var", d.running_var);
}

namespace {

// The batch-norm case of property_case_of, in float32.
property_case batch_norm_case(const case_options& o) {
  {
    property_case pc;
    pc.problem = *problem(o.shape);
    const geometry g(pc.problem);
    const std::int64_t C = g.c();
    const auto E = static_cast<std::size_t>(g.elements());
    pc.src.assign(E, 0.0F);
    pc.diff_dst.assign(E, 0.0F);
    const reduction_map map(pc.problem.op, g);
    const std::int64_t L = map.group_size();
    std::vector<double> var_of(static_cast<std::size_t>(C), 0.0);
    bool any_constant = false;
    for (std::int64_t c = 0; c < C; ++c) {
      // The channel's data, and its mean (for the running mean below).
      double mean = 0;
      const double var = draw_group(pc, o, L, true, [&](std::int64_t k) {
        return static_cast<std::size_t>(map.member(c, k));
      });
      for (std::int64_t k = 0; k < L; ++k) {
        mean += static_cast<double>(pc.src[static_cast<std::size_t>(map.member(c, k))]);
      }
      mean = L > 0 ? mean / static_cast<double>(L) : 0.0;
      var_of[static_cast<std::size_t>(c)] = var;
      if (!(var > 0)) any_constant = true;
      pc.affine = true;
      const float gamma = draw_gamma();
      const float beta = draw_beta();
      pc.gamma.push_back(gamma);
      pc.beta.push_back(beta);
      // Running statistics away from 0 and 1.
      const double sd = var > 0 && std::isfinite(var) ? std::sqrt(var) : 1.0;
      pc.running_mean.push_back(
          static_cast<float>(mean * (1.0 + std::ldexp(static_cast<double>(*float32(-8, -1)), 0)) +
                             sd * static_cast<double>(*float32(-4, 1))));
      pc.running_var.push_back(draw_running_var(var));
    }
    if (coin(10)) {
      pc.affine = false;
      std::fill(pc.gamma.begin(), pc.gamma.end(), 1.0F);
      std::fill(pc.beta.begin(), pc.beta.end(), 0.0F);
    }
    pc.problem.eps = draw_eps(var_of, any_constant);
    pc.problem.momentum = *momentum(o.cumulative);
    pc.num_batches_tracked = pick<std::int64_t>({0, 1, 5, 1000});
    draw_special_running(pc, o);
    return pc;
  }
}

// The case in `t`: a few values of the data format by bit pattern in src and diff_dst (in a
// quarter of the cases each), then every value rounded to its role's format.
void in_types(property_case& pc, const data_types& t) {
  pc.problem.types = t;
  const float_format& d = format_of(t.data);
  if (t.data != format_id::float32) {
    for (std::vector<float>* v : {&pc.src, &pc.diff_dst}) {
      if (v->empty() || !coin(4)) continue;
      const int count = *rc::gen::inRange(1, 4);
      for (int i = 0; i < count; ++i) {
        const auto k = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, v->size()));
        (*v)[k] = *narrow_special(d);
      }
    }
  }
  round_inputs(pc, t);
}

}  // namespace

rc::Gen<float> narrow_special(const float_format& f) {
  return rc::gen::exec([&f]() {
    const float sign = coin(2) ? -1.0F : 1.0F;
    const int fraction_bits = f.precision - 1;
    const auto fraction = [&] {
      return static_cast<double>(*rc::gen::inRange<std::uint32_t>(0, 1U << fraction_bits));
    };
    const double largest = std::ldexp(2.0 - std::ldexp(1.0, -fraction_bits), f.emax);
    switch (*rc::gen::inRange(0, 4)) {
      case 0:  // a subnormal of the format: a fraction times 2^(emin − p + 1)
        return sign *
               static_cast<float>(std::ldexp(std::max(1.0, fraction()), f.min_ulp_exponent()));
      case 1:  // the largest finite value, where its square is a float32 value (float16); for
               // bfloat16, whose range is float32's, the largest value below 2^60, the limit of
               // the sound data (a float32 pipeline squares it)
        return sign * static_cast<float>(2 * f.overflow_exponent() <= 127
                                             ? largest
                                             : std::ldexp(largest, 60 - f.overflow_exponent()));
      case 2: {
        // A value whose square overflows float16 (|x| >= 256) but not float32: for float16 up
        // to its largest value; for bfloat16, whose range is float32's, the same magnitudes.
        const int e = *rc::gen::inRange(8, 16);
        return sign *
               static_cast<float>(std::ldexp(1.0 + std::ldexp(fraction(), -fraction_bits), e));
      }
      default: {
        // 1 plus a few ulps of the format: values one ulp apart, as a near-constant row is.
        const double ulps = static_cast<double>(*rc::gen::inRange(0, 4));
        return sign * static_cast<float>(1.0 + ulps * std::ldexp(1.0, -fraction_bits));
      }
    }
  });
}

rc::Gen<property_case> property_case_of(const case_options& o) {
  return rc::gen::exec([o]() {
    property_case pc = o.ops.empty() ? batch_norm_case(o) : family_case(o);
    if (!o.types.all_float32()) in_types(pc, o.types);
    return pc;
  });
}

}  // namespace gen
}  // namespace bnoracle
