// Judging one output of a kernel call against the exact reference under the error model.
//
// Class rules come first (docs/reference.md): where the exact result is undefined the kernel must
// produce a non-finite value, where it is infinite the same infinity; `unspecified` elements are
// not judged. Every other element must lie within the error model's bound of the exact value;
// the result records, per accuracy level, whether all do, and the worst element at the gate.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/reference.hpp"

#include <cstdint>
#include <functional>
#include <string>

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
  std::string class_failure;    // non-empty: a class rule was broken (NaN lost, Inf wrong...)
  std::int64_t low_signal = 0;  // elements whose |exact| does not exceed the bound
  bool mistrusted = false;
};

// Where element `i` of an output lies, e.g. "dst[n=1,c=2,s=7]" or "save_mean[c=3]".
[[nodiscard]] std::string element_where(const geometry& g, const std::string& name, std::int64_t i,
                                        bool per_element);

// Compares output `golden_name` of `ref` (shown as `shown`, bounded as `bound_name`) with what
// the kernel produced, `got(i)` for element i in the reference's index order. An output is
// mistrusted when more than `mistrust_fraction` of its judged per-element values are no larger
// than their bound (docs/error-model.md).
[[nodiscard]] output_result judge_output(const std::string& shown, const std::string& golden_name,
                                         const std::string& bound_name, const reference& ref,
                                         const error_model& model, accuracy_level level,
                                         double mistrust_fraction,
                                         const std::function<float(std::int64_t)>& got);

// The accuracy levels, strictest first.
inline constexpr accuracy_level k_accuracy_levels[3] = {
    accuracy_level::strict, accuracy_level::standard, accuracy_level::lenient};

}  // namespace bnoracle
