// Running-statistics conventions as data.
//
// Frameworks disagree on which value the momentum weighs, on the estimator of the running
// variance, on cumulative averaging and on degenerate batches; porting weights between them
// silently corrupts models. Each named record states one framework's convention; the facts and
// the source lines they come from are in docs/conventions.md. A user states any other convention
// as its fields ("momentum=new,running_var=biased"), and a kernel that keeps no running
// statistics claims "none".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bnoracle {

// Which value the user's momentum parameter multiplies.
enum class momentum_weighs : std::uint8_t {
  new_value,  // running = (1 − m)·old + m·batch        (PyTorch, cuDNN, TensorFlow, MIOpen)
  old_value,  // running = m·old + (1 − m)·batch        (Keras, ONNX, Flax)
};

enum class variance_estimator : std::uint8_t {
  biased,    // σ² = Σ(x − μ)²/L
  unbiased,  // σ²·L/(L − 1)
};

// Training with one value per channel (L = 1), where L/(L − 1) is 0/0.
enum class single_value_rule : std::uint8_t {
  refuse,         // the framework raises an error; a conforming kernel must refuse too
  no_correction,  // the Bessel factor is skipped: the running variance takes σ² = 0
  undefined,      // 0/0 propagates: running variance NaN
  not_applicable  // biased estimator: nothing special happens
};

// Training with an empty batch (L = 0): no batch statistics exist.
enum class empty_batch_rule : std::uint8_t {
  unchanged,    // running statistics are left as they were
  undefined,    // running statistics become NaN (0/0)
  refuse,       // the framework raises an error
  unspecified,  // the framework's sources do not say; any running statistics are accepted
};

// What the forward pass in training saves for the backward pass.
enum class saved_statistics : std::uint8_t { mean_invstd, mean_var, none };

struct convention {
  std::string_view name;
  momentum_weighs weighs;
  variance_estimator running_var;
  bool cumulative;                         // momentum = None (factor 1/num_batches_tracked) exists
  std::optional<double> default_momentum;  // in the framework's own sense (see `weighs`)
  std::optional<double> default_eps;       // nullopt: the API has no default
  double min_eps;  // ε floor some wrappers apply before the kernel (0: none)
  saved_statistics saved;
  single_value_rule single_value;
  empty_batch_rule empty_batch;
  bool running_stats = true;  // false: the "none" record, a kernel without running statistics
};

// The frameworks' named records (not "none", not records stated by fields).
[[nodiscard]] std::span<const convention> all_conventions();

// A convention by name ("pytorch", "none") or by its fields, comma-separated, in any order:
//   momentum=new|old                   which value the momentum multiplies        (required)
//   running_var=biased|unbiased        the running variance's estimator           (required)
//   cumulative=yes|no                  momentum=None exists                       (no)
//   l1=refuse|no_correction|undefined|not_applicable|compute
//                                      training with L = 1; compute means no special case and
//                                      needs the biased estimator     (biased: compute; else
//                                      undefined)
//   l0=unchanged|undefined|refuse|unspecified   training with L = 0         (unspecified)
//   saved=mean_invstd|mean_var|none    what forward training saves              (mean_invstd)
//   default_momentum=<number>|none, default_eps=<number>|none, min_eps=<number>  (none, none, 0)
// A record stated by fields lives as long as the process; its name is its canonical spelling
// (to_fields), so that two spellings of one convention have the same name. nullptr when the
// text is neither a name nor valid fields; convention_error says why.
[[nodiscard]] const convention* find_convention(std::string_view name_or_fields);
[[nodiscard]] std::string convention_error(std::string_view name_or_fields);
// The canonical field spelling of a record: the required fields, then those that differ from
// their defaults, in the order above. "none" for the record without running statistics.
[[nodiscard]] std::string to_fields(const convention& c);

[[nodiscard]] std::string_view to_string(momentum_weighs v);
[[nodiscard]] std::string_view to_string(variance_estimator v);
[[nodiscard]] std::string_view to_string(single_value_rule v);
[[nodiscard]] std::string_view to_string(empty_batch_rule v);
[[nodiscard]] std::string_view to_string(saved_statistics v);

// True when a running state can be carried to the next step: every mean finite, every variance
// finite and >= 0. A NaN or infinite running statistic leaves an undefined update; `check` and
// the fixtures then start the next step (and the eval modes) from the case's own statistics.
[[nodiscard]] bool valid_running_state(std::span<const float> mean, std::span<const float> var);

}  // namespace bnoracle
