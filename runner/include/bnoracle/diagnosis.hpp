// Which bug it is: the diagnosis of a failed run.
//
// A failed result says that a kernel's outputs lie outside their bounds; it does not say why. The
// diagnosis tests hypotheses: each one is a known defect (the defect classes below, the mutation
// catalog's families of bugs) written as a double-precision model of the normalization with that
// one defect — the unbiased variance in the normalization, the momentum read backwards, ε outside
// the square root, the tail of a vectorized loop dropped, a sum accumulated in float16, … A
// hypothesis explains a failed result when the model with the defect predicts every output the
// kernel returned, element by element, within the tolerance of a correct kernel (twice its bound)
// plus a small share of the defect's own effect; outputs the model does not predict are not
// counted for or against it. A kernel whose outputs are wrong in a way no model reproduces gets no
// diagnosis: the diagnosis names a class only on evidence, and a correct kernel, having no failed
// result, never gets one (docs/diagnosis.md).
//
// Over a run, the classes are ranked by how many failed results they explain.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/fixture.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/reference.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

struct run_summary;
struct case_result;

struct defect_class {
  std::string_view id;     // e.g. "variance_estimator"
  std::string_view title;  // e.g. "the biased and unbiased variance estimators swapped"
};

// Every defect class the diagnosis knows, in the order reports list them.
[[nodiscard]] std::span<const defect_class> defect_classes();
[[nodiscard]] const defect_class* find_defect_class(std::string_view id);

// One hypothesis that explains a failed result: its class and what it says, e.g.
// {"variance_estimator", "the output is normalized with the unbiased variance M2/(L − 1)"}.
struct explanation {
  std::string cls;
  std::string evidence;
  bool approximate = false;  // order-dependent rounding, matched in magnitude only
};

// A kernel's outputs of one normalization call, by output: the name the result carries
// ("dst", "save_stat(invstd)", …), the output, and its values (logical order).
struct returned_output {
  std::string name;
  output_id id;
  const std::vector<float>* values;
};

// The largest call the diagnosis tests hypotheses on, in elements: each hypothesis is a model
// evaluation of the whole call, and a failed result of a production shape (check --problem) is
// not worth seconds of them; its failure is reported without a diagnosis.
inline constexpr std::int64_t k_diagnosis_max_elements = std::int64_t{1} << 18;

// The hypotheses that explain a failed call: `judged` are the call's output results (those that
// did not pass at `gate` are the failures to explain), `returned` the kernel's values,
// `num_batches_tracked` what it returned for the counter (forward training with tracking).
// Empty when none does, or when nothing failed.
[[nodiscard]] std::vector<explanation> explain_call(const reference& ref, const error_model& model,
                                                    const bn_inputs& in, bool affine,
                                                    const std::vector<output_result>& judged,
                                                    std::span<const returned_output> returned,
                                                    std::int64_t num_batches_tracked,
                                                    accuracy_level gate);

// The hypotheses that explain a faulted call from its fault: forward inference writing the
// running statistics (its read-only inputs) is the training branch's update run in eval.
[[nodiscard]] std::vector<explanation> explain_fault(bn_mode mode, const std::string& fault);

// The same for a fold or SyncBN-merge case, judged against its fixture's goldens and bounds.
[[nodiscard]] std::vector<explanation> explain_operation(const fixture& f, const results& got,
                                                         const std::vector<output_result>& judged,
                                                         accuracy_level gate);

// The hypotheses that explain a failed property, from the property's name alone where the
// property tests one thing only (a reproducibility property fails for a nondeterministic
// reduction order and for nothing else).
[[nodiscard]] std::vector<explanation> explain_property(std::string_view property);

// One class of a run's diagnosis.
struct diagnosis {
  std::string cls;
  std::string title;
  std::int64_t explained = 0;         // failed results this class explains
  std::int64_t failed = 0;            // failed results of the run
  bool approximate = false;           // every explanation was a magnitude match
  std::vector<std::string> evidence;  // the hypotheses' sentences, most frequent first
  std::string example;                // a result it explains: "case mode"
};

// The classes that explain a run's failed results, the most likely first: ranked by the number
// of failed results explained, then by the number explained exactly (not in magnitude only). A
// class is listed when it explains at least a quarter of what the first explains. Empty when the
// run has no failed result or nothing explains one.
[[nodiscard]] std::vector<diagnosis> diagnose(const run_summary& s);

// One sentence per listed class for reports: "most likely: <title> — explains 38 of 40 failed
// results (…evidence…)".
[[nodiscard]] std::vector<std::string> diagnosis_lines(const std::vector<diagnosis>& d);

}  // namespace bnoracle
