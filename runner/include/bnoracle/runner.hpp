// The conformance runner: runs the case catalog against a kernel and judges every output.
#pragma once

#include "bnoracle/catalog.hpp"
#include "bnoracle/diagnosis.hpp"
#include "bnoracle/error_model.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/options.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bnoracle {

enum class verdict : std::uint8_t { pass, fail, skip, mistrusted, fault };
[[nodiscard]] std::string_view to_string(verdict v);

struct case_result {
  std::string case_name;
  bn_mode mode = bn_mode::forward_training;
  std::string op;       // non-empty for operations that are not a mode (fold, syncbn)
  int step = 0;         // training step (forward training); 0 otherwise
  std::string problem;  // describe(problem)
  std::string tier;
  verdict result = verdict::pass;
  // A pass that compared at least one value against a finite bound (a property that held counts
  // too). A correct refusal, or outputs with no such element, pass without being evidence.
  bool evidence = false;
  std::optional<accuracy_level> best;  // strictest level passed (pass/mistrusted)
  std::string reason;                  // one sentence for fail/skip/fault
  std::vector<output_result> outputs;
  double seconds = 0;
  std::string repro;
  // Where the whole reason was written when the text and JUnit reports shorten it (a property's
  // counterexample can run to megabytes; save_long_reasons), or empty.
  std::string reason_file;
  // The defect hypotheses that explain a failure (diagnosis.hpp); empty when none does.
  std::vector<explanation> explained_by;
};

// Exit codes of a run (README.md): the gate's verdict.
inline constexpr int k_exit_conformant = 0;
inline constexpr int k_exit_not_conformant = 1;
inline constexpr int k_exit_kernel_fault = 3;
inline constexpr int k_exit_nothing_judged = 5;

// The verdict of a whole run. CONFORMANT needs evidence (docs/cli.md, "What a verdict needs"):
// no failure and no fault, at least one judged result, and a judged result for every operation
// the kernel declares that the selected cases exercise.
enum class run_verdict : std::uint8_t { conformant, not_conformant, kernel_fault, nothing_judged };
[[nodiscard]] std::string_view to_string(run_verdict v);

struct run_summary {
  kernel_info kernel;
  run_options options;
  std::vector<case_result> results;
  std::int64_t passed = 0, failed = 0, skipped = 0, mistrusted = 0, faults = 0;
  std::optional<accuracy_level> best;  // strictest level every judged case passes
  // What lacks evidence, one sentence each: a declared operation whose every result was skipped
  // or mistrusted, or the whole run when nothing at all was judged. Filled by tally().
  std::vector<std::string> unjudged;
  [[nodiscard]] run_verdict verdict() const;
  [[nodiscard]] int exit_code() const;  // k_exit_* of verdict()
};

// Progress of a run: `done` of the `total` items of the current phase (catalog cases, then
// properties; fixtures in `verify`), the name of the item starting now (empty when the phase
// ends), and how many results so far failed or faulted.
using progress_fn = std::function<void(std::size_t done, std::size_t total, const std::string& name,
                                       std::int64_t failing)>;
// The results that failed or faulted: what progress_fn reports as `failing`.
[[nodiscard]] std::int64_t count_failing(const std::vector<case_result>& results);

// Sets the verdict of a case whose outputs were judged: fail at the gate's level (the reason
// names the worst element), else mistrusted, else pass; and the strictest level met. Shared by
// `check` and `verify`.
void conclude(case_result& r, accuracy_level gate);
// Counts the verdicts of s.results and the strictest level every judged case meets.
void tally(run_summary& s);

[[nodiscard]] run_summary run_catalog(bn_kernel& kernel, const std::vector<case_spec>& cases,
                                      const run_options& options, const progress_fn& progress);

// What `bnoracle check` runs: the catalog (when options.catalog) and then the property suite
// (when options.properties), each property a result with op "property" and case name
// "property/<name>". Properties count in the verdict but not in the strictest level met, which
// is a measure of the catalog's accuracy (a property passes or fails at the gate's level).
[[nodiscard]] run_summary run_conformance(bn_kernel& kernel, const std::vector<case_spec>& cases,
                                          const run_options& options, const progress_fn& progress);

}  // namespace bnoracle
