#include "bnoracle/judge.hpp"

#include "bnoracle/measure.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace bnoracle {

std::string element_where(const geometry& g, const std::string& name, std::int64_t i,
                          bool per_element) {
  std::ostringstream os;
  os << name << '[';
  if (per_element) {
    const std::int64_t S = g.spatial_size();
    os << "n=" << i / S / g.c() << ",c=" << i / S % g.c() << ",s=" << i % S;
  } else {
    os << "c=" << i;
  }
  os << ']';
  return os.str();
}

// Compares one output of a kernel call with the reference under the error model.
// `got(i)` reads element i (logical index) of the kernel's output.
output_result judge_output(const std::string& shown, const std::string& golden_name,
                           const std::string& bound_name, const reference& ref,
                           const error_model& model, accuracy_level level, double mistrust_fraction,
                           const std::function<float(std::int64_t)>& got) {
  output_result r;
  r.name = shown;
  const std::vector<golden> gold = ref.goldens(golden_name);
  r.count = static_cast<std::int64_t>(gold.size());
  const bool per_element = golden_name == "dst" || golden_name == "diff_src";
  const auto lvl = static_cast<std::size_t>(level);
  std::int64_t judged = 0;
  for (std::int64_t i = 0; i < r.count; ++i) {
    const golden& g = gold[static_cast<std::size_t>(i)];
    const float v = got(i);
    auto note_worst = [&](double ratio, double ulps, double bound_ulps) {
      if (r.worst_index < 0 || ratio > r.worst_ratio) {
        r.worst_ratio = ratio;
        r.worst_index = i;
        r.got = v;
        r.expected = g.value;
        r.worst_ulps = ulps;
        r.worst_bound_ulps = bound_ulps;
      }
    };
    if (g.cls == golden_class::unspecified) continue;
    if (g.cls == golden_class::undefined || g.cls == golden_class::infinite) {
      if (error_ulps(v, g) != 0.0) {
        if (r.class_failure.empty()) {
          r.class_failure =
              element_where(ref.geom(), shown, i, per_element) + ": expected " +
              (g.cls == golden_class::undefined
                   ? std::string("a non-finite value (") + "the exact result is undefined)"
                   : hex_float(g.value)) +
              ", got " + hex_float(v);
        }
        for (bool& p : r.passed) p = false;
        note_worst(std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(),
                   0);
      }
      continue;
    }
    const double ulps = error_ulps(v, g);
    const double ulp = std::ldexp(1.0, g.ulp_exp);
    const double abs_err = std::fabs(ulps) * ulp;
    ++judged;
    if (std::isfinite(ulps)) {
      r.max_ulps = std::max(r.max_ulps, std::fabs(ulps));
      r.sum_sq_ulps += ulps * ulps;
    }
    double ratio_at_level = 0;
    double bound_at_level = 0;
    for (std::size_t l = 0; l < 3; ++l) {
      const double bound = model.bound(bound_name, i, k_accuracy_levels[l]);
      // An infinite bound is no claim at all (docs/error-model.md: τ >= 1, undefined
      // statistics): any result passes, NaN included, and the ratio is 0, not inf/inf.
      const double ratio = std::isinf(bound) ? 0.0
                           : bound > 0
                               ? abs_err / bound
                               : (abs_err > 0 ? std::numeric_limits<double>::infinity() : 0.0);
      if (!(ratio <= 1.0)) r.passed[l] = false;
      if (l == lvl) {
        ratio_at_level = ratio;
        bound_at_level = bound;
      }
    }
    if (std::isfinite(bound_at_level)) ++r.judged;
    // Low signal: the bound swamps the value itself, so agreement says little.
    const double exact_mag = std::fabs(static_cast<double>(g.value) + g.residual * ulp);
    if (g.cls == golden_class::finite && exact_mag <= bound_at_level) ++r.low_signal;
    note_worst(ratio_at_level, ulps, bound_at_level / ulp);
  }
  if (r.worst_index >= 0)
    r.worst_where = element_where(ref.geom(), shown, r.worst_index, per_element);
  r.mistrusted =
      per_element && judged >= 8 &&
      static_cast<double>(r.low_signal) > mistrust_fraction * static_cast<double>(judged);
  return r;
}

}  // namespace bnoracle
