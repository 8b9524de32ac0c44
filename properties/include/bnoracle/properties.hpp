// The property-based conformance suite (RapidCheck).
//
// Each property is a relation every correct batch-norm kernel satisfies, checked on generated
// problems (generators.hpp) against a kernel through the adapter (invoke.hpp), with a tolerance
// from the error model: two kernel outputs whose exact values are equal may differ by the sum
// of their bounds, and a relation that holds exactly in real arithmetic may be missed by the
// sum of the bounds of the outputs it combines (docs/properties.md derives each tolerance).
// A failure is shrunk by RapidCheck to a small counterexample, printed with its shape and every
// value in hex, and a command that reproduces it from the seed.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/generators.hpp"
#include "bnoracle/invoke.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/options.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

// The operation of batch norm a property calls instead of the modes.
enum class property_operation : std::uint8_t { none, fold, syncbn_merge };

struct property_info {
  std::string_view name;     // e.g. "bias_invariance"
  std::string_view summary;  // one line
  // Generated as problems of layer, RMS, group and instance norm (a kernel that declares none
  // of them skips it); otherwise as batch-norm problems.
  bool family = false;
  // The fold or the SyncBN merge: a kernel that does not provide it skips the property.
  property_operation operation = property_operation::none;
};

// Every property, in the order `check` runs them.
[[nodiscard]] std::span<const property_info> property_list();

// Whether property `p` concerns a kernel that declares the ops of `info`, restricted to `op` when
// set: batch norm's properties need batch_norm, the family's one of layer, RMS, group or instance
// norm, those of the fold and the merge that operation too. Without a kernel (`info` null: a
// listing) only `op` decides.
[[nodiscard]] bool property_applies(const property_info& p, const kernel_info* info,
                                    std::optional<op_kind> op);

enum class property_verdict : std::uint8_t { pass, fail, skip };

struct property_result {
  std::string name;
  std::string summary;
  property_verdict verdict = property_verdict::pass;
  int cases = 0;               // cases that passed (before the failure, if any)
  std::string reason;          // fail: what went wrong on the shrunk case; skip: why
  std::string counterexample;  // fail: the shrunk case, shape and values in hex
  std::string repro;           // a command that reproduces the run
  bool fault = false;          // fail: the kernel crashed, hung or wrote out of bounds
  std::uint64_t rapidcheck_seed = 0;
  double seconds = 0;
};

// The kernel call of `mode` for a generated case: its tensors, and the running statistics where
// the mode reads them (inference) or updates them (forward training with `track`).
[[nodiscard]] call_request request_of(const property_case& pc, bn_mode mode, bool track);

// Checks one property (throws std::invalid_argument for an unknown name).
[[nodiscard]] property_result check_property(std::string_view name, bn_kernel& kernel,
                                             const property_options& options);

// `done` of `total` properties checked, the one starting now, and how many failed or faulted.
using property_progress = std::function<void(std::size_t done, std::size_t total,
                                             const std::string& name, std::int64_t failing)>;

// Checks every property whose "property/<name>" matches `filter` (catalog.hpp's name_matches
// rules; empty: all).
// The properties check_properties runs for a kernel declaring `info`, in its order: those that
// apply (property_applies with options.op), match `filter` and fall in options' shard.
[[nodiscard]] std::vector<std::string_view> selected_properties(const kernel_info& info,
                                                                const property_options& options,
                                                                const std::string& filter);

[[nodiscard]] std::vector<property_result> check_properties(bn_kernel& kernel,
                                                            const property_options& options,
                                                            const std::string& filter,
                                                            const property_progress& progress);

// The RapidCheck seed of a property for a run seed (stable across releases: documented).
[[nodiscard]] std::uint64_t property_seed(std::uint64_t seed, std::string_view name);

}  // namespace bnoracle
