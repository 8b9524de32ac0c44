// One call of one mode of a kernel under test, from data in logical order.
//
// `invoke` is the single place where bnoracle lays tensors out in memory for a kernel, runs it
// (isolated or inline, see isolation.hpp) and reads the outputs back. The conformance runner,
// `verify` and the property suite all call kernels through it.
//
// Memory: src, diff_dst, dst and diff_src are placed through the problem's strides. Their
// buffer spans [min offset, max offset] of the geometry, so negative strides work (the pointer
// handed to the kernel is that of logical element 0, inside the buffer). Positions no logical
// element maps to (padding of a strided view) hold a signalling sentinel: reading one poisons
// the kernel's result, and writing one into dst/diff_src is reported.
#pragma once

#include "bnoracle/isolation.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/problem.hpp"
#include "bnoracle/reference.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bnoracle {

struct call_request {
  bn_mode mode = bn_mode::forward_training;
  bn_problem problem;          // shape, layout/strides, ε, momentum (in the kernel's convention)
  bool affine = true;          // gamma and beta given, diff_gamma and diff_beta wanted
  bool track_running = false;  // forward training: update the running statistics in place
  // Per-element tensors in canonical logical order (n, c, spatial...).
  std::vector<float> src;
  std::vector<float> diff_dst;  // backward modes
  // Per-channel vectors (C entries).
  std::vector<float> gamma, beta;                // when affine
  std::vector<float> running_mean, running_var;  // inference; forward training with tracking
  std::int64_t num_batches_tracked = 0;          // forward training with tracking
  // Backward training: what the kernel's own forward training saved (empty: none passed).
  std::vector<float> save_mean, save_stat;
};

struct call_options {
  bool isolate = true;  // run_kernel_isolated (false: in-process, for debugging)
  std::chrono::milliseconds timeout{20000};
};

// The options of `bnoracle check` that reproduce `o` where it differs from the defaults, each
// with a leading blank: " --timeout 0.5", " --no-isolation", " --fork-per-call" (or ""). A
// reproduction command must carry them: a shorter timeout turns a slow kernel into a fault.
[[nodiscard]] std::string repro_options(const call_options& o);

struct call_result {
  run_result run;  // how the call went; the fields below are meaningful when run.ok()
  bnk_status status = BNK_FAILED;
  std::string message;
  // Outputs, empty when the mode does not produce them. Per-element ones in logical order.
  std::vector<float> dst, diff_src, diff_gamma, diff_beta;
  std::vector<float> save_mean, save_stat;       // forward training, when the kernel saves
  std::vector<float> running_mean, running_var;  // forward training with tracking
  std::int64_t num_batches_tracked = 0;          // forward training with tracking
  std::string padding_written;  // non-empty: the kernel wrote into the padding of dst/diff_src

  // The call returned BNK_OK without any fault.
  [[nodiscard]] bool ok() const { return run.ok() && status == BNK_OK && padding_written.empty(); }
  // One sentence: the fault, the status and message, or "ok".
  [[nodiscard]] std::string describe() const;
};

// Runs `request.mode` of `kernel`. Outputs start as NaN, so an element the kernel never writes
// cannot pass by accident. Throws invalid_problem for an invalid problem and
// std::invalid_argument when a tensor has the wrong size.
[[nodiscard]] call_result invoke(bn_kernel& kernel, const call_request& request,
                                 const call_options& options);

// ---- The operations beside the four modes (kernel_abi.h) ----------------------------------------

// One SyncBN merge: K shards' per-channel (count, mean, biased variance) in float32.
struct syncbn_request {
  std::int64_t channels = 0;         // C
  std::vector<std::int64_t> counts;  // K (K >= 1)
  std::vector<float> shard_mean;     // K·C, shard-major
  std::vector<float> shard_var;      // K·C
  double eps = 1e-5;
  std::optional<double> momentum;  // in the kernel's convention; nullopt: cumulative
  bool track_running = true;
  std::vector<float> running_mean, running_var;  // C each, when track_running
  std::int64_t num_batches_tracked = 0;
};

// One fold of an inference batch norm into the preceding layer (O output channels, K weights
// per output channel).
struct fold_request {
  std::int64_t out_channels = 0;
  std::int64_t fan_in = 0;
  std::vector<float> weight;                                  // O·K
  std::vector<float> bias;                                    // O, or empty: the layer has no bias
  std::vector<float> gamma, beta, running_mean, running_var;  // O each
  double eps = 1e-5;
};

// What such a call returned. `outputs` holds, on BNK_OK, every output by its fixture name:
// "mean", "var", "invstd" and (when tracking) "running_mean", "running_var" for the merge;
// "weight", "bias" for the fold.
struct op_result {
  run_result run;
  bnk_status status = BNK_FAILED;
  std::string message;
  std::map<std::string, std::vector<float>> outputs;
  std::int64_t num_batches_tracked = 0;  // merge with tracking

  [[nodiscard]] bool ok() const { return run.ok() && status == BNK_OK; }
  [[nodiscard]] std::string describe() const;
};

// Run the merge or the fold, isolated like `invoke` (outputs start as NaN; inputs are read-only).
// A kernel that does not provide the operation gives BNK_UNSUPPORTED. Throw
// std::invalid_argument when a vector has the wrong size or a count is negative.
[[nodiscard]] op_result invoke_syncbn_merge(bn_kernel& kernel, const syncbn_request& request,
                                            const call_options& options);
[[nodiscard]] op_result invoke_fold(bn_kernel& kernel, const fold_request& request,
                                    const call_options& options);

// Logical order <-> memory image starting at the geometry's min offset.
[[nodiscard]] std::vector<float> to_memory(const geometry& g, const std::vector<float>& logical,
                                           float padding);
[[nodiscard]] std::vector<float> to_logical(const geometry& g, const float* element0);

}  // namespace bnoracle
