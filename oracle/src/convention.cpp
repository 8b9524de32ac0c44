#include "bnoracle/convention.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>

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

namespace {

// A kernel without running statistics: nothing about running statistics applies, and L = 1 is
// computed like any other size.
const convention k_no_running{"none",
                              momentum_weighs::new_value,
                              variance_estimator::biased,
                              false,
                              k_none,
                              k_none,
                              0.0,
                              saved_statistics::mean_invstd,
                              single_value_rule::not_applicable,
                              empty_batch_rule::unspecified,
                              false};

template <class E, std::size_t K>
std::optional<E> parse_enum(std::string_view text, const std::array<E, K>& values) {
  for (const E v : values) {
    if (to_string(v) == text) return v;
  }
  return std::nullopt;
}

std::string shortest(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return {buf, r.ptr};
}

std::optional<double> parse_number(std::string_view text) {
  double v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

single_value_rule default_l1(variance_estimator e) {
  return e == variance_estimator::biased ? single_value_rule::not_applicable
                                         : single_value_rule::undefined;
}

struct parsed {
  convention record{};
  std::string error;
};

// Parses the field syntax; the record's name is left empty.
parsed parse_fields(std::string_view text) {
  parsed out;
  convention& c = out.record;
  c.cumulative = false;
  c.min_eps = 0.0;
  c.saved = saved_statistics::mean_invstd;
  c.empty_batch = empty_batch_rule::unspecified;
  std::optional<momentum_weighs> weighs;
  std::optional<variance_estimator> estimator;
  std::optional<std::string_view> l1;
  std::array<bool, 9> seen{};
  constexpr std::array<std::string_view, 9> k_fields{
      "momentum", "running_var",      "cumulative",  "l1",     "l0",
      "saved",    "default_momentum", "default_eps", "min_eps"};
  const auto fail = [&](const std::string& why) {
    out.error = why;
    return out;
  };
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return fail("'" + std::string(item) + "' is not field=value");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    std::size_t k = 0;
    while (k < k_fields.size() && k_fields[k] != key) ++k;
    if (k == k_fields.size()) {
      return fail("unknown field '" + std::string(key) +
                  "' (fields: momentum, running_var, cumulative, l1, l0, saved, "
                  "default_momentum, default_eps, min_eps)");
    }
    if (seen[k]) return fail("field '" + std::string(key) + "' given twice");
    seen[k] = true;
    const auto bad = [&](const char* allowed) {
      return fail(std::string(key) + "=" + std::string(value) + ": expected " + allowed);
    };
    switch (k) {
      case 0:
        weighs =
            parse_enum(value, std::array{momentum_weighs::new_value, momentum_weighs::old_value});
        if (!weighs) return bad("new or old");
        break;
      case 1:
        estimator =
            parse_enum(value, std::array{variance_estimator::biased, variance_estimator::unbiased});
        if (!estimator) return bad("biased or unbiased");
        break;
      case 2:
        if (value != "yes" && value != "no") return bad("yes or no");
        c.cumulative = value == "yes";
        break;
      case 3:
        l1 = value;
        break;
      case 4: {
        const auto v =
            parse_enum(value, std::array{empty_batch_rule::unchanged, empty_batch_rule::undefined,
                                         empty_batch_rule::refuse, empty_batch_rule::unspecified});
        if (!v) return bad("unchanged, undefined, refuse or unspecified");
        c.empty_batch = *v;
        break;
      }
      case 5: {
        const auto v =
            parse_enum(value, std::array{saved_statistics::mean_invstd, saved_statistics::mean_var,
                                         saved_statistics::none});
        if (!v) return bad("mean_invstd, mean_var or none");
        c.saved = *v;
        break;
      }
      case 6:
      case 7: {
        std::optional<double>& field = k == 6 ? c.default_momentum : c.default_eps;
        if (value == "none") break;
        field = parse_number(value);
        if (!field || *field < 0 || (k == 6 && *field > 1)) {
          return bad(k == 6 ? "a number in [0, 1] or none" : "a finite number >= 0 or none");
        }
        break;
      }
      default: {
        const std::optional<double> v = parse_number(value);
        if (!v || *v < 0) return bad("a finite number >= 0");
        c.min_eps = *v;
        break;
      }
    }
  }
  if (!weighs || !estimator) {
    return fail(
        "fields momentum and running_var are required (e.g. momentum=new,"
        "running_var=biased)");
  }
  c.weighs = *weighs;
  c.running_var = *estimator;
  c.single_value = default_l1(c.running_var);
  if (l1) {
    const bool compute = *l1 == "compute";
    const auto v =
        compute
            ? std::optional(single_value_rule::not_applicable)
            : parse_enum(
                  *l1, std::array{single_value_rule::refuse, single_value_rule::no_correction,
                                  single_value_rule::undefined, single_value_rule::not_applicable});
    if (!v) {
      return fail("l1=" + std::string(*l1) +
                  ": expected refuse, no_correction, undefined, not_applicable or compute");
    }
    if (*v == single_value_rule::not_applicable && c.running_var == variance_estimator::unbiased) {
      return fail("l1=" + std::string(*l1) +
                  ": with running_var=unbiased, L = 1 divides by L - 1 = 0; state refuse, "
                  "no_correction or undefined");
    }
    if (*v == single_value_rule::no_correction && c.running_var == variance_estimator::biased) {
      return fail(
          "l1=no_correction: the biased estimator has no correction to skip; state "
          "compute");
    }
    c.single_value = *v;
  }
  return out;
}

// Records stated by fields, by canonical name. Entries are never removed, so pointers stay
// valid for the life of the process.
struct stated_records {
  std::mutex lock;
  std::deque<std::pair<std::unique_ptr<std::string>, convention>> records;
};

stated_records& stated() {
  static stated_records r;
  return r;
}

}  // namespace

const convention* find_convention(std::string_view name) {
  for (const auto& c : k_conventions) {
    if (c.name == name) return &c;
  }
  if (name == k_no_running.name) return &k_no_running;
  if (name.find('=') == std::string_view::npos) return nullptr;
  stated_records& r = stated();
  // A canonical name already stated (what reports, claims and fixtures carry once read) is found
  // without parsing again: the reference looks its convention up for every problem.
  const auto known = [&r](std::string_view n) -> const convention* {
    for (const auto& [text, c] : r.records) {
      if (*text == n) return &c;
    }
    return nullptr;
  };
  {
    const std::lock_guard<std::mutex> hold(r.lock);
    if (const convention* c = known(name)) return c;
  }
  parsed p = parse_fields(name);
  if (!p.error.empty()) return nullptr;
  const std::string canonical = to_fields(p.record);
  const std::lock_guard<std::mutex> hold(r.lock);
  if (const convention* c = known(canonical)) return c;
  auto owned = std::make_unique<std::string>(canonical);
  p.record.name = *owned;
  r.records.emplace_back(std::move(owned), p.record);
  return &r.records.back().second;
}

std::string convention_error(std::string_view name) {
  if (find_convention(name) != nullptr) return "";
  if (name.find('=') == std::string_view::npos) {
    std::string names;
    for (const auto& c : k_conventions) names += std::string(c.name) + ", ";
    return "unknown convention '" + std::string(name) + "' (named ones: " + names +
           "none; or state its fields, e.g. momentum=new,running_var=biased)";
  }
  return "convention '" + std::string(name) + "': " + parse_fields(name).error;
}

std::string to_fields(const convention& c) {
  if (!c.running_stats) return "none";
  std::string s = "momentum=" + std::string(to_string(c.weighs)) +
                  ",running_var=" + std::string(to_string(c.running_var));
  if (c.cumulative) s += ",cumulative=yes";
  if (c.single_value != default_l1(c.running_var)) {
    s += ",l1=" + std::string(c.single_value == single_value_rule::not_applicable
                                  ? "compute"
                                  : to_string(c.single_value));
  }
  if (c.empty_batch != empty_batch_rule::unspecified) {
    s += ",l0=" + std::string(to_string(c.empty_batch));
  }
  if (c.saved != saved_statistics::mean_invstd) s += ",saved=" + std::string(to_string(c.saved));
  if (c.default_momentum) s += ",default_momentum=" + shortest(*c.default_momentum);
  if (c.default_eps) s += ",default_eps=" + shortest(*c.default_eps);
  if (c.min_eps != 0) s += ",min_eps=" + shortest(c.min_eps);
  return s;
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

bool valid_running_state(std::span<const float> mean, std::span<const float> var) {
  return std::all_of(mean.begin(), mean.end(), [](float v) { return std::isfinite(v); }) &&
         std::all_of(var.begin(), var.end(), [](float v) { return std::isfinite(v) && v >= 0; });
}

}  // namespace bnoracle
