// `bnoracle identify`: infer the running-statistics convention a kernel actually follows.
#pragma once

#include "bnoracle/runner.hpp"

#include <string>
#include <vector>

namespace bnoracle {

struct identify_result {
  std::string weighs;                // "new", "old" or "unknown"
  std::string estimator;             // "biased", "unbiased" or "unknown"
  std::string cumulative;            // "supported", "unsupported" or "wrong"
  std::string single_value;          // what L = 1 does: "refuse", "no_correction", "undefined", ...
  std::string empty_batch;           // what L = 0 does: "unchanged", "undefined", "refuse", ...
  std::vector<std::string> matches;  // conventions whose record agrees on every field observed
  // What was observed in the field syntax --convention takes (convention.hpp), canonical; "none"
  // for a kernel without running statistics; empty when a probe gave no usable answer.
  std::string fields;
  std::vector<std::string> notes;  // evidence, one line per probe
  bool fault = false;              // a probe crashed or hung
};

// Runs a handful of forward-training probes (isolated like `check`) and reads the running
// statistics. Momentum 0.25 and data with batch mean 1, biased variance 1 and unbiased 4/3 make
// every hypothesis give a different answer.
[[nodiscard]] identify_result identify(bn_kernel& kernel, const run_options& options);

}  // namespace bnoracle
