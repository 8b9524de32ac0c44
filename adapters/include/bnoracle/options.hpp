// The options of a conformance check: one struct for `bnoracle check` (run_options), the
// property suite (property_options) and the GoogleTest integration (conformance_options), which
// are names of it.
//
// The order of the first ten fields is part of the interface: BNORACLE_CONFORMANCE_SUITE_WITH_
// OPTIONS takes designated initializers (gtest.hpp), which must follow it. Fields are only
// appended.
#pragma once

#include "bnoracle/error_model.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bnoracle {

// The field order is the interface (designated initializers follow it), so the padding between
// fields of different sizes stays.
struct check_options {  // NOLINT(clang-analyzer-optin.performance.Padding)
  accuracy_level level = accuracy_level::standard;  // the accuracy every comparison requires
  int property_cases = 100;                         // generated cases per property
  std::uint64_t seed = 1;  // data and property seed (GoogleTest: BNORACLE_SEED overrides it)
  bool isolate = true;     // isolate kernel calls (false: in-process; a crash ends the run)
  std::chrono::milliseconds timeout{20000};  // per kernel call (isolated calls only)
  bool catalog = true;                       // run the case catalog
  bool properties = true;                    // run the property suite (docs/properties.md)
  // Only the cases whose name, and the properties whose "property/<name>", matches: `*` matches
  // any run of characters, otherwise a substring match; empty: everything.
  std::string filter{};
  std::string convention{};        // judge against this convention instead of the kernel's claim
  std::string kernel_path{};       // reproduction commands: a plugin path or --exec "CMD"
  bool operations = true;          // with the catalog, the fold and SyncBN-merge cases
  double mistrust_fraction = 0.5;  // see docs/error-model.md
  // The property suite's generators: RapidCheck's size (scales the shapes), the largest
  // N·C·spatial at full size, and the property evaluations spent shrinking a failure.
  int property_max_size = 100;
  std::int64_t property_max_elements = 4096;
  int shrink_budget = 300;
  // Only the cases of this op (the fold and SyncBN merge, and the property suite, are batch
  // norm's); empty: every op.
  std::optional<op_kind> op{};
  // Judge the catalog in these data types (op.hpp's named configurations or any combination):
  // each case's inputs are drawn as for float32 and rounded to their roles' formats. The fold,
  // the SyncBN merge and the property suite are float32 and run only when this is float32.
  // Empty: float32.
  std::optional<data_types> types{};
  // Run only shard `shard_index` (0-based) of `shard_count`: catalog case i (after --filter and
  // --op, with the fold and SyncBN-merge cases after them) when i mod shard_count is
  // shard_index, and property k likewise; `verify` shards its fixtures the same way. The shards
  // of one seed partition the run.
  int shard_index = 0;
  int shard_count = 1;
  // Keep every judged catalog output's profile of error/bound (output_result::profile), which
  // the HTML report draws.
  bool profiles = false;
  // Test the defect hypotheses against every failed result (diagnosis.hpp): what the reports'
  // diagnosis is made of. Costs a few model evaluations per failed result, none for a pass.
  bool diagnose = true;
  // Problems of the user's, run after the catalog's cases (fixtures/catalog.hpp's
  // parse_problem_spec syntax, e.g. "nchw 256x64x56x56 eps=1e-5"): four cases each, named
  // problem<k>/... (the GoogleTest integration; `bnoracle check --problem` on the command line).
  std::vector<std::string> problems{};
  // Processes that check properties at once (`bnoracle check --jobs`): with J > 1, J − 1 helper
  // processes forked at the start of the run check every Jth property each while this one runs
  // the catalog and the rest; results are the same as with one, in the same order. Kernels in a
  // process of their own (--exec) always run with one.
  int jobs = 1;
};

// Whether item `i` of a sharded list belongs to the run's shard.
[[nodiscard]] inline bool in_shard(const check_options& o, std::size_t i) {
  return o.shard_count <= 1 ||
         i % static_cast<std::size_t>(o.shard_count) == static_cast<std::size_t>(o.shard_index);
}

using run_options = check_options;
using property_options = check_options;
using conformance_options = check_options;

}  // namespace bnoracle
