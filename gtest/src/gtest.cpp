#include "bnoracle/gtest.hpp"

#include "bnoracle/catalog.hpp"
#include "bnoracle/properties.hpp"
#include "bnoracle/runner.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

namespace bnoracle {

namespace {

// What the catalog tests of one suite judged so far in this process: the <suite>.evidence test
// applies the rule of `bnoracle check` to it (docs/cli.md, "What a verdict needs").
struct evidence_log {
  std::mutex mutex;
  kernel_info kernel;
  std::vector<case_result> results;  // without their outputs
};

// Everything a registered test needs, shared by the tests of one suite.
struct registration {
  std::string suite;
  kernel_factory factory;
  conformance_options options;
  std::uint64_t seed = 1;
  const char* file = "";  // where failures are reported (the user's macro)
  int line = 0;
  std::shared_ptr<evidence_log> evidence = std::make_shared<evidence_log>();
  std::vector<case_spec> cases;         // the catalog cases registered as tests
  std::vector<std::string> properties;  // the properties registered as tests
};

// The one fixture class of every registered test (GoogleTest requires a single fixture class per
// test suite): a test is a function.
class conformance_test : public testing::Test {
 public:
  explicit conformance_test(std::function<void()> body) : body_(std::move(body)) {}
  void TestBody() override { body_(); }

 private:
  std::function<void()> body_;
};

void register_one(const registration& reg, const std::string& test, std::function<void()> body) {
  testing::RegisterTest(
      reg.suite.c_str(), test.c_str(), nullptr, nullptr, reg.file, reg.line,
      [body = std::move(body)]() -> conformance_test* { return new conformance_test(body); });
}

// Prints the seed of every registered suite once per process, before the first test, and
// records it as a property of the whole run (the <testsuites> element of the XML report).
class seed_reporter : public testing::Environment {
 public:
  void add(const std::string& suite, std::uint64_t seed) { suites_.emplace_back(suite, seed); }
  void SetUp() override {
    for (const auto& [suite, seed] : suites_) {
      std::printf("[bnoracle ] %s: seed %llu (override with BNORACLE_SEED=N)\n", suite.c_str(),
                  static_cast<unsigned long long>(seed));
      testing::Test::RecordProperty("bnoracle_seed_" + suite, std::to_string(seed));
    }
    std::fflush(stdout);
  }

 private:
  std::vector<std::pair<std::string, std::uint64_t>> suites_;
};

seed_reporter& reporter() {
  // Owned by GoogleTest once added; created on first use, so registration during static
  // initialization does not depend on the order of initialization between translation units.
  static seed_reporter* const r = [] {
    auto* e = new seed_reporter;
    testing::AddGlobalTestEnvironment(e);
    return e;
  }();
  return *r;
}

// Suites registered so far in this process (a second registration under one name is an error).
std::set<std::string>& registered_suites() {
  static std::set<std::string> s;
  return s;
}

// The path of the running test program, for reproduction commands.
std::string program_path() {
  std::array<char, 4096> buf{};
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return "TEST_PROGRAM";
  return {buf.data(), static_cast<std::size_t>(n)};
}

std::string reproduce(const registration& reg, const std::string& bnoracle_command) {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  std::ostringstream os;
  os << "  reproduce: BNORACLE_SEED=" << reg.seed << " " << program_path()
     << " --gtest_filter=" << (info != nullptr ? info->test_suite_name() : reg.suite.c_str()) << "."
     << (info != nullptr ? info->name() : "*");
  if (!reg.options.kernel_path.empty() && !bnoracle_command.empty()) {
    os << "\n         or: " << bnoracle_command;
  }
  return os.str();
}

// A fresh kernel from the factory, or nullptr after recording why there is none.
std::unique_ptr<bn_kernel> make_kernel(const registration& reg) {
  try {
    std::unique_ptr<bn_kernel> k = reg.factory();
    if (!k) ADD_FAILURE_AT(reg.file, reg.line) << "the kernel factory returned no kernel";
    return k;
  } catch (const std::exception& e) {
    ADD_FAILURE_AT(reg.file, reg.line) << "the kernel factory threw: " << e.what();
  } catch (...) {
    ADD_FAILURE_AT(reg.file, reg.line) << "the kernel factory threw a non-standard exception";
  }
  return nullptr;
}

std::string mode_label(const case_result& r) {
  std::string s = r.op.empty() ? std::string(to_string(r.mode)) : r.op;
  if (r.mode == bn_mode::forward_training && r.op.empty()) s += " step " + std::to_string(r.step);
  return s;
}

// The outputs that miss the bound at the gate's level after the first (which the reason names),
// one line each.
std::string more_failing_outputs(const case_result& r, accuracy_level level) {
  std::ostringstream os;
  const auto lvl = static_cast<std::size_t>(level);
  bool first = true;
  for (const output_result& o : r.outputs) {
    if (o.passed[lvl]) continue;
    if (first) {
      first = false;
      continue;
    }
    os << "\n  also " << o.name << ": ";
    if (!o.class_failure.empty()) {
      os << o.class_failure;
    } else {
      std::ostringstream qualifier;
      qualifier << ", ratio " << o.worst_ratio;
      os << worst_element_text(o, qualifier.str());
    }
  }
  return os.str();
}

void record(const std::string& key, const std::string& value) {
  testing::Test::RecordProperty(key, value);
}

// The options of run_catalog for the cases handed over (no filter: exactly those).
run_options catalog_options(const registration& reg) {
  run_options ro;
  ro.level = reg.options.level;
  ro.timeout = reg.options.timeout;
  ro.isolate = reg.options.isolate;
  ro.seed = reg.seed;
  ro.kernel_path = reg.options.kernel_path;
  ro.convention = reg.options.convention;
  ro.types = reg.options.types;  // the cases in these data types, as check --types runs them
  ro.filter.clear();
  return ro;
}

void log_evidence(const registration& reg, const run_summary& s) {
  const std::lock_guard lock(reg.evidence->mutex);
  reg.evidence->kernel = s.kernel;
  for (case_result r : s.results) {
    r.outputs.clear();
    reg.evidence->results.push_back(std::move(r));
  }
}

void run_case(const registration& reg, const case_spec& spec) {
  record("bnoracle_seed", std::to_string(reg.seed));
  record("bnoracle_case", spec.name);
  const std::unique_ptr<bn_kernel> kernel = make_kernel(reg);
  if (!kernel) return;
  const std::vector<case_spec> one{spec};
  const run_summary s = run_catalog(*kernel, one, catalog_options(reg), {});
  if (s.results.empty()) {
    ADD_FAILURE_AT(reg.file, reg.line) << "bnoracle ran no call for case " << spec.name;
    return;
  }
  std::string skips, mistrusted;
  bool all_skipped = true;
  for (const case_result& r : s.results) {
    if (r.result != verdict::skip) all_skipped = false;
    switch (r.result) {
      case verdict::fail:
      case verdict::fault:
        ADD_FAILURE_AT(reg.file, reg.line)
            << spec.name << " " << mode_label(r) << ": "
            << (r.result == verdict::fault ? std::string("FAULT")
                                           : "FAIL at " + std::string(to_string(reg.options.level)))
            << ": " << r.reason << more_failing_outputs(r, reg.options.level)
            << "\n  problem: " << r.problem << " [" << r.tier << " tier]\n"
            << reproduce(reg, r.repro);
        break;
      case verdict::skip:
        skips += (skips.empty() ? "" : "; ") + mode_label(r) + ": " + r.reason;
        break;
      case verdict::mistrusted:
        mistrusted += (mistrusted.empty() ? "" : "; ") + mode_label(r) + ": " + r.reason;
        break;
      case verdict::pass:
        break;
    }
  }
  log_evidence(reg, s);
  if (!mistrusted.empty()) record("bnoracle_mistrusted", mistrusted);
  if (s.best) record("bnoracle_best_level", std::string(to_string(*s.best)));
  if (all_skipped) GTEST_SKIP() << skips;
  if (!skips.empty()) record("bnoracle_skipped", skips);
}

void run_property(const registration& reg, const std::string& name) {
  record("bnoracle_seed", std::to_string(reg.seed));
  const std::unique_ptr<bn_kernel> kernel = make_kernel(reg);
  if (!kernel) return;
  property_options po = reg.options;
  po.seed = reg.seed;
  const property_result r = check_property(name, *kernel, po);
  record("bnoracle_property_cases", std::to_string(r.cases));
  {
    case_result logged;
    logged.case_name = "property/" + r.name;
    logged.op = "property";
    logged.result = r.verdict == property_verdict::pass   ? verdict::pass
                    : r.verdict == property_verdict::skip ? verdict::skip
                                                          : verdict::fail;
    logged.evidence = r.verdict == property_verdict::pass;
    const std::lock_guard lock(reg.evidence->mutex);
    reg.evidence->kernel = kernel->info();
    reg.evidence->results.push_back(std::move(logged));
  }
  switch (r.verdict) {
    case property_verdict::pass:
      return;
    case property_verdict::skip:
      GTEST_SKIP() << r.reason;
    case property_verdict::fail:
      ADD_FAILURE_AT(reg.file, reg.line)
          << "property " << r.name << " (" << r.summary << ") fails at "
          << to_string(reg.options.level) << " after " << r.cases << " passing cases: " << r.reason
          << "\n  counterexample (shrunk): " << r.counterexample << "\n"
          << reproduce(reg, r.repro);
      return;
  }
}

// <suite>.evidence, registered after the other tests: fails when they judged nothing, or (catalog
// cases) nothing of an operation the kernel declares — a kernel that skips everything must not
// pass. It reads what the tests of the suite judged earlier in the same process; when none ran
// before it (a runner that starts a process per test, a filter, shuffling) it runs the
// registered catalog cases itself, or, for a suite of properties only, each registered property
// on a few generated cases.
void check_evidence(const registration& reg) {
  constexpr int k_evidence_property_cases = 5;
  run_summary s;
  {
    const std::lock_guard lock(reg.evidence->mutex);
    s.kernel = reg.evidence->kernel;
    s.results = reg.evidence->results;
  }
  if (s.results.empty()) {
    const std::unique_ptr<bn_kernel> kernel = make_kernel(reg);
    if (!kernel) return;
    if (!reg.cases.empty()) {
      s = run_catalog(*kernel, reg.cases, catalog_options(reg), {});
    } else {
      s.kernel = kernel->info();
      property_options po = reg.options;
      po.property_cases = std::min(reg.options.property_cases, k_evidence_property_cases);
      po.seed = reg.seed;
      for (const std::string& name : reg.properties) {
        const property_result p = check_property(name, *kernel, po);
        case_result r;
        r.op = "property";
        r.result = p.verdict == property_verdict::pass ? verdict::pass : verdict::skip;
        r.evidence = p.verdict == property_verdict::pass;
        s.results.push_back(std::move(r));
      }
    }
  }
  tally(s);
  std::string why;
  for (const auto& u : s.unjudged) why += "\n  no evidence: " + u;
  if (!why.empty()) {
    ADD_FAILURE_AT(reg.file, reg.line)
        << "NOTHING JUDGED: the tests of " << reg.suite << " passed without evidence" << why;
  }
}

using registration_ptr = std::shared_ptr<const registration>;

// Runs a test body, turning an exception of bnoracle's own machinery (fork, mmap, an invalid
// problem) into a failure that says where it came from.
std::function<void()> guarded(const registration_ptr& reg, std::function<void()> body) {
  return [reg, body = std::move(body)] {
    try {
      body();
    } catch (const std::exception& e) {
      ADD_FAILURE_AT(reg->file, reg->line) << "bnoracle could not run the test: " << e.what();
    }
  };
}

void register_configuration_error(const registration& reg, const std::string& why) {
  const std::string file = reg.file;
  const int line = reg.line;
  register_one(reg, "configuration", [why, file, line] {
    ADD_FAILURE_AT(file.c_str(), line) << "bnoracle conformance suite not registered: " << why;
  });
}

}  // namespace

std::string gtest_name(const std::string& name) {
  std::string out = name;
  for (char& ch : out) {
    if (std::isalnum(static_cast<unsigned char>(ch)) == 0) ch = '_';
  }
  return out;
}

std::uint64_t conformance_seed(std::uint64_t fallback) {
  // Read at registration (static initialization or before RUN_ALL_TESTS), when nothing else
  // changes the environment.
  const char* env = std::getenv("BNORACLE_SEED");  // NOLINT(concurrency-mt-unsafe)
  if (env == nullptr || *env == '\0') return fallback;
  const std::string s(env);
  bool digits = true;
  for (const char ch : s) digits = digits && std::isdigit(static_cast<unsigned char>(ch)) != 0;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (!digits || errno == ERANGE || end != s.c_str() + s.size()) {
    throw std::invalid_argument("BNORACLE_SEED must be a decimal integer in [0, 2^64), got '" + s +
                                "'");
  }
  return static_cast<std::uint64_t>(v);
}

kernel_factory plugin_factory(std::string path) {
  return [path = std::move(path)] { return load_plugin(path); };
}

void register_conformance_tests(const std::string& suite, kernel_factory factory,
                                const conformance_options& options, const char* file, int line) {
  // Shared by the tests of the suite (GoogleTest owns the tests, the tests own this).
  auto reg = std::make_shared<registration>();
  reg->suite = suite.empty() ? std::string("BnoracleConformance") : gtest_name(suite);
  reg->factory = std::move(factory);
  reg->options = options;
  reg->file = file != nullptr ? file : "";
  reg->line = line;
  try {
    if (!registered_suites().insert(reg->suite).second) {
      register_configuration_error(*reg, "the test suite " + reg->suite +
                                             " is registered twice; give each one its own name");
      return;
    }
    reg->seed = conformance_seed(options.seed);
    // BNORACLE_PROPERTY_CASES overrides the number of generated cases per property (CI's
    // sanitizer pass runs fewer: it looks for memory errors, not for rare counterexamples).
    if (const char* env = std::getenv("BNORACLE_PROPERTY_CASES");  // NOLINT(concurrency-mt-unsafe)
        env != nullptr && *env != '\0') {
      const std::string s(env);
      const bool digits = s.size() <= 7 && s.find_first_not_of("0123456789") == std::string::npos;
      const long n = digits ? std::strtol(s.c_str(), nullptr, 10) : 0;
      if (n < 1) {
        throw std::invalid_argument(
            "BNORACLE_PROPERTY_CASES must be an integer in [1, 9999999], got '" + s + "'");
      }
      reg->options.property_cases = static_cast<int>(n);
    }
    if (!reg->factory) throw std::invalid_argument("the kernel factory is empty");
    if (options.property_cases < 1) {
      throw std::invalid_argument("property_cases must be at least 1, got " +
                                  std::to_string(options.property_cases));
    }
    if (options.timeout.count() <= 0) throw std::invalid_argument("timeout must be positive");
    if (!options.catalog && !options.properties) {
      throw std::invalid_argument("catalog and properties are both off: nothing to run");
    }
    std::size_t registered = 0;
    std::set<std::string> names;
    auto unique = [&names](std::string name) {
      const std::string base = name;
      for (int k = 2; !names.insert(name).second; ++k) name = base + "_" + std::to_string(k);
      return name;
    };
    // Only the cases and properties of the ops the kernel declares (a batch-norm kernel gets no
    // layer-norm tests to skip): one kernel from the factory says which. A factory that fails
    // here is a configuration error, reported as the suite's one failing test.
    const std::unique_ptr<bn_kernel> probe = reg->factory();
    if (!probe) throw std::invalid_argument("the kernel factory returned no kernel");
    const kernel_info& info = probe->info();
    auto wanted = [&](op_kind k) { return info.supports(k) && (!options.op || *options.op == k); };
    if (options.catalog) {
      auto add = [&](const case_spec& spec) {
        if (!name_matches(spec.name, options.filter)) return;
        if (!wanted(spec.problem.op.kind)) return;
        register_one(*reg, unique(gtest_name(spec.name)),
                     guarded(reg, [reg, spec] { run_case(*reg, spec); }));
        reg->cases.push_back(spec);
        ++registered;
      };
      for (const case_spec& spec : default_catalog(reg->seed)) add(spec);
      // A spec that does not parse throws invalid_problem: the suite's one failing test says so.
      int index = 0;
      for (const std::string& text : options.problems) {
        for (const case_spec& spec : problem_cases(parse_problem_spec(text), ++index, reg->seed)) {
          add(spec);
        }
      }
    }
    // The property suite is float32 (as `check --types` runs it): none with other types.
    const bool narrow = options.types && !options.types->all_float32();
    if (options.properties && !narrow) {
      for (const property_info& p : property_list()) {
        const std::string name(p.name);
        if (!name_matches("property/" + name, options.filter)) continue;
        if (!property_applies(p, &info, options.op)) continue;
        register_one(*reg, unique("property_" + gtest_name(name)),
                     guarded(reg, [reg, name] { run_property(*reg, name); }));
        reg->properties.push_back(name);
        ++registered;
      }
    }
    if (registered > 0) {
      register_one(*reg, unique("evidence"), guarded(reg, [reg] { check_evidence(*reg); }));
    }
    if (registered == 0) {
      throw std::invalid_argument("the filter '" + options.filter +
                                  "' matches no case and no property");
    }
    reporter().add(reg->suite, reg->seed);
  } catch (const std::exception& e) {
    register_configuration_error(*reg, e.what());
  }
}

}  // namespace bnoracle
