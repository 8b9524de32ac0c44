// The campaign's settings, its per-kernel state and its reports: Markdown (deterministic: no
// timings, host names or absolute paths, kernels named by their table name, so that the same
// command regenerates the same bytes) and JSON.
#pragma once

#include "bnoracle/error_model.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/op.hpp"
#include "stats.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle::campaign {

struct kernel_arg {
  std::string path;
  std::optional<accuracy_level> level;  // from PATH:LEVEL
};

struct settings {
  std::vector<kernel_arg> kernels;
  std::int64_t problems = 1000;                 // per kernel: batch norm's stream
  std::optional<std::int64_t> family_problems;  // each other op's stream (default: `problems`)
  std::optional<op_kind> op;                    // --op: that op's stream only
  // --types: every problem in this configuration (op.hpp's names, or roles one by one), its
  // values drawn by the generators' narrow-format rules; empty: float32.
  std::string types;
  std::uint64_t seed = 1;
  std::optional<accuracy_level> level;  // --level, for kernels without their own
  int jobs = 1;
  bool isolate = true;
  int timeout_seconds = 20;
  std::int64_t max_elements = 4096;
  std::optional<std::int64_t> only;
  // --shard K/N: problems i with i mod N = K − 1 of each stream (0-based shard_index = K − 1).
  std::int64_t shard_index = 0;
  std::int64_t shard_count = 1;
  // --merge FILE...: no problems are run; the JSON reports of the N shards of this very command
  // are merged into its report.
  std::vector<std::string> merge;
  std::string markdown, json;
  std::string program = "bnoracle_campaign";  // as invoked (shown_path of argv[0])
  bool help = false;
};

// The problems of one stream: how many problems of an op each kernel runs.
[[nodiscard]] inline std::int64_t problems_of(const settings& s, op_kind op) {
  return op == op_kind::batch_norm ? s.problems : s.family_problems.value_or(s.problems);
}

// One kernel's problems of one op (a stream of its own: problem i of layer norm and problem i of
// batch norm are unrelated).
struct op_run {
  op_kind op = op_kind::batch_norm;
  kernel_stats stats;
  double seconds = 0;  // stderr only
};

struct kernel_run {
  kernel_arg arg;
  std::unique_ptr<bn_kernel> kernel;
  std::string name;  // the kernel's table name (made unique within a run)
  accuracy_level level = accuracy_level::standard;
  std::string level_source;  // why this level
  std::vector<op_run> ops;   // every op the kernel declares (or --op), batch norm first

  [[nodiscard]] const op_run* find(op_kind op) const {
    for (const op_run& o : ops) {
      if (o.op == op) return &o;
    }
    return nullptr;
  }
  // Counts over every op.
  [[nodiscard]] kernel_stats total() const {
    kernel_stats t;
    for (const op_run& o : ops) t.merge(o.stats);
    return t;
  }
};

// The ops of the family in the report's order, with their section titles.
struct op_title {
  op_kind op;
  std::string_view title;
};
inline constexpr op_title k_op_titles[] = {
    {op_kind::batch_norm, "Batch norm"},       {op_kind::layer_norm, "Layer norm"},
    {op_kind::rms_norm, "RMS norm"},           {op_kind::group_norm, "Group norm"},
    {op_kind::instance_norm, "Instance norm"},
};

// A ratio with four significant digits; "inf"; "-" when nothing was judged.
// A count with thousands separators: 128,881,330.
[[nodiscard]] inline std::string format_count(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

[[nodiscard]] inline std::string format_ratio(double r, bool any = true) {
  if (!any) return "-";
  if (std::isinf(r)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", r);
  return buf;
}

// A kernel path as the report shows it: as given when relative, only the file name when
// absolute (the report must not depend on where the tree lives).
[[nodiscard]] inline std::string shown_path(const std::string& path) {
  if (path.empty() || path.front() != '/') return path;
  return path.substr(path.rfind('/') + 1);
}

// The command that reproduces the report (--markdown, --json and --jobs do not change it), with
// `break_at` before each kernel and the options (" \\\n    " for a shell block).
[[nodiscard]] inline std::string command_line(const settings& s, const std::string& break_at) {
  std::ostringstream os;
  os << s.program;
  for (const kernel_arg& k : s.kernels) {
    os << break_at << "--kernel " << shown_path(k.path);
    if (k.level) os << ':' << to_string(*k.level);
  }
  os << break_at << "--problems " << s.problems;
  if (s.family_problems) os << " --family-problems " << *s.family_problems;
  if (s.op) os << " --op " << to_string(*s.op);
  if (!s.types.empty()) os << " --types " << s.types;
  os << " --seed " << s.seed;
  if (s.level) os << " --level " << to_string(*s.level);
  if (s.max_elements != settings{}.max_elements) os << " --max-elements " << s.max_elements;
  if (s.timeout_seconds != settings{}.timeout_seconds) os << " --timeout " << s.timeout_seconds;
  if (!s.isolate) os << " --no-isolation";
  if (s.shard_count > 1) os << " --shard " << s.shard_index + 1 << '/' << s.shard_count;
  return os.str();
}

[[nodiscard]] inline std::string mode_title(bn_mode m) {
  switch (m) {
    case bn_mode::forward_training:
      return "forward training";
    case bn_mode::forward_inference:
      return "forward inference";
    case bn_mode::backward_training:
      return "backward training";
    case bn_mode::backward_inference:
      return "backward inference";
  }
  return "?";
}

// The output name of a row for a kernel (save_stat says what the kernel saves).
[[nodiscard]] inline std::string row_output(std::size_t r, const kernel_run& k) {
  if (r == fwd_save_stat) {
    return k.kernel->info().saves == BNK_SAVES_MEAN_VAR ? "save_stat (var)" : "save_stat (invstd)";
  }
  return std::string(k_rows[r].output);
}

[[nodiscard]] inline std::string where_cell(const row_stats& r) {
  if (r.max_index < 0) return "-";
  return "#" + std::to_string(r.max_index) + " `" + r.max_where + "`";
}

// The section of one op: per kernel, the outputs' figures and their histograms.
inline void write_op_section(std::ostream& os, const std::vector<kernel_run>& runs, op_kind op,
                             std::string_view title) {
  bool any = false;
  for (const kernel_run& k : runs) any = any || k.find(op) != nullptr;
  if (!any) return;
  os << "\n## " << title << "\n";
  for (const kernel_run& k : runs) {
    const op_run* o = k.find(op);
    if (o == nullptr) continue;
    const kernel_stats& st = o->stats;
    os << "\n### " << k.name << " (" << to_string(k.level) << ")\n"
       << "\n"
          "| mode | output | problems | elements | NaN/Inf | no claim | max ratio | at |\n"
          "|---|---|--:|--:|--:|--:|--:|---|\n";
    for (std::size_t r = 0; r < st.rows.size(); ++r) {
      const row_stats& rs = st.rows[r];
      if (rs.problems == 0) continue;
      os << "| " << mode_title(k_rows[r].mode) << " | " << row_output(r, k) << " | "
         << format_count(rs.problems) << " | " << format_count(rs.judged) << " | "
         << format_count(rs.class_judged) << " | " << format_count(rs.no_claim) << " | "
         << format_ratio(rs.max_ratio, rs.max_index >= 0) << " | " << where_cell(rs) << " |\n";
    }
    os << "\n| mode | output |";
    for (std::size_t b = 0; b < k_buckets; ++b) os << ' ' << bucket_label(b) << " |";
    os << "\n|---|---|";
    for (std::size_t b = 0; b < k_buckets; ++b) os << "--:|";
    os << '\n';
    for (std::size_t r = 0; r < st.rows.size(); ++r) {
      const row_stats& rs = st.rows[r];
      if (rs.problems == 0) continue;
      os << "| " << mode_title(k_rows[r].mode) << " | " << row_output(r, k) << " |";
      for (std::size_t b = 0; b < k_buckets; ++b) os << ' ' << rs.histogram[b] << " |";
      os << '\n';
    }
  }
}

// "20,000 generated batch-norm problems and 5,000 of each other op ..." (or one op's), and
// their data types when not float32.
[[nodiscard]] inline std::string problems_sentence(const settings& s);
[[nodiscard]] inline std::string problems_sentence_untyped(const settings& s) {
  if (s.op) {
    return format_count(problems_of(s, *s.op)) + " generated problems of " +
           std::string(to_string(*s.op)) + " (`--op`)";
  }
  const std::int64_t family = problems_of(s, op_kind::layer_norm);
  return format_count(s.problems) + " generated batch-norm problems and " +
         (family == s.problems ? std::string("as many") : format_count(family)) +
         " of each other op\nof the family it declares (layer, RMS, group and instance norm)";
}
inline std::string problems_sentence(const settings& s) {
  if (s.types.empty()) return problems_sentence_untyped(s);
  return problems_sentence_untyped(s) + ", every tensor in the data types `" + s.types +
         "`\n(values drawn by bit pattern of their formats: subnormals, the largest finite "
         "value,\nsquares that overflow float16, values one ulp apart)";
}

inline void write_markdown(std::ostream& os, const settings& s,
                           const std::vector<kernel_run>& runs) {
  std::int64_t problems = 0, calls = 0, failed = 0, judged = 0, by_class = 0;
  for (const kernel_run& k : runs) {
    const kernel_stats all = k.total();
    const row_stats t = all.total();
    problems += all.problems;
    calls += all.calls;
    failed += all.failed_problems;
    judged += t.judged;
    by_class += t.class_judged;
  }
  // The script that writes the report: tools/run-campaign, or tools/run-campaign-half for a
  // configuration of other data types.
  const std::string script = s.types.empty() ? "tools/run-campaign" : "tools/run-campaign-half";
  os << "# False-positive campaign" << (s.types.empty() ? "" : " in " + s.types) << "\n"
     << "\n"
        "<!-- Generated by bnoracle_campaign (tools/campaign/); do not edit. Regenerate with\n"
        "     "
     << script
     << ". -->\n"
        "\n"
        "Each kernel below ran against "
     << problems_sentence(s)
     << ", in every mode it provides, and\nevery output element was judged against the exact "
        "reference under the "
        "error model\n([error-model.md](error-model.md)) at the kernel's accuracy level, by "
        "`judge_output`, the\nroutine of `bnoracle check` and of the property suite. A correct "
        "kernel must never fail here: a\nfailure is either a false positive of the oracle (a "
        "bound too tight, a reference bug) or a real\nbug of the kernel. The ratio |kernel − "
        "exact| / bound shows how close each kernel comes to its\nbounds: ratios far below 1 "
        "everywhere would mean needlessly loose bounds.\n"
        "\n"
        "**Result: "
     << format_count(failed) << " failing problems** out of " << format_count(problems) << " ("
     << format_count(calls) << " kernel calls, " << format_count(judged)
     << " output elements\njudged by magnitude, " << format_count(by_class)
     << " by class).\n"
        "\n"
        "The command, run from the repository root by `"
     << script
     << "` after it builds the "
        "`ci`\npreset:\n"
        "\n"
        "```sh\n"
     << command_line(s, " \\\n    ") << " \\\n    --markdown " << shown_path(s.markdown)
     << "\n"
        "```\n"
        "\n";
  if (s.isolate) {
    os << "Every kernel call ran isolated, with guard pages around its buffers and read-only "
          "inputs, in a\nworker process of its kernel (fault isolation: "
          "`adapters/include/bnoracle/isolation.hpp`).\n";
  } else {
    os << "Kernel calls ran in-process (`--no-isolation`), for speed: isolation changes how a "
          "kernel is\ncalled, not what it computes, and a crash would still have ended the "
          "worker process and been\nreported as a failure.\n";
  }
  os << "The report does not depend on `--jobs` (worker processes over interleaved problem "
        "indices).\n"
        "\n"
        "## Usage\n"
        "\n"
        "```sh\n"
        "bnoracle_campaign --kernel PATH.so[:LEVEL] [--kernel ...] [--problems N]\n"
        "                  [--family-problems N] [--op OP] [--seed S]\n"
        "                  [--level strict|standard|lenient] [--jobs J] [--no-isolation]\n"
        "                  [--max-elements N] [--only INDEX] [--markdown FILE] [--json FILE]\n"
        "```\n"
        "\n"
        "Exit code 0 when nothing failed, 1 on any failure (each printed with its problem in hex "
        "and a\nreproduction command), 2 on a usage error or a plugin that cannot be loaded. "
        "`--only INDEX`\nruns one problem and shows it with the worst element of every output. "
        "More in\n[tools/campaign/README.md](../tools/campaign/README.md).\n"
        "\n"
        "## The problems\n"
        "\n"
        "Problem *i* is drawn by bnoracle's generators "
        "(`properties/include/bnoracle/generators.hpp`)\n"
        "from a RapidCheck random source seeded with (seed, *i*), at RapidCheck size *i* mod 101 "
        "(shapes of\nup to "
     << s.max_elements
     << " elements at size 100). The generators draw every layout the kernel claims, strided\n"
        "views with padding and negative strides, odd and degenerate shapes (N, C or spatial "
        "extents of 1;\nL = 1 in training, which PyTorch's convention refuses); channels with "
        "offsets ±10^k, nearly\nconstant, constant, wide exponents, two-valued, one outlier; ε "
        "near "
        "a channel's variance, 0,\ntiny or large; momenta away from 0, ½ and 1, and None (the "
        "cumulative average) where the kernel\nsupports it; γ, β and running statistics away from "
        "1, 0, 0, 1. Even *i*: the `sound` domain,\nwhere the error model claims every sound "
        "float32 kernel passes. Odd *i*: the `any` domain, with\nNaN, ±Inf, subnormals and ±0 in "
        "some channels and in dy, and for forward inference any float32 in\none src element of "
        "eight: there the exact result may be NaN or infinite, and such elements are\njudged by "
        "class.\n"
        "\n"
        "Each problem runs every mode the kernel provides: forward training with running-"
        "statistics\ntracking (its saved mean and invstd then feed backward training, as in a "
        "framework), forward\ninference, backward training and backward inference.\n"
        "\n"
        "Every other op the kernel declares has a stream of its own: its problem *i* comes from a "
        "source\nseeded with (seed, op, *i*), so that adding an op leaves every other stream as it "
        "was. The same\ngenerators draw it, with the op's options: layer and RMS norm over 1 to "
        "rank + 1 trailing axes\nwith γ and β per normalized element, RMS norm sometimes with the "
        "weight offset (γ applied as\n1 + w), group norm with a G dividing C (1 and C included), "
        "instance norm with running\nstatistics half of the time; γ and β absent some of the time; "
        "data, dy and ε drawn per\nstatistic group as batch norm's per channel. The modes are "
        "those "
        "of the op: inference only for\ninstance norm with running statistics, which forward "
        "training then updates too.\n"
        "\n"
        "## How to read the tables\n"
        "\n"
        "- **ratio** = |kernel − exact| / bound for one element, the bound being the error model's "
        "at the\n  kernel's level (docs/error-model.md). A ratio of 1 or more is a failure.\n"
        "- **elements**: judged by magnitude (the exact value is finite). **NaN/Inf**: the exact "
        "value is\n  undefined or infinite, judged by class. **no claim**: the bound is infinite "
        "(the variance may\n  be lost to cancellation entirely, τ ≥ 1 in docs/error-model.md, or "
        "the channel's src holds a\n  NaN or ±Inf, which leaves the model's channel terms "
        "undefined in every mode), so no value is\n  wrong there.\n"
        "- **max ratio at** `#i element`: problem *i* of the op's stream reproduces with\n"
        "  `"
     << s.program << " --kernel build/ci/kernels/libbnk_NAME.so:LEVEL --seed " << s.seed
     << " --op OP --only i`.\n"
        "- **histogram**: how many elements fall in each bucket. `0`: exact results; `<2^-20`: "
        "ratios\n  in (0, 2^-20); `2^k`: ratios in [2^k, 2^(k+1)); `>=1`: failures.\n"
        "- **refusals**: calls refused where the convention requires a refusal. **unsupported**: "
        "calls the\n  kernel declined (skips, not failures).\n"
        "\n"
        "## Levels\n"
        "\n"
        "| kernel | level | why |\n"
        "|---|---|---|\n";
  for (const kernel_run& k : runs) {
    os << "| " << k.name << " | " << to_string(k.level) << " | " << k.level_source << " |\n";
  }
  os << "\n## Summary\n"
        "\n"
        "| kernel | op | level | problems | calls | refusals | unsupported | elements | NaN/Inf | "
        "no claim | failing problems | max ratio | at |\n"
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n";
  for (const kernel_run& k : runs) {
    for (const op_run& o : k.ops) {
      const kernel_stats& st = o.stats;
      const row_stats t = st.total();
      std::string at = "-";
      if (t.max_index >= 0) {
        for (std::size_t r = 0; r < st.rows.size(); ++r) {
          const row_stats& rs = st.rows[r];
          if (rs.max_index == t.max_index && rs.max_ratio == t.max_ratio &&
              rs.max_where == t.max_where) {
            at = mode_title(k_rows[r].mode) + " " + where_cell(rs);
            break;
          }
        }
      }
      os << "| " << k.name << " | " << to_string(o.op) << " | " << to_string(k.level) << " | "
         << format_count(st.problems) << " | " << format_count(st.calls) << " | "
         << format_count(st.refusals_matched) << " | " << format_count(st.unsupported) << " | "
         << format_count(t.judged) << " | " << format_count(t.class_judged) << " | "
         << format_count(t.no_claim) << " | " << format_count(st.failed_problems) << " | "
         << format_ratio(t.max_ratio, t.max_index >= 0) << " | " << at << " |\n";
    }
  }
  for (const op_title& t : k_op_titles) write_op_section(os, runs, t.op, t.title);
  if (failed > 0) {
    os << "\n## Failures\n\nThe first failing problems of each kernel and op (all are counted "
          "above).\n\n";
    for (const kernel_run& k : runs) {
      for (const op_run& o : k.ops) {
        for (const failure& f : o.stats.failures) {
          std::string what = f.what;
          for (char& ch : what) {
            if (ch == '\n') ch = ';';
          }
          os << "- " << k.name << ' ' << to_string(o.op) << " #" << f.index << ": `" << what
             << "`\n";
        }
      }
    }
  }
}

[[nodiscard]] inline nlohmann::json to_json_report(const settings& s,
                                                   const std::vector<kernel_run>& runs) {
  nlohmann::json j;
  j["tool"] = "bnoracle_campaign";
  j["command"] = command_line(s, " ");
  j["seed"] = s.seed;
  j["problems_per_kernel"] = s.problems;
  j["family_problems_per_kernel"] = problems_of(s, op_kind::layer_norm);
  j["max_elements"] = s.max_elements;
  j["isolation"] = s.isolate;
  j["types"] = s.types;
  j["shard"] = {{"index", s.shard_index + 1}, {"count", s.shard_count}};
  nlohmann::json labels = nlohmann::json::array();
  for (std::size_t b = 0; b < k_buckets; ++b) labels.push_back(bucket_label(b));
  j["histogram_buckets"] = labels;
  nlohmann::json ks = nlohmann::json::array();
  for (const kernel_run& k : runs) {
    const kernel_stats all = k.total();
    nlohmann::json kj;
    kj["name"] = k.name;
    kj["level"] = std::string(to_string(k.level));
    kj["level_source"] = k.level_source;
    kj["problems"] = all.problems;
    kj["calls"] = all.calls;
    kj["failed_problems"] = all.failed_problems;
    nlohmann::json ops = nlohmann::json::array();
    for (const op_run& o : k.ops) {
      nlohmann::json oj = to_json(o.stats);
      for (std::size_t r = 0; r < o.stats.rows.size(); ++r) {
        oj["rows"][r]["mode"] = std::string(to_string(k_rows[r].mode));
        oj["rows"][r]["output"] = row_output(r, k);
      }
      oj["op"] = std::string(to_string(o.op));
      ops.push_back(oj);
    }
    kj["ops"] = ops;
    ks.push_back(kj);
  }
  j["kernels"] = ks;
  return j;
}

}  // namespace bnoracle::campaign
