#include "bnoracle/convention.hpp"

#include <array>

namespace bnoracle {

namespace {

// Every entry is checked against the framework's source; see docs/conventions.md for the
// evidence behind each field.
// Fields: name, weighs, running_var, cumulative, default momentum, default eps, eps floor,
// saved, L = 1 rule, L = 0 rule. Every field is checked against the framework's own source;
// docs/conventions.md gives the evidence, and the choices where sources disagree (TensorFlow's
// CPU and GPU kernels differ at L = 1; the CPU behaviour is recorded here).
constexpr std::optional<double> k_none = std::nullopt;
const std::array<convention, 7> k_conventions{{
    {"pytorch", momentum_weighs::new_value, variance_estimator::unbiased, true, 0.1, 1e-5, 0.0,
     saved_statistics::mean_invstd, single_value_rule::refuse, empty_batch_rule::unchanged},
    {"cudnn", momentum_weighs::new_value, variance_estimator::unbiased, false, k_none, k_none, 0.0,
     saved_statistics::mean_invstd, single_value_rule::undefined, empty_batch_rule::unspecified},
    {"tensorflow", momentum_weighs::new_value, variance_estimator::unbiased, false, 1.0, 1e-3,
     1.001e-5, saved_statistics::mean_var, single_value_rule::no_correction,
     empty_batch_rule::undefined},
    {"keras", momentum_weighs::old_value, variance_estimator::biased, false, 0.99, 1e-3, 0.0,
     saved_statistics::none, single_value_rule::not_applicable, empty_batch_rule::undefined},
    {"onnx", momentum_weighs::old_value, variance_estimator::biased, false, 0.9, 1e-5, 0.0,
     saved_statistics::none, single_value_rule::not_applicable, empty_batch_rule::unspecified},
    {"flax", momentum_weighs::old_value, variance_estimator::biased, false, 0.99, 1e-5, 0.0,
     saved_statistics::none, single_value_rule::not_applicable, empty_batch_rule::undefined},
    {"miopen", momentum_weighs::new_value, variance_estimator::unbiased, false, k_none, k_none, 0.0,
     saved_statistics::mean_invstd, single_value_rule::no_correction,
     empty_batch_rule::unspecified},
}};

}  // namespace

std::span<const convention> all_conventions() {
  return k_conventions;
}

const convention* find_convention(std::string_view name) {
  for (const auto& c : k_conventions) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string_view to_string(momentum_weighs v) {
  return v == momentum_weighs::new_value ? "new" : "old";
}
std::string_view to_string(variance_estimator v) {
  return v == variance_estimator::biased ? "biased" : "unbiased";
}
std::string_view to_string(single_value_rule v) {
  switch (v) {
    case single_value_rule::refuse:
      return "refuse";
    case single_value_rule::no_correction:
      return "no_correction";
    case single_value_rule::undefined:
      return "undefined";
    case single_value_rule::not_applicable:
      return "not_applicable";
  }
  return "?";
}
std::string_view to_string(empty_batch_rule v) {
  switch (v) {
    case empty_batch_rule::unchanged:
      return "unchanged";
    case empty_batch_rule::undefined:
      return "undefined";
    case empty_batch_rule::refuse:
      return "refuse";
    case empty_batch_rule::unspecified:
      return "unspecified";
  }
  return "?";
}
std::string_view to_string(saved_statistics v) {
  switch (v) {
    case saved_statistics::mean_invstd:
      return "mean_invstd";
    case saved_statistics::mean_var:
      return "mean_var";
    case saved_statistics::none:
      return "none";
  }
  return "?";
}

}  // namespace bnoracle
