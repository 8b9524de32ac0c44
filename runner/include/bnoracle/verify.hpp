// Golden fixtures from the command line: export the corpus, produce results from a plugin
// kernel, and verify results written by any implementation.
#pragma once

#include "bnoracle/fixture.hpp"
#include "bnoracle/runner.hpp"

#include <string>
#include <vector>

namespace bnoracle {

// Every *.json fixture under `dir`, sorted, as paths relative to `dir` (without ".json").
[[nodiscard]] std::vector<std::string> list_fixtures(const std::string& dir);

// Writes the fixtures of `cases` under `out`, plus the fold and SyncBN fixtures when a seed is
// given; returns the number of files written. Each file is written atomically (files.hpp).
// Unless `force`, refuses (environment_error, before writing anything) when a file it would
// replace is not a bnoracle fixture.
std::size_t export_fixtures(const std::vector<case_spec>& cases, const std::string& out,
                            std::optional<std::uint64_t> fold_and_syncbn_seed, bool force = false);

// What `kernel` computes for one fixture, as a results record (a fault is status "failed" with
// the fault as the message). Fold and SyncBN-merge fixtures go to the kernel's optional entry
// points ("unsupported" when it has none).
[[nodiscard]] results kernel_results(bn_kernel& kernel, const fixture& f,
                                     const run_options& options);

// Judges one results record against its fixture: the case result `verify` reports. Throws
// fixture_error when an output has the wrong number of values.
[[nodiscard]] case_result judge_fixture(const fixture& f, const results& res,
                                        const run_options& options);

// Runs `kernel` on every fixture under `fixtures` and writes one results file per fixture under
// `out` (same relative path, written atomically). Returns the number of files written. A fault
// is written as status "failed" with "fault": true. Unless `force`, refuses (environment_error,
// before running anything) when a file it would replace is not a bnoracle results file.
std::size_t write_kernel_results(bn_kernel& kernel, const std::string& fixtures,
                                 const std::string& out, const run_options& options,
                                 bool force = false);

// Judges the results under `results_dir` against the fixtures under `fixtures_dir`. Throws
// fixture_error for a malformed fixture or results file (exit code 2 in the CLI).
[[nodiscard]] run_summary verify_results(const std::string& fixtures_dir,
                                         const std::string& results_dir, const run_options& options,
                                         const progress_fn& progress);

}  // namespace bnoracle
