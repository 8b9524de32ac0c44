// Judging one output of a kernel call against the exact reference under the error model.
//
// Class rules come first (docs/reference.md): where the exact result is undefined the kernel must
// produce a non-finite value, where it is infinite the same infinity; `unspecified` elements are
// not judged. Every other element must lie within the error model's bound of the exact value;
// the result records, per accuracy level, whether all do, and the worst element at the gate.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/reference.hpp"

#include "bnoracle/measure.hpp"
#include "bnoracle/output.hpp"
#include "bnoracle/profile.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bnoracle {

// How one output of one call compares with the reference.
struct output_result {
  std::string name;        // "dst", "save_mean", "running_var", ...
  std::int64_t count = 0;  // elements compared
  // Elements whose value was measured against a finite bound at the requested level: what makes
  // a passing output evidence (class rules alone, or bounds of +Inf, claim nothing).
  std::int64_t judged = 0;
  bool passed[3] = {true, true, true};  // per accuracy level (strict, standard, lenient)
  double worst_ratio = 0;               // max |error|/bound at the requested level
  double max_ulps = 0;                  // max |error| in ulps (finite goldens)
  double sum_sq_ulps = 0;               // for the RMS
  std::int64_t worst_index = -1;
  std::string worst_where;  // e.g. "dst[n=1,c=2,s=7]"
  float got = 0, expected = 0;
  double worst_ulps = 0, worst_bound_ulps = 0;
  // The worst element's exact value (got − error; NaN where a class rule judged it) and its
  // bound at the requested level, both in the output's units.
  double worst_exact = std::numeric_limits<double>::quiet_NaN();
  double worst_bound = 0;
  std::string class_failure;    // non-empty: a class rule was broken (NaN lost, Inf wrong...)
  std::int64_t low_signal = 0;  // elements whose |exact| does not exceed the bound
  bool mistrusted = false;
  // error/bound over the whole output, for reports that draw it (profile.hpp); filled only when
  // asked for (run_options::profiles).
  std::optional<output_profile> profile;
};

// Where element `i` of an output of that extent lies, e.g. "dst[n=1,c=2,s=7]" or
// "save_mean[c=3]" (reduction_map's element, group and parameter names).
[[nodiscard]] std::string element_where(const reduction_map& m, const std::string& name,
                                        std::int64_t i, output_extent extent);
// The same for batch norm, where groups and parameters are channels.
[[nodiscard]] std::string element_where(const geometry& g, const std::string& name, std::int64_t i,
                                        bool per_element);

// A value as a person and a machine read it: its decimal (9 significant digits: every float32
// value converts back exactly) and, when finite, its hex float, e.g. "0.750976562 (0x1.804p-1)".
[[nodiscard]] std::string value_text(float v);
// The worst element of an output, as every report states it:
// "dst[n=1,c=2,s=7] got=0.75 (0x1.8p-1) exp=0.750976562 (0x1.804p-1) err=-1.47 ulp (bound 0.78
// ulp<qualifier>)", where `qualifier` is e.g. " at standard, ratio 1.9".
[[nodiscard]] std::string worst_element_text(const output_result& o, const std::string& qualifier);

// The accuracy levels, strictest first.
inline constexpr accuracy_level k_accuracy_levels[3] = {
    accuracy_level::strict, accuracy_level::standard, accuracy_level::lenient};

// The error of a kernel's value against an element of class finite or overflow.
struct element_error {
  double ulps = 0;             // signed, in ulps of the exact value (±inf: not measurable)
  double abs_err = 0;          // |value − exact| (inf: not measurable, e.g. NaN)
  double ulp = 0;              // ulp of the exact value in the output's format
  double exact_magnitude = 0;  // |exact|, for the low-signal rule
};

// What an observer of judge_elements is told about each element, once the rules are applied.
enum class element_kind : std::uint8_t {
  unspecified,  // not judged at all
  by_class,     // undefined or infinite: judged by class (class_ok says how it went)
  no_claim,     // a bound of +Inf at the level: anything passes
  measured,     // |error| over a finite bound: `ratio`
};
struct element_event {
  std::int64_t index = 0;
  element_kind kind = element_kind::unspecified;
  bool class_ok = true;
  double ratio = 0;  // |error|/bound at the requested level (measured elements)
};

// An observer that looks at nothing.
struct ignore_elements {
  void operator()(const element_event& /*unused*/) const {}
};

// The one judging loop: class rules, then |error| against the bound of every level, the worst
// element, the low-signal count and the mistrust rule (docs/error-model.md). What differs
// between judging against the reference (check, the campaign, the properties) and against a
// fixture's stored goldens and bounds (verify) is the source, which provides:
//   std::int64_t count()                       elements of the output
//   golden_class cls(i), float expected(i)     the class and the correctly rounded value
//   float got(i)                               the kernel's value
//   element_error measure(i, v)                for classes finite and overflow
//   double bound(i, accuracy_level)            the error model's bound
//   std::array<double, 3> bounds(i)            the bounds of the three levels (by level)
//   std::string where(i)                       e.g. "dst[n=1,c=2,s=7]"
//   bool per_element()                         one value per data element (mistrust applies)
// `observe` sees every element (the campaign's histograms).
//
// Measure and bounds — most of the cost — are evaluated ahead, a block at a time (on every core
// for an output of at least k_judge_parallel_from elements); the loop that combines them stays
// sequential, in index order, so the result is the same as with one thread, bit for bit.
// measure, bounds, cls and got must therefore be safe to call from several threads at once
// (they only read). A source may also provide
//   void bounds(std::int64_t from, std::int64_t to, std::span<std::array<double, 3>> out)
// the bounds of a range at once (the error model shares the terms of a statistic group), and
//   void begin_block(std::int64_t start, std::int64_t end)   before the block is evaluated
//   void prepare(std::int64_t from, std::int64_t to)          on each thread's part of it
// to compute what cls, expected and measure read for the block's elements (the reference's
// goldens are streamed a block at a time, never materialized whole).
inline constexpr std::int64_t k_judge_block = std::int64_t{1} << 16;
inline constexpr std::int64_t k_judge_parallel_from = std::int64_t{1} << 13;

template <class Source, class Observer = ignore_elements>
[[nodiscard]] output_result judge_elements(std::string name, const Source& src,
                                           accuracy_level level, double mistrust_fraction,
                                           Observer&& observe = {}) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  output_result r;
  r.name = std::move(name);
  r.count = src.count();
  const auto lvl = static_cast<std::size_t>(level);
  std::int64_t judged = 0;
  // Measured elements' errors, bounds and ratios of the current block (k_accuracy_levels is the
  // order of accuracy_level, so levels index these arrays directly).
  static_assert(k_accuracy_levels[0] == accuracy_level::strict &&
                k_accuracy_levels[1] == accuracy_level::standard &&
                k_accuracy_levels[2] == accuracy_level::lenient);
  const auto threads = static_cast<std::int64_t>(std::thread::hardware_concurrency());
  const bool parallel = threads > 1 && r.count >= k_judge_parallel_from;
  std::vector<element_error> errors;
  std::vector<std::array<double, 3>> bounds_ahead;  // by accuracy_level
  std::vector<std::array<double, 3>> ratios_ahead;  // |error|/bound, by accuracy_level
  std::int64_t block_start = -1;
  constexpr bool range_bounds = requires(std::int64_t i, std::span<std::array<double, 3>> out) {
    src.bounds(i, i, out);
  };
  const auto prepare_block = [&](std::int64_t start) {
    const std::int64_t end = std::min(r.count, start + k_judge_block);
    errors.resize(static_cast<std::size_t>(end - start));
    bounds_ahead.resize(static_cast<std::size_t>(end - start));
    ratios_ahead.resize(static_cast<std::size_t>(end - start));
    if constexpr (requires { src.begin_block(start, end); }) src.begin_block(start, end);
    const auto work = [&](std::int64_t from, std::int64_t to) {
      if constexpr (requires { src.prepare(from, to); }) src.prepare(from, to);
      if constexpr (range_bounds) {
        src.bounds(from, to,
                   std::span<std::array<double, 3>>(bounds_ahead)
                       .subspan(static_cast<std::size_t>(from - start),
                                static_cast<std::size_t>(to - from)));
      }
      for (std::int64_t i = from; i < to; ++i) {
        const golden_class c = src.cls(i);
        if (c != golden_class::finite && c != golden_class::overflow) continue;
        const auto k = static_cast<std::size_t>(i - start);
        errors[k] = src.measure(i, src.got(i));
        if constexpr (!range_bounds) bounds_ahead[k] = src.bounds(i);
        for (std::size_t l = 0; l < 3; ++l) {
          const double bound = bounds_ahead[k][l];
          // An infinite bound is no claim at all (docs/error-model.md: τ >= 1, undefined
          // statistics): any result passes, NaN included, and the ratio is 0, not inf/inf.
          ratios_ahead[k][l] = std::isinf(bound) ? 0.0
                               : bound > 0       ? errors[k].abs_err / bound
                                                 : (errors[k].abs_err > 0 ? inf : 0.0);
        }
      }
    };
    if (parallel) {
      const std::int64_t mid = start + (end - start) / 2;
      // An exception on the second thread (the exact path's, an allocation's) is rethrown here.
      std::exception_ptr failure;
      {
        const std::jthread second([&] {
          try {
            work(mid, end);
          } catch (...) {
            failure = std::current_exception();
          }
        });
        work(start, mid);
      }
      if (failure) std::rethrow_exception(failure);
    } else {
      work(start, end);
    }
    block_start = start;
  };
  for (std::int64_t i = 0; i < r.count; ++i) {
    if (i % k_judge_block == 0) prepare_block(i);
    const golden_class cls = src.cls(i);
    const float v = src.got(i);
    auto note_worst = [&](double ratio, double ulps, double ulp, double bound) {
      if (r.worst_index < 0 || ratio > r.worst_ratio) {
        r.worst_ratio = ratio;
        r.worst_index = i;
        r.got = v;
        r.expected = src.expected(i);
        r.worst_ulps = ulps;
        r.worst_bound_ulps = ulp > 0 ? bound / ulp : 0;
        r.worst_bound = bound;
        r.worst_exact = std::isfinite(ulps) && ulp > 0 ? static_cast<double>(v) - ulps * ulp
                                                       : std::numeric_limits<double>::quiet_NaN();
      }
    };
    if (cls == golden_class::unspecified) {
      observe(element_event{i, element_kind::unspecified, true, 0});
      continue;
    }
    if (cls == golden_class::undefined || cls == golden_class::infinite) {
      golden g;
      g.cls = cls;
      g.value = src.expected(i);
      const bool ok = error_ulps(v, g) == 0.0;
      if (!ok) {
        if (r.class_failure.empty()) {
          r.class_failure = src.where(i) + ": expected " +
                            (cls == golden_class::undefined
                                 ? std::string("a non-finite value (the exact result is undefined)")
                                 : hex_float(g.value)) +
                            ", got " + hex_float(v);
        }
        for (bool& p : r.passed) p = false;
        note_worst(inf, inf, 0, 0);
      }
      observe(element_event{i, element_kind::by_class, ok, 0});
      continue;
    }
    const element_error e = errors[static_cast<std::size_t>(i - block_start)];
    ++judged;
    if (std::isfinite(e.ulps)) {
      r.max_ulps = std::max(r.max_ulps, std::fabs(e.ulps));
      r.sum_sq_ulps += e.ulps * e.ulps;
    }
    const auto k = static_cast<std::size_t>(i - block_start);
    const std::array<double, 3>& ratios = ratios_ahead[k];
    for (std::size_t l = 0; l < 3; ++l) {
      if (!(ratios[l] <= 1.0)) r.passed[l] = false;
    }
    const double ratio_at_level = ratios[lvl];
    const double bound_at_level = bounds_ahead[k][lvl];
    const bool claim = std::isfinite(bound_at_level);
    if (claim) ++r.judged;
    // Low signal: the bound swamps the value itself, so agreement says little.
    if (cls == golden_class::finite && e.exact_magnitude <= bound_at_level) ++r.low_signal;
    note_worst(ratio_at_level, e.ulps, e.ulp, bound_at_level);
    observe(element_event{i, claim ? element_kind::measured : element_kind::no_claim, true,
                          ratio_at_level});
  }
  if (r.worst_index >= 0) r.worst_where = src.where(r.worst_index);
  r.mistrusted =
      src.per_element() && judged >= 8 &&
      static_cast<double>(r.low_signal) > mistrust_fraction * static_cast<double>(judged);
  return r;
}

// judge_elements over the reference: output `golden_id` of `ref` (shown as `shown`, bounded as
// `bound_id`) against what the kernel produced, `got(i)` for element i in the reference's index
// order. An output is mistrusted when more than `mistrust_fraction` of its judged per-element
// values are no larger than their bound (docs/error-model.md).
template <class Observer = ignore_elements>
[[nodiscard]] output_result judge_output(const std::string& shown, output_id golden_id,
                                         output_id bound_id, const reference& ref,
                                         const error_model& model, accuracy_level level,
                                         double mistrust_fraction,
                                         const std::function<float(std::int64_t)>& got,
                                         Observer&& observe = {});

// The source judge_output gives judge_elements: the goldens of the current block are computed
// by prepare (each thread its part) and read by cls, expected and measure.
class reference_source {
 public:
  reference_source(const std::string& shown, output_id golden_id, output_id bound_id,
                   const reference& ref, const error_model& model,
                   const std::function<float(std::int64_t)>& got)
      : shown_(shown),
        golden_id_(golden_id),
        bound_id_(bound_id),
        ref_(ref),
        model_(model),
        got_(got),
        ranges_(ref.goldens_by_range(golden_id)) {}
  [[nodiscard]] std::int64_t count() const { return ranges_.size(); }
  void begin_block(std::int64_t start, std::int64_t end) const {
    block_.resize(static_cast<std::size_t>(end - start));
    base_ = start;
  }
  void prepare(std::int64_t from, std::int64_t to) const {
    ranges_.fill(from, to,
                 std::span<golden>(block_).subspan(static_cast<std::size_t>(from - base_),
                                                   static_cast<std::size_t>(to - from)));
  }
  [[nodiscard]] golden_class cls(std::int64_t i) const { return at(i).cls; }
  [[nodiscard]] float expected(std::int64_t i) const { return at(i).value; }
  [[nodiscard]] float got(std::int64_t i) const { return got_(i); }
  [[nodiscard]] element_error measure(std::int64_t i, float v) const;
  [[nodiscard]] double bound(std::int64_t i, accuracy_level l) const {
    return model_.bound(bound_id_, i, l);
  }
  [[nodiscard]] std::array<double, 3> bounds(std::int64_t i) const {
    return model_.bounds(bound_id_, i);
  }
  void bounds(std::int64_t from, std::int64_t to, std::span<std::array<double, 3>> out) const {
    model_.bounds(bound_id_, from, to, out);
  }
  [[nodiscard]] std::string where(std::int64_t i) const {
    return element_where(ref_.map(), shown_, i, describe(golden_id_).extent);
  }
  [[nodiscard]] bool per_element() const { return bnoracle::per_element(golden_id_); }
  // The golden of element i, which must lie in the current block.
  [[nodiscard]] const golden& at(std::int64_t i) const {
    return block_[static_cast<std::size_t>(i - base_)];
  }

 private:
  const std::string& shown_;
  output_id golden_id_;
  output_id bound_id_;
  const reference& ref_;
  const error_model& model_;
  const std::function<float(std::int64_t)>& got_;
  reference::golden_ranges ranges_;
  // The current block's goldens (judge_elements' evaluation state, hence mutable).
  mutable std::vector<golden> block_;
  mutable std::int64_t base_ = 0;
};

template <class Observer>
output_result judge_output(const std::string& shown, output_id golden_id, output_id bound_id,
                           const reference& ref, const error_model& model, accuracy_level level,
                           double mistrust_fraction, const std::function<float(std::int64_t)>& got,
                           Observer&& observe) {
  const reference_source src(shown, golden_id, bound_id, ref, model, got);
  return judge_elements(shown, src, level, mistrust_fraction, std::forward<Observer>(observe));
}

// The same with the outputs named (throws std::out_of_range for a name that is no output).
[[nodiscard]] output_result judge_output(const std::string& shown, const std::string& golden_name,
                                         const std::string& bound_name, const reference& ref,
                                         const error_model& model, accuracy_level level,
                                         double mistrust_fraction,
                                         const std::function<float(std::int64_t)>& got);

}  // namespace bnoracle
