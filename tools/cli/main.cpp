// The `bnoracle` command line.
//
// Exit codes (README.md, docs/cli.md): 0 success or conformant, 1 not conformant, 2 usage, input
// or environment error, 3 kernel fault (crash, hang, out-of-bounds write, modified input, a
// library that misbehaves while loading), 4 internal error of bnoracle, 5 nothing judged.
#include "bnoracle/convention.hpp"
#include "bnoracle/error_model.hpp"
#include "bnoracle/files.hpp"
#include "bnoracle/identify.hpp"
#include "bnoracle/isolation.hpp"
#include "bnoracle/properties.hpp"
#include "bnoracle/reference.hpp"
#include "bnoracle/report.hpp"
#include "bnoracle/runner.hpp"
#include "bnoracle/subprocess_kernel.hpp"
#include "bnoracle/text.hpp"
#include "bnoracle/verify.hpp"

// GCC 12 reports a -Wnull-dereference false positive inside CLI11's string splitting once it is
// inlined here (basic_string::_M_data on a moved-from temporary); the rest of this file keeps it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#pragma GCC diagnostic pop

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define BNORACLE_LEAK_CHECK() __lsan_do_leak_check()
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define BNORACLE_LEAK_CHECK() __lsan_do_leak_check()
#endif
#endif
#ifndef BNORACLE_LEAK_CHECK
#define BNORACLE_LEAK_CHECK() ((void)0)
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using namespace bnoracle;

constexpr int k_exit_ok = 0;
constexpr int k_exit_usage = 2;
constexpr int k_exit_internal = 4;

// The smallest --timeout accepted, in seconds: below it the fork, the page protection and the
// reaping of one isolated call can exceed the limit on a loaded machine, so a correct kernel
// would be reported as hung.
constexpr double k_min_timeout_seconds = 0.01;
constexpr double k_max_timeout_seconds = 86400;

// ---- the process
// ---------------------------------------------------------------------------------

pid_t g_main_pid = 0;
std::atomic<bool> g_finishing{false};
std::atomic<bool> g_plugin_loaded{false};

void write_stderr(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

// A call to exit() from code that is not bnoracle's (a kernel called in-process, or a library
// while it is loaded in-process) must not end the run with exit code 0 and no verdict.
extern "C" void on_unexpected_exit() {
  if (getpid() != g_main_pid || g_finishing.load()) return;
  write_stderr(
      "bnoracle: something in the process called exit() before the run finished (a kernel "
      "running in-process with --no-isolation, or a library while being loaded); no verdict\n");
  _exit(3);
}

// With --no-isolation a kernel's crash ends bnoracle: say so before the signal does.
extern "C" void on_fatal_signal(int sig) {
  write_stderr("bnoracle: fatal signal ");
  write_stderr(sig == SIGSEGV   ? "SIGSEGV"
               : sig == SIGBUS  ? "SIGBUS"
               : sig == SIGILL  ? "SIGILL"
               : sig == SIGFPE  ? "SIGFPE"
               : sig == SIGABRT ? "SIGABRT"
                                : "?");
  write_stderr(
      " in the bnoracle process: a kernel running in-process (--no-isolation) crashed, or "
      "bnoracle has a bug; no verdict\n");
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_fatal_signal_message() {
  for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) signal(sig, on_fatal_signal);
}

// Ends the process with `code`, after ending any process a kernel left behind. After a plugin
// was loaded in-process, its static destructors and
// atexit handlers do not run: they could crash or change the exit code after the verdict.
[[noreturn]] void finish(int code) {
  g_finishing.store(true);
  // Whatever a kernel left running (in-process calls fork from this process directly) goes too,
  // so that nothing holds this process's stdout open after it ended.
  end_stray_processes();
  std::fflush(stdout);
  std::fflush(stderr);
  if (g_plugin_loaded.load()) {
    BNORACLE_LEAK_CHECK();
    std::_Exit(code);
  }
  // The run is over: no other thread of bnoracle's is left to race with exit().
  std::exit(code);  // NOLINT(concurrency-mt-unsafe)
}

// ---- small commands
// ------------------------------------------------------------------------------

std::string cell(const golden& g) {
  switch (g.cls) {
    case golden_class::undefined:
      return "undefined";
    case golden_class::unspecified:
      return "unspecified";
    default:
      break;
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "%-16s %+.9g", hex_float(g.value).c_str(),
                static_cast<double>(g.value));
  return buf;
}

void print_value(std::string_view label, const exact_value& v) {
  const golden g = v.round();
  std::printf("    %-14s %-34s exact %s\n", std::string(label).c_str(), cell(g).c_str(),
              v.decimal(45).c_str());
}

// A small problem with the data the bug list says hides defects: a large offset, γ and β away
// from 1 and 0, a channel with a single distinct value, odd spatial size.
int run_example(const std::string& conv_name) {
  const convention* conv = find_convention(conv_name);
  bn_problem p;
  p.n = 2;
  p.c = 3;
  p.spatial = {1, 3};
  p.mem_layout = layout::nchw;
  p.eps = 1e-5;
  p.momentum = conv->default_momentum.value_or(0.1);
  p.convention = conv_name;
  // Channel 0: ordinary values; channel 1: offset 1e4 with spread 1e-2; channel 2: constant 7.
  const std::vector<float> src{0.5F, -1.25F, 2.0F, 10000.01F, 9999.99F, 10000.0F, 7.0F, 7.0F, 7.0F,
                               3.0F, -0.75F, 1.5F, 10000.02F, 9999.98F, 10000.0F, 7.0F, 7.0F, 7.0F};
  const std::vector<float> diff_dst{0.1F,  -0.2F, 0.3F, 1.0F,  -1.0F, 0.5F,  2.0F, 2.0F,  2.0F,
                                    -0.4F, 0.6F,  0.0F, 0.25F, 0.25F, -2.0F, 1.0F, -1.0F, 0.0F};
  const std::vector<float> gamma{1.5F, -0.5F, 2.0F};
  const std::vector<float> beta{0.25F, 1.0F, -3.0F};
  const std::vector<float> running_mean{0.0F, 9000.0F, 7.0F};
  const std::vector<float> running_var{1.0F, 4.0F, 0.0F};
  bn_inputs in;
  in.src = src.data();
  in.diff_dst = diff_dst.data();
  in.gamma = gamma;
  in.beta = beta;
  in.running_mean = running_mean;
  in.running_var = running_var;
  const bn_inputs no_running = [&] {
    bn_inputs r = in;
    r.running_mean = {};
    r.running_var = {};
    return r;
  }();

  std::printf("bnoracle %s: exact batch-norm reference, worked example\n", BNORACLE_VERSION);
  std::printf("problem: %s\n", describe(p).c_str());
  std::printf(
      "every value is the exact result rounded once to float32 (hex, decimal), then the "
      "exact value to 45 digits\n");
  for (const bn_mode mode : {bn_mode::forward_training, bn_mode::forward_inference,
                             bn_mode::backward_training, bn_mode::backward_inference}) {
    // A convention without running statistics trains without them.
    const bool untracked = mode == bn_mode::forward_training && !conv->running_stats;
    const reference ref(p, mode, untracked ? no_running : in);
    std::printf("\n%s\n", std::string(to_string(mode)).c_str());
    if (!ref.refusal().empty()) {
      std::printf("  refused by the convention: %s\n", ref.refusal().c_str());
      continue;
    }
    for (std::int64_t c = 0; c < p.c; ++c) {
      std::printf("  channel %lld\n", static_cast<long long>(c));
      for (const output_id id : ref.outputs()) {
        const std::string_view name = to_string(id);
        if (!per_element(id)) {
          print_value(name, ref.exact(id, c));
          continue;
        }
        for (std::int64_t n = 0; n < p.n; ++n) {
          for (std::int64_t s = 0; s < ref.geom().spatial_size(); ++s) {
            const std::int64_t i = ref.geom().logical_index(n, c, s);
            char label[48];
            std::snprintf(label, sizeof label, "%s[%lld,%lld]", std::string(name).c_str(),
                          static_cast<long long>(n), static_cast<long long>(s));
            print_value(label, ref.exact(id, i));
          }
        }
      }
    }
    if (mode == bn_mode::forward_training) {
      std::printf("  num_batches_tracked %lld\n",
                  static_cast<long long>(ref.num_batches_tracked()));
    }
  }
  return k_exit_ok;
}

int run_conventions() {
  std::printf("%-11s %-8s %-9s %-10s %-9s %-9s %-9s %-12s %-15s %s\n", "convention", "weighs",
              "run.var", "cumulative", "momentum", "eps", "eps floor", "saved", "L=1", "L=0");
  for (const auto& c : all_conventions()) {
    auto opt = [](const std::optional<double>& v) {
      if (!v) return std::string("-");
      char b[32];
      std::snprintf(b, sizeof b, "%g", *v);
      return std::string(b);
    };
    std::printf(
        "%-11s %-8s %-9s %-10s %-9s %-9s %-9s %-12s %-15s %s\n", std::string(c.name).c_str(),
        std::string(to_string(c.weighs)).c_str(), std::string(to_string(c.running_var)).c_str(),
        c.cumulative ? "yes" : "no", opt(c.default_momentum).c_str(), opt(c.default_eps).c_str(),
        opt(c.min_eps > 0 ? std::optional<double>(c.min_eps) : std::nullopt).c_str(),
        std::string(to_string(c.saved)).c_str(), std::string(to_string(c.single_value)).c_str(),
        std::string(to_string(c.empty_batch)).c_str());
  }
  std::printf(
      "\nweighs: which value the momentum parameter multiplies (the new batch statistic or "
      "the old running value).\nSources and evidence: docs/conventions.md\n"
      "\nAny other convention is stated by its fields, e.g. --convention "
      "momentum=new,running_var=biased (fields: momentum, running_var, cumulative, l1, l0, "
      "saved, default_momentum, default_eps, min_eps; or a JSON file of them);\na kernel "
      "without running statistics claims 'none'. `bnoracle identify` prints what it observes "
      "in that syntax.\n");
  return k_exit_ok;
}

int run_ops() {
  std::printf("%-14s %-44s %-24s %-9s %s\n", "op", "statistic group", "gamma/beta", "running",
              "modes");
  const char* groups[] = {
      "(c): every n and spatial element", "(row): the last k axes of (c, spatial...)",
      "(row): as layer norm, no mean",    "(n, group of C/G channels): their spatial",
      "(n, c): the spatial elements",
  };
  const char* params[] = {"per channel", "per normalized element", "per normalized element",
                          "per channel", "per channel"};
  const char* running[] = {"yes", "no", "no", "no", "optional"};
  for (const op_kind k : {op_kind::batch_norm, op_kind::layer_norm, op_kind::rms_norm,
                          op_kind::group_norm, op_kind::instance_norm}) {
    const auto i = static_cast<std::size_t>(k);
    const bool inference = k == op_kind::batch_norm || k == op_kind::instance_norm;
    std::printf("%-14s %-44s %-24s %-9s %s\n", std::string(to_string(k)).c_str(), groups[i],
                params[i], running[i],
                inference ? "all four (inference with running statistics)" : "the two training");
  }
  std::printf(
      "\nOptions: layer_norm(axes=k), rms_norm(axes=k, weight_offset: gamma applied as 1 + w), "
      "group_norm(groups=G), instance_norm(running_stats); any op without gamma/beta.\n"
      "`bnoracle check --op NAME` runs the cases of one op. Semantics: docs/reference.md\n");
  return k_exit_ok;
}

int run_budgets() {
  std::printf("%-18s %-10s %s\n", "budget", "value", "why");
  for (const budget* b : budget_table()) {
    std::printf("%-18s %-10g %s\n", std::string(b->name).c_str(), b->value,
                std::string(b->why).c_str());
  }
  std::printf("\nDerivations: docs/error-model.md\n");
  return k_exit_ok;
}

// ---- options shared by the commands ------------------------------------------------------------

struct cli_args {
  std::string kernel;
  std::string exec;
  std::string level = "standard";
  std::string convention;
  std::string report = "text";
  std::string output;
  std::string output_dir;
  std::string shard;
  std::string filter;
  std::string op;
  std::string types;
  std::uint64_t seed = 1;
  int property_cases = 100;
  bool no_properties = false;
  bool no_diagnosis = false;
  bool properties_only = false;
  double timeout = 20;
  bool no_isolation = false;
  bool fork_per_call = false;
  bool verbose = false;
  bool quiet = false;
  bool list = false;
  // check --jobs: processes checking properties at once; 0 is every core (at most 8).
  int jobs = 0;
  std::string out, fixtures, results, catalog = "corpus";
  std::vector<std::string> problems;    // check --problem (specs or @FILE)
  std::string check_catalog = "check";  // check --catalog
  bool force = false;
  std::string example_convention = "pytorch";
};

// A JSON object of convention fields ({"momentum": "new", "running_var": "biased", "cumulative":
// false, "default_momentum": 0.1, "default_eps": null}) in the field syntax of convention.hpp.
std::string convention_fields_of_json(const std::string& path, std::string& error) {
  constexpr std::streamsize k_max_bytes = std::streamsize{64} * 1024;
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<std::size_t>(k_max_bytes) + 1, '\0');
  in.read(text.data(), k_max_bytes + 1);
  if (in.bad() || (!in && !in.eof())) {
    error = "cannot read " + path;
    return "";
  }
  if (in.gcount() > k_max_bytes) {
    error = path + ": a convention file has at most 64 KiB";
    return "";
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = path + ": not a JSON object of convention fields";
    return "";
  }
  std::string fields;
  for (const auto& [key, value] : j.items()) {
    std::string v;
    if (value.is_string()) {
      v = value.get<std::string>();
    } else if (value.is_boolean()) {
      v = value.get<bool>() ? "yes" : "no";
    } else if (value.is_number()) {
      v = value.dump();
    } else if (value.is_null()) {
      v = "none";
    } else {
      error = path + ": field '" + valid_utf8(key) + "' must be a string, number, boolean or null";
      return "";
    }
    if (!fields.empty()) fields += ',';
    fields.append(key).append("=").append(v);
  }
  return fields;
}

// --convention's value: a named record, fields ("momentum=new,running_var=biased"), or a JSON
// file of fields; rewritten to the record's canonical name, which is what reports print and what
// fixtures and claims are compared by.
CLI::Validator convention_value() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        std::string text = value;
        if (text.size() > 5 && text.ends_with(".json")) {
          std::string error;
          text = convention_fields_of_json(value, error);
          if (!error.empty()) return error;
        }
        const convention* c = find_convention(text);
        if (c == nullptr) return valid_utf8(convention_error(text));
        value = std::string(c->name);
        return "";
      },
      "NAME|FIELDS|FILE.json");
}

// Seconds in [k_min_timeout_seconds, k_max_timeout_seconds].
CLI::Validator timeout_range() {
  return CLI::Validator(
      [](const std::string& v) -> std::string {
        char* end = nullptr;
        const double t = std::strtod(v.c_str(), &end);
        if (v.empty() || end == nullptr || *end != '\0' || !std::isfinite(t)) {
          return "'" + v + "' is not a number of seconds";
        }
        char text[160];
        if (t < k_min_timeout_seconds || t > k_max_timeout_seconds) {
          std::snprintf(text, sizeof text, "%s s is outside [%g, %g] s (docs/cli.md)", v.c_str(),
                        k_min_timeout_seconds, k_max_timeout_seconds);
          return text;
        }
        return "";
      },
      "SECONDS");
}

// A non-negative integer written in digits only (no sign, which strtoull would wrap).
CLI::Validator digits_only() {
  return CLI::Validator(
      [](const std::string& v) -> std::string {
        if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) {
          return "'" + v + "' is not a non-negative integer";
        }
        return "";
      },
      "N");
}

void add_kernel_options(CLI::App& cmd, cli_args& a) {
  cmd.add_option("--kernel", a.kernel, "the kernel plugin, a shared library (docs/kernel-abi.md)")
      ->type_name("PATH.so");
  cmd.add_option("--exec", a.exec,
                 "a kernel in another process speaking docs/subprocess-protocol.md; no shell: "
                 "quote words with ' or \"")
      ->type_name("\"CMD ARGS\"");
  cmd.add_option("--timeout", a.timeout, "seconds per kernel call (and to load the kernel)")
      ->check(timeout_range())
      ->capture_default_str()
      ->type_name("SECONDS");
  cmd.add_flag("--no-isolation", a.no_isolation,
               "run a plugin's calls in bnoracle's own process (debugging: a crash ends "
               "bnoracle)");
  cmd.add_flag("--fork-per-call", a.fork_per_call,
               "run every isolated call of a plugin in a process of its own instead of in one "
               "persistent worker process per kernel (also: BNORACLE_FORK_PER_CALL=1)");
}

void add_convention_option(CLI::App& cmd, cli_args& a, const char* what) {
  cmd.add_option("--convention", a.convention, what)
      ->transform(convention_value())
      ->type_name("NAME|FIELDS|FILE.json");
}

// The formats of --report (a comma-separated list of text, json, junit, html), in their order,
// without repeats; `error` says what is wrong with a spec that is not such a list.
std::vector<report_format> report_formats(const std::string& spec, std::string* error = nullptr) {
  std::vector<report_format> formats;
  std::stringstream in(spec);
  for (std::string word; std::getline(in, word, ',');) {
    if (word != "text" && word != "json" && word != "junit" && word != "html") {
      if (error != nullptr) {
        *error = "unknown report format '" + word + "' (text, json, junit or html)";
      }
      return {};
    }
    const report_format f = word == "json"    ? report_format::json
                            : word == "junit" ? report_format::junit
                            : word == "html"  ? report_format::html
                                              : report_format::text;
    if (std::find(formats.begin(), formats.end(), f) == formats.end()) formats.push_back(f);
  }
  if ((formats.empty() || spec.back() == ',') && error != nullptr) {
    *error = "no report format given";
  }
  return formats;
}

// The file of a format in --output-dir.
const char* report_file_name(report_format f) {
  switch (f) {
    case report_format::json:
      return "report.json";
    case report_format::junit:
      return "report.xml";
    case report_format::html:
      return "report.html";
    case report_format::text:
      break;
  }
  return "report.txt";
}

void add_report_options(CLI::App& cmd, cli_args& a) {
  cmd.add_option("--report", a.report,
                 "report formats, comma-separated: text, json, junit, html (several need "
                 "--output-dir)")
      ->check([](const std::string& spec) {
        std::string error;
        (void)report_formats(spec, &error);
        return error;
      })
      ->type_name("FORMATS")
      ->capture_default_str();
  auto* output =
      cmd.add_option("--output", a.output,
                     "write the report to FILE, whole or not at all (default: standard output)");
  output->type_name("FILE");
  cmd.add_option("--output-dir", a.output_dir,
                 "write each report into DIR (report.txt, report.json, report.xml, report.html), "
                 "created when missing")
      ->type_name("DIR")
      ->excludes(output);
  cmd.add_flag("--verbose", a.verbose, "list every case in the text report");
  cmd.add_flag("--quiet", a.quiet, "no progress on standard error");
}

void add_level_option(CLI::App& cmd, cli_args& a, const char* what) {
  cmd.add_option("--level", a.level, what)
      ->check(CLI::IsMember({"strict", "standard", "lenient"}))
      ->capture_default_str();
}

void add_filter_option(CLI::App& cmd, cli_args& a) {
  cmd.add_option("--filter", a.filter, "only cases whose name contains PATTERN ('*' globs)")
      ->type_name("PATTERN");
}

void add_shard_option(CLI::App& cmd, cli_args& a) {
  cmd.add_option("--shard", a.shard,
                 "run shard K of N (1 <= K <= N <= 100000): every Nth case, fixture and property "
                 "after the filter, starting with the Kth; the N shards partition the run")
      ->type_name("K/N")
      ->check([](const std::string& v) {
        const std::size_t slash = v.find('/');
        const auto number = [](const std::string& t) {
          if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos) {
            return -1;
          }
          return std::stoi(t);
        };
        const int k = slash == std::string::npos ? -1 : number(v.substr(0, slash));
        const int n = slash == std::string::npos ? -1 : number(v.substr(slash + 1));
        if (k < 1 || n < 1 || k > n || n > 100000) {
          return std::string("expected K/N with 1 <= K <= N <= 100000, got '") + v + "'";
        }
        return std::string();
      });
}

void add_types_option(CLI::App& cmd, cli_args& a, const std::string& what) {
  cmd.add_option("--types", a.types, what)
      ->check(CLI::Validator(
          [](const std::string& v) {
            return parse_data_types(v) ? std::string() : "not a data-type configuration: " + v;
          },
          "TYPES"))
      ->type_name("TYPES");
}

void add_seed_option(CLI::App& cmd, cli_args& a) {
  cmd.add_option("--seed", a.seed, "data and property seed, printed in every report")
      ->check(digits_only())
      ->capture_default_str()
      ->type_name("N");
}

run_options to_run_options(const cli_args& a) {
  run_options o;
  o.level = *parse_level(a.level);
  o.timeout = std::chrono::milliseconds(std::llround(a.timeout * 1000));
  o.isolate = !a.no_isolation;
  if (a.fork_per_call) set_fork_per_call(true);
  o.filter = a.filter;
  if (!a.op.empty()) o.op = parse_op_kind(a.op);
  if (!a.types.empty()) o.types = parse_data_types(a.types);
  o.seed = a.seed;
  o.convention = a.convention;
  o.catalog = !a.properties_only;
  o.properties = !a.no_properties;
  o.diagnose = !a.no_diagnosis;
  o.property_cases = a.property_cases;
  o.jobs = a.jobs > 0 ? a.jobs
                      : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1U, 8U));
  if (!a.shard.empty()) {
    // Validated by the option's check: "K/N" with 1 <= K <= N.
    const std::size_t slash = a.shard.find('/');
    o.shard_index = std::stoi(a.shard.substr(0, slash)) - 1;
    o.shard_count = std::stoi(a.shard.substr(slash + 1));
  }
  const std::vector<report_format> formats = report_formats(a.report);
  o.profiles = std::find(formats.begin(), formats.end(), report_format::html) != formats.end();
  return o;
}

// The command line as a reproduction command shows it: --exec "CMD" with ", \\, $ and ` escaped.
std::string exec_option(const std::string& cmd) {
  std::string q = "--exec \"";
  for (const char ch : cmd) {
    if (ch == '"' || ch == '\\' || ch == '$' || ch == '`') q += '\\';
    q += ch;
  }
  return q + "\"";
}

// Loads the kernel of --kernel or --exec (exactly one) into `kernel`. Returns 0, or the exit code
// after printing "bnoracle CMD: ...": 2 for a kernel that cannot be used, 3 for one that crashed,
// exited or hung while loading. --exec turns fork isolation off (the process boundary isolates
// the kernel) and puts the whole option into kernel_path, which reproduction commands print.
int load_kernel(const cli_args& a, run_options& o, const char* cmd,
                std::unique_ptr<bn_kernel>& kernel) {
  if (!a.exec.empty() && !a.kernel.empty()) {
    std::cerr << "bnoracle " << cmd << ": --kernel and --exec are mutually exclusive\n";
    return k_exit_usage;
  }
  if (a.exec.empty() && a.kernel.empty()) {
    std::cerr << "bnoracle " << cmd << ": --kernel PATH.so or --exec \"CMD ARGS\" is required\n";
    return k_exit_usage;
  }
  try {
    if (!a.exec.empty()) {
      o.isolate = false;
      o.kernel_path = exec_option(a.exec);
      kernel = spawn_kernel(split_command(a.exec), o.timeout);
      return k_exit_ok;
    }
    o.kernel_path = a.kernel;
    if (a.no_isolation) install_fatal_signal_message();
    load_options lo;
    lo.probe = o.isolate;
    lo.timeout = o.timeout;
    g_plugin_loaded.store(true);
    kernel = load_plugin(a.kernel, lo);
    return k_exit_ok;
  } catch (const plugin_fault& e) {
    std::cerr << "bnoracle " << cmd << ": kernel fault: " << e.what() << "\n";
    return k_exit_kernel_fault;
  } catch (const plugin_error& e) {
    std::cerr << "bnoracle " << cmd << ": " << e.what() << "\n";
    return k_exit_usage;
  }
}

// Writes a rendered report to --output (whole or not at all) or standard output. On failure the
// verdict is still printed on stderr and the exit code is 2.
std::string render(const run_summary& s, report_format format, bool verbose) {
  std::ostringstream os;
  write_report(os, s, format, verbose);
  return os.str();
}

// Several formats need --output-dir (standard output and --output hold one report).
bool report_options_valid(const char* cmd, const cli_args& a) {
  if (report_formats(a.report).size() > 1 && a.output_dir.empty()) {
    std::cerr << "bnoracle " << cmd << ": --report " << a.report
              << " asks for several reports: give --output-dir DIR\n";
    return false;
  }
  return true;
}

// Writes the reports: to standard output, --output, or each format into --output-dir. Each file
// is whole or not at all; a report that cannot be written is lost and said so (exit 2).
int deliver_report(const char* cmd, const cli_args& a, const run_summary& s, int code) {
  const std::vector<report_format> formats = report_formats(a.report);
  if (!a.output_dir.empty() || (!a.output.empty() && formats.front() != report_format::text)) {
    // Keep a one-line verdict on the terminal when the reports go to files.
    std::fprintf(stderr,
                 "%lld passed, %lld failed, %lld skipped, %lld mistrusted, %lld faults: %s\n",
                 static_cast<long long>(s.passed), static_cast<long long>(s.failed),
                 static_cast<long long>(s.skipped), static_cast<long long>(s.mistrusted),
                 static_cast<long long>(s.faults), std::string(to_string(s.verdict())).c_str());
  }
  try {
    if (!a.output_dir.empty()) {
      for (const report_format f : formats) {
        write_file(std::filesystem::path(a.output_dir) / report_file_name(f),
                   render(s, f, a.verbose), /*create_parents=*/true);
      }
    } else if (a.output.empty()) {
      write_stdout(render(s, formats.front(), a.verbose));
    } else {
      write_file(a.output, render(s, formats.front(), a.verbose));
    }
  } catch (const environment_error& e) {
    std::cerr << "bnoracle " << cmd << ": the report is lost: " << e.what()
              << " (verdict: " << to_string(s.verdict()) << ")\n";
    return k_exit_usage;
  }
  return code;
}

// Progress on standard error, off with --quiet. On a terminal, one line rewritten in place; else
// (a CI log) a line every BNORACLE_PROGRESS_SECONDS seconds (default 5; 0: every item), so that a
// long run is not silent: items done of the phase, failures so far, time elapsed, current item.
progress_fn progress_on_stderr(const std::string& command, const cli_args& a) {
  if (a.quiet) return nullptr;
  struct state {
    bool tty = isatty(STDERR_FILENO) != 0;
    double interval = 5;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last = start;
  };
  auto st = std::make_shared<state>();
  // Read once, before the run; bnoracle starts no thread of its own that could set it.
  const char* env = std::getenv("BNORACLE_PROGRESS_SECONDS");  // NOLINT(concurrency-mt-unsafe)
  if (env != nullptr && *env != 0) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != nullptr && *end == 0 && v >= 0 && v <= 86400) st->interval = v;
  }
  return [st, command](std::size_t done, std::size_t total, const std::string& name,
                       std::int64_t failing) {
    const auto now = std::chrono::steady_clock::now();
    if (st->tty) {
      if (done == total) {
        std::fprintf(stderr, "\r\033[K");
      } else {
        std::fprintf(stderr, "\r\033[K[%zu/%zu] %s%s", done + 1, total,
                     failing > 0 ? (std::to_string(failing) + " failing, ").c_str() : "",
                     valid_utf8(name).c_str());
      }
      std::fflush(stderr);
      return;
    }
    if (done == total || std::chrono::duration<double>(now - st->last).count() < st->interval) {
      return;
    }
    st->last = now;
    std::fprintf(stderr, "bnoracle %s: %zu of %zu done, %lld failing so far, %.0f s: %s\n",
                 command.c_str(), done, total, static_cast<long long>(failing),
                 std::chrono::duration<double>(now - st->start).count(), valid_utf8(name).c_str());
    std::fflush(stderr);
  };
}

// Reasons longer than the text and JUnit reports show (a property's shrunk counterexample) go
// whole into files next to the report (--output's folder, else the current one); one that cannot
// be written stays whole in the report.
void save_whole_reasons(const char* command, run_summary& s, const cli_args& a) {
  const std::filesystem::path out(a.output);
  std::string dir =
      a.output.empty() || !out.has_parent_path() ? std::string(".") : out.parent_path().string();
  if (!a.output_dir.empty()) {
    dir = a.output_dir;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // a failure is reported per file below
  }
  for (const std::string& why : save_long_reasons(s, dir)) {
    std::fprintf(stderr, "bnoracle %s: a long reason stays whole in the report: %s\n", command,
                 valid_utf8(why).c_str());
  }
}

// The cases of --problem, after the catalog's: each spec, or each line of an @FILE (blank lines
// and lines starting with # skipped). Returns false, having said why, for a spec that does not
// parse or a file that cannot be read.
bool add_problem_cases(const cli_args& a, std::uint64_t seed, std::vector<case_spec>& cases) {
  std::vector<std::string> specs;
  for (const std::string& p : a.problems) {
    if (!p.starts_with("@")) {
      specs.push_back(p);
      continue;
    }
    // A list of problems, not data: a file past 1 MiB is refused rather than read.
    constexpr std::streamsize k_max_bytes = std::streamsize{1} << 20;
    std::ifstream in(p.substr(1), std::ios::binary);
    std::string text(static_cast<std::size_t>(k_max_bytes) + 1, '\0');
    in.read(text.data(), k_max_bytes + 1);
    if (!in.is_open() || in.bad() || (!in && !in.eof())) {
      std::cerr << "bnoracle check: --problem " << valid_utf8(p) << ": cannot read the file\n";
      return false;
    }
    if (in.gcount() > k_max_bytes) {
      std::cerr << "bnoracle check: --problem " << valid_utf8(p)
                << ": a file of problems has at most 1 MiB\n";
      return false;
    }
    text.resize(static_cast<std::size_t>(in.gcount()));
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      specs.push_back(line.substr(first));
    }
  }
  int index = 0;
  for (const std::string& spec : specs) {
    try {
      const bn_problem problem = parse_problem_spec(spec);
      for (case_spec& c : problem_cases(problem, ++index, seed)) cases.push_back(std::move(c));
    } catch (const invalid_problem& e) {
      std::cerr << "bnoracle check: --problem: " << valid_utf8(e.what()) << '\n';
      return false;
    }
  }
  return true;
}

int run_check(const cli_args& a) {
  run_options o = to_run_options(a);
  std::vector<case_spec> cases;
  if (a.check_catalog == "check") {
    cases = default_catalog(o.seed);
  } else {
    o.operations = false;
  }
  if (!add_problem_cases(a, o.seed, cases)) return k_exit_usage;
  if (!o.catalog && !o.properties) {
    std::cerr << "bnoracle check: --properties-only and --no-properties leave nothing to run\n";
    return k_exit_usage;
  }
  if (cases.empty() && !o.properties) {
    std::cerr << "bnoracle check: --catalog none without --problem leaves no case to run\n";
    return k_exit_usage;
  }
  if (a.list) {
    std::string text;
    for (const auto& c : cases) {
      const bool op_ok = !o.op || c.problem.op.kind == *o.op;
      if (o.catalog && op_ok && name_matches(c.name, o.filter)) text += c.name + "\n";
    }
    for (const auto& p : property_list()) {
      const std::string name = "property/" + std::string(p.name);
      if (!o.properties || !property_applies(p, nullptr, o.op)) continue;
      if (!name_matches(name, o.filter)) continue;
      char line[256];
      std::snprintf(line, sizeof line, "%-36s %s\n", name.c_str(), std::string(p.summary).c_str());
      text += line;
    }
    write_stdout(text);
    return k_exit_ok;
  }
  if (!report_options_valid("check", a)) return k_exit_usage;
  std::unique_ptr<bn_kernel> kernel;
  if (const int rc = load_kernel(a, o, "check", kernel); rc != k_exit_ok) return rc;
  run_summary summary = run_conformance(*kernel, cases, o, progress_on_stderr("check", a));
  save_whole_reasons("check", summary, a);
  return deliver_report("check", a, summary, summary.exit_code());
}

int run_identify(const cli_args& a) {
  run_options o = to_run_options(a);
  std::unique_ptr<bn_kernel> kernel;
  if (const int rc = load_kernel(a, o, "identify", kernel); rc != k_exit_ok) return rc;
  const identify_result r = identify(*kernel, o);
  std::ostringstream os;
  os << "kernel '" << kernel->info().name << "' (claims convention " << kernel->info().convention
     << ")\n";
  os << "  momentum weighs      " << r.weighs << " value"
     << (r.weighs == "new"   ? "  (running = (1 - m)*old + m*batch)"
         : r.weighs == "old" ? "  (running = m*old + (1 - m)*batch)"
                             : "")
     << "\n";
  os << "  running variance     " << r.estimator << "\n";
  os << "  momentum=None        " << r.cumulative << "\n";
  os << "  one value (L = 1)    " << r.single_value << "\n";
  os << "  empty batch (L = 0)  " << r.empty_batch << "\n";
  std::string m;
  for (const auto& n : r.matches) m += (m.empty() ? "" : ", ") + n;
  os << "  consistent with      " << (m.empty() ? "no known convention" : m) << "\n";
  os << "  as --convention      "
     << (r.fields.empty() ? "(not stated: a probe gave no answer)" : r.fields) << "\n";
  for (const auto& n : r.notes) os << "  evidence: " << valid_utf8(n) << "\n";
  write_stdout(os.str());
  return r.fault ? k_exit_kernel_fault : k_exit_ok;
}

int run_export(const cli_args& a) {
  std::vector<case_spec> cases =
      a.catalog == "corpus" ? corpus_catalog(a.seed) : default_catalog(a.seed);
  std::erase_if(cases, [&](const case_spec& c) { return !name_matches(c.name, a.filter); });
  const std::optional<data_types> types =
      a.types.empty() ? std::nullopt : parse_data_types(a.types);
  if (types) {
    for (case_spec& c : cases) c.problem.types = *types;
  }
  // The corpus also holds the fold and SyncBN fixtures (unless a filter or types narrow the
  // export).
  const bool others = a.catalog == "corpus" && a.filter.empty() && !types;
  const std::size_t n = export_fixtures(
      cases, a.out, others ? std::optional<std::uint64_t>(a.seed) : std::nullopt, a.force);
  std::fprintf(stderr, "bnoracle export: %zu fixtures from %zu cases written to %s\n", n,
               cases.size(), valid_utf8(a.out).c_str());
  return k_exit_ok;
}

int run_results(const cli_args& a) {
  run_options o = to_run_options(a);
  std::unique_ptr<bn_kernel> kernel;
  if (const int rc = load_kernel(a, o, "results", kernel); rc != k_exit_ok) return rc;
  const std::size_t n = write_kernel_results(*kernel, a.fixtures, a.out, o, a.force);
  std::fprintf(stderr, "bnoracle results: %zu results written to %s\n", n,
               valid_utf8(a.out).c_str());
  return k_exit_ok;
}

int run_verify(const cli_args& a) {
  const run_options o = to_run_options(a);
  if (!report_options_valid("verify", a)) return k_exit_usage;
  run_summary summary = verify_results(a.fixtures, a.results, o, progress_on_stderr("verify", a));
  save_whole_reasons("verify", summary, a);
  return deliver_report("verify", a, summary, summary.exit_code());
}

// ---- parsing
// -------------------------------------------------------------------------------------

constexpr const char* k_footer =
    "exit codes: 0 success/conformant, 1 not conformant, 2 usage, input or environment error,\n"
    "            3 kernel fault, 4 internal error of bnoracle, 5 nothing judged (docs/cli.md)";

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The closest of `known` to `word`, when it is close enough to be a likely typo.
std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  std::size_t best_distance = 0;
  for (const auto& k : known) {
    const std::size_t d = edit_distance(word, k);
    if (!best || d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  if (best && best_distance <= std::max<std::size_t>(2, word.size() / 3)) return best;
  return std::nullopt;
}

std::vector<std::string> long_names(const CLI::App& cmd) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : cmd.get_options()) {
    for (const auto& n : opt->get_lnames()) names.push_back("--" + n);
  }
  return names;
}

// The suggestion appended to a parse error of command `sub`: the option the user probably meant.
std::string suggestion(const CLI::App& sub, const std::vector<std::string>& args) {
  const std::vector<std::string> known = long_names(sub);
  for (const auto& arg : args) {
    if (!arg.starts_with("--")) continue;
    const std::string name = arg.substr(0, arg.find('='));
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    if (auto c = closest(name, known)) return " (did you mean " + *c + "?)";
  }
  return "";
}

int run_cli(int argc, char** argv) {
  cli_args a;
  CLI::App app{
      "bnoracle: the exact reference and conformance oracle for batch-normalization "
      "kernels",
      "bnoracle"};
  app.footer(k_footer);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("bnoracle ") + BNORACLE_VERSION);

  CLI::App* check = app.add_subcommand(
      "check", "conformance check of a kernel: the case catalog, then the property suite");
  add_kernel_options(*check, a);
  add_level_option(*check, a, "the accuracy level the gate requires");
  add_convention_option(*check, a,
                        "judge running statistics under NAME instead of the "
                        "kernel's claim");
  add_report_options(*check, a);
  add_filter_option(*check, a);
  add_shard_option(*check, a);
  check
      ->add_option("--op", a.op,
                   "only the cases of this op (batch_norm, layer_norm, rms_norm, group_norm, "
                   "instance_norm); the fold, the SyncBN merge and the properties are batch norm's")
      ->check(
          CLI::IsMember({"batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm"}))
      ->type_name("NAME");
  add_types_option(*check, a,
                   "judge the catalog in these data types: float32, cudnn_mixed, bf16_mixed, "
                   "bf16_weights, pytorch_cpu_bf16, all_half, one format for every role "
                   "(float16), or roles one by one (data=bfloat16,parameters=float32); the "
                   "fold, the SyncBN merge and the properties run with float32 only");
  add_seed_option(*check, a);
  check->add_option("--property-cases", a.property_cases, "generated cases per property")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  check->add_flag("--no-properties", a.no_properties, "run the case catalog only");
  check->add_flag("--no-diagnosis", a.no_diagnosis,
                  "do not test the defect hypotheses against failed results (docs/diagnosis.md)");
  check->add_flag("--properties-only", a.properties_only,
                  "run the property suite only (filter with property/NAME)");
  check->add_flag("--list", a.list, "list the cases and properties and exit");
  check
      ->add_option("--jobs", a.jobs,
                   "processes checking properties at once (helpers forked at the start check "
                   "every Nth property while this one runs the catalog; same results): 0 is "
                   "every core, at most 8; --exec kernels always use 1")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  check
      ->add_option("--problem", a.problems,
                   "a problem of your own, judged in both data tiers with the catalog's recipes "
                   "(repeatable): \"LAYOUT NxC[xD...] [strides=S,...] [eps=E] [momentum=M|none] "
                   "[op=OP]\", or @FILE with one per line")
      ->type_name("SPEC|@FILE");
  check
      ->add_option("--catalog", a.check_catalog,
                   "the built-in cases: check (the catalog, the fold and the SyncBN merge) or "
                   "none (only --problem cases)")
      ->check(CLI::IsMember({"check", "none"}))
      ->capture_default_str();

  CLI::App* identify_cmd =
      app.add_subcommand("identify", "infer the running-statistics convention a kernel follows");
  add_kernel_options(*identify_cmd, a);

  CLI::App* export_cmd = app.add_subcommand("export", "write golden fixtures");
  export_cmd->add_option("--out", a.out, "the folder to write into")->required()->type_name("DIR");
  export_cmd->add_option("--catalog", a.catalog, "which catalog")
      ->check(CLI::IsMember({"corpus", "check"}))
      ->capture_default_str();
  add_filter_option(*export_cmd, a);
  add_types_option(*export_cmd, a,
                   "write every case of the catalog in these data types (as check --types "
                   "judges them; the fold and the SyncBN merge are left out)");
  add_seed_option(*export_cmd, a);
  export_cmd->add_flag("--force", a.force,
                       "replace files in DIR that bnoracle did not write (refused otherwise)");

  CLI::App* results_cmd = app.add_subcommand(
      "results",
      "run a kernel on fixtures and write its results (the running statistics of "
      "fixtures of another convention are omitted)");
  add_kernel_options(*results_cmd, a);
  results_cmd->add_option("--fixtures", a.fixtures, "the fixture folder")
      ->required()
      ->type_name("DIR");
  results_cmd->add_option("--out", a.out, "the folder to write the results into")
      ->required()
      ->type_name("DIR");
  add_convention_option(*results_cmd, a, "run the kernel under NAME instead of its claim");
  results_cmd->add_flag("--force", a.force,
                        "replace files in DIR that bnoracle did not write (refused otherwise)");

  CLI::App* verify_cmd =
      app.add_subcommand("verify", "judge results written by any implementation");
  verify_cmd->add_option("--fixtures", a.fixtures, "the fixture folder")
      ->required()
      ->type_name("DIR");
  verify_cmd->add_option("--results", a.results, "the results folder")
      ->required()
      ->type_name("DIR");
  add_level_option(*verify_cmd, a, "the accuracy level the gate requires");
  add_report_options(*verify_cmd, a);
  add_filter_option(*verify_cmd, a);
  add_shard_option(*verify_cmd, a);

  CLI::App* example_cmd =
      app.add_subcommand("example", "exact reference results for a worked example, all modes");
  example_cmd->add_option("--convention", a.example_convention, "the convention")
      ->transform(convention_value())
      ->capture_default_str()
      ->type_name("NAME|FIELDS|FILE.json");
  CLI::App* conventions_cmd =
      app.add_subcommand("conventions", "the running-statistics conventions bnoracle knows");
  CLI::App* ops_cmd =
      app.add_subcommand("ops", "the normalizations bnoracle judges: groups, gamma/beta, modes");
  CLI::App* budgets_cmd =
      app.add_subcommand("budgets", "the error model's budget table, with reasons");
  CLI::App* version_cmd = app.add_subcommand("version", "print the version");
  CLI::App* help_cmd = app.add_subcommand("help", "this text");
  for (CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
    s->footer(k_footer);
  }

  const std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> commands;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(s->get_name());
  }
  if (!args.empty() && !args[0].starts_with("-") &&
      std::find(commands.begin(), commands.end(), args[0]) == commands.end()) {
    const auto c = closest(args[0], commands);
    std::cerr << "bnoracle: unknown command '" << valid_utf8(args[0]) << "'"
              << (c ? " (did you mean '" + *c + "'?)" : std::string()) << "\n"
              << "Run 'bnoracle --help' for the commands.\n";
    return k_exit_usage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? k_exit_ok : k_exit_usage;
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e) == 0 ? k_exit_ok : k_exit_usage;
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e) == 0 ? k_exit_ok : k_exit_usage;
  } catch (const CLI::ParseError& e) {
    const CLI::App* sub = nullptr;
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
      if (!args.empty() && args[0] == s->get_name()) sub = s;
    }
    const std::string where = sub == nullptr ? "bnoracle" : "bnoracle " + sub->get_name();
    std::cerr << where << ": " << valid_utf8(e.what())
              << (sub == nullptr ? std::string() : valid_utf8(suggestion(*sub, args))) << "\nRun '"
              << where << " --help' for the options.\n";
    return k_exit_usage;
  }

  if (*help_cmd) {
    std::cout << app.help();
    return k_exit_ok;
  }
  if (*version_cmd) {
    std::printf("bnoracle %s\n", BNORACLE_VERSION);
    return k_exit_ok;
  }
  if (*conventions_cmd) return run_conventions();
  if (*budgets_cmd) return run_budgets();
  if (*ops_cmd) return run_ops();
  if (*example_cmd) return run_example(a.example_convention);
  if (*check) return run_check(a);
  if (*identify_cmd) return run_identify(a);
  if (*export_cmd) return run_export(a);
  if (*results_cmd) return run_results(a);
  if (*verify_cmd) return run_verify(a);
  return k_exit_usage;
}

// A standard stream that is closed at start is reopened on /dev/null in the opposite direction:
// its descriptor number is then taken, so no file, pipe or memory file bnoracle opens later can
// become its stdout (a report written into a kernel's output file would be lost silently), and
// reading or writing it still fails with EBADF, which the commands report.
void hold_closed_standard_streams() {
  for (const int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int held = open("/dev/null", (fd == STDIN_FILENO ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
    if (held >= 0 && held != fd) {
      dup3(held, fd, O_CLOEXEC);
      close(held);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  g_main_pid = getpid();
  std::atexit(on_unexpected_exit);
  // Writes to a closed pipe or past a file-size limit fail with an error the commands report
  // (EPIPE, EFBIG) instead of killing bnoracle silently.
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
  // Processes a kernel leaves behind are reparented here, and killed after each call
  // (end_stray_processes in isolation.hpp).
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  hold_closed_standard_streams();
  int code = k_exit_internal;
  try {
    code = run_cli(argc, argv);
  } catch (const invalid_problem& e) {
    std::cerr << "bnoracle: invalid input: " << valid_utf8(e.what()) << '\n';
    code = k_exit_usage;
  } catch (const fixture_error& e) {
    std::cerr << "bnoracle: invalid input: " << valid_utf8(e.what()) << '\n';
    code = k_exit_usage;
  } catch (const environment_error& e) {
    std::cerr << "bnoracle: " << valid_utf8(e.what()) << '\n';
    code = k_exit_usage;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "bnoracle: " << valid_utf8(e.code().message()) << ": "
              << valid_utf8(e.path1().string()) << '\n';
    code = k_exit_usage;
  } catch (const std::system_error& e) {
    // fork, mmap, pipe...: the environment ran out of something.
    std::cerr << "bnoracle: the system refused: " << valid_utf8(e.what()) << '\n';
    code = k_exit_usage;
  } catch (const std::bad_alloc&) {
    std::cerr << "bnoracle: out of memory\n";
    code = k_exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "bnoracle: internal error: " << valid_utf8(e.what()) << '\n';
    code = k_exit_internal;
  }
  finish(code);
}
