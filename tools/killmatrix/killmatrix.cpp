// bnoracle_killmatrix: the power of the oracle, measured. Runs a kernel plugin through the kinds
// of check bnoracle has — the golden fixtures (`bnoracle results` + `verify`), the conformance
// catalog (`bnoracle check` without properties), the catalog in float16/bfloat16 configurations
// (`bnoracle check --types`) and the property suite — and says which check caught it. Over the
// mutation catalog (kernels/mutants/MANIFEST.tsv) plus the correct kernels it writes the kill
// matrix, docs/kill-matrix.md. docs/mutation-testing.md explains how to read it and how to add a
// mutant.
//
//   bnoracle_killmatrix --kernel K.so [--expect killed|clean] [--level L] [--json FILE]
//                       [--types CONFIGURATION[,CONFIGURATION...]]
//   bnoracle_killmatrix --manifest MANIFEST.tsv --mutants DIR --correct K.so[:LEVEL]...
//                       [--jobs J] [--markdown FILE] [--json FILE]
//   bnoracle_killmatrix --assemble DIR --manifest MANIFEST.tsv --markdown FILE
//
// Exit codes: 0 every expectation met (each mutant caught, no correct kernel flagged); 1 an
// expectation failed (a mutant survived or a correct kernel was flagged); 2 usage, an unreadable
// manifest or fixture directory, a plugin that cannot be loaded.
#include "bnoracle/runner.hpp"
#include "bnoracle/verify.hpp"

#include "bnoracle/catalog.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/properties.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace bnoracle {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

#ifndef BNORACLE_CORPUS_DIR
#define BNORACLE_CORPUS_DIR "fixtures/corpus"
#endif

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the matrix runs; every field is part of the generated document's header.
struct settings {
  std::string fixtures = BNORACLE_CORPUS_DIR;
  std::uint64_t seed = 1;
  int property_cases = 100;
  accuracy_level mutant_level = accuracy_level::lenient;
  std::chrono::milliseconds timeout{20000};
  // The properties in-process in one child process (property_verdicts), given this long before
  // they run again with a process per call; false: a process per call from the start.
  bool one_process = true;
  std::chrono::seconds one_process_deadline{300};
  // The data-type configurations of the half check (op.hpp's named ones); none: no half check.
  std::vector<std::string> types;
};

// Every named configuration other than float32: what the correct kernels are judged in.
std::vector<std::string> narrow_configurations() {
  std::vector<std::string> out;
  for (const named_types& n : named_data_types()) {
    if (!n.types.all_float32()) out.emplace_back(n.name);
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ",") + e;
  return s;
}

// One kind of check on one kernel.
struct check_outcome {
  std::string kind;                 // fixtures, catalog, half, properties
  std::int64_t judged = 0;          // results that were not skipped
  std::int64_t flagged = 0;         // failed or faulted
  std::vector<std::string> caught;  // names of the flagged results (properties: all; else first 3)
  [[nodiscard]] bool killed() const { return flagged > 0; }
};

struct kernel_outcome {
  std::string name;  // the kernel's table name
  accuracy_level level = accuracy_level::lenient;
  std::vector<check_outcome> checks;
  // The diagnosis of the catalog, half and property results together: the classes it lists,
  // the most likely first, with the first one's evidence; and the first class of each op's
  // results on their own.
  std::vector<std::string> diagnosis;
  std::string evidence;
  std::map<std::string, std::string> diagnosis_by_op;
  [[nodiscard]] int kinds() const {
    return static_cast<int>(
        std::count_if(checks.begin(), checks.end(), [](const auto& c) { return c.killed(); }));
  }
};

// The op a catalog result exercises, from its case name: family cases are named after their op
// ("layer_norm/general/…", "half/bf16_weights/rms_norm/…"); the others are batch norm's.
std::string op_of_case(const std::string& name) {
  for (const std::string_view op : {"layer_norm", "rms_norm", "group_norm", "instance_norm"}) {
    const std::string key = std::string(op) + "/";
    if (name.rfind(key, 0) == 0 || name.find("/" + key) != std::string::npos)
      return std::string(op);
  }
  return "batch_norm";
}

void count(check_outcome& out, const case_result& r, std::size_t keep,
           const std::string& prefix = "") {
  if (r.result == verdict::skip) return;
  ++out.judged;
  if (r.result != verdict::fail && r.result != verdict::fault) return;
  ++out.flagged;
  if (out.caught.size() < keep) {
    std::string name = prefix + r.case_name;
    if (r.op.empty()) name += " " + std::string(to_string(r.mode));
    out.caught.push_back(name);
  }
}

// The judged properties of a kernel and whether each failed, as `bnoracle check` with per-call
// isolation finds them. The suite makes thousands of kernel calls, and a fork per call (several
// milliseconds on a virtual machine, most of it page faults) is most of a kill-matrix run; so the
// properties first run in-process in one child process of this one, where a crash or a hang of
// the kernel ends only that child. A child that does not end with its results within the
// deadline (the kernel crashed, hung or exited) is not trusted: the suite then runs again with a
// process per call, which says which call faulted. The two ways give the same verdicts for every
// kernel of the catalog: a mutant keeps no state across calls that isolation would reset, and
// the nondeterministic ones vary with the call as well as with the process
// (docs/mutation-testing.md).
std::vector<std::pair<std::string, bool>> property_verdicts(bn_kernel& kernel, property_options po,
                                                            const settings& set) {
  auto collect = [&](bool isolate) {
    po.isolate = isolate;
    std::vector<std::pair<std::string, bool>> out;
    for (const property_result& p : check_properties(kernel, po, "", nullptr)) {
      if (p.verdict != property_verdict::skip) {
        out.emplace_back(p.name, p.verdict == property_verdict::fail);
      }
    }
    return out;
  };
  if (!set.one_process) return collect(true);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return collect(true);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return collect(true);
  }
  if (pid == 0) {
    close(fds[0]);
    int rc = 0;
    try {
      const std::string text = json(collect(false)).dump();
      std::size_t done = 0;
      while (done < text.size()) {
        const ssize_t n = write(fds[1], text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      rc = done == text.size() ? 0 : 1;
    } catch (...) {
      rc = 1;
    }
    std::fflush(nullptr);
    _exit(rc);
  }
  close(fds[1]);
  std::string text;
  bool complete = false;
  const auto deadline = std::chrono::steady_clock::now() + set.one_process_deadline;
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buffer[65536];
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      complete = n == 0;  // end of file: the child closed the pipe (it exited)
      break;
    }
    text.append(buffer, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  if (!complete) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (complete && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    try {
      return json::parse(text).get<std::vector<std::pair<std::string, bool>>>();
    } catch (const json::exception&) {
      // Falls through to the isolated run.
    }
  }
  std::cerr << "bnoracle_killmatrix: " << kernel.info().name
            << ": the in-process property run did not end with results; running the properties "
               "again with a process per call\n";
  return collect(true);
}

// The three kinds of check on one kernel, at one level.
kernel_outcome run_checks(const std::string& path, accuracy_level level, const settings& set) {
  const std::unique_ptr<bn_kernel> kernel = load_plugin(path);
  kernel_outcome k;
  k.name = kernel->info().name;
  k.level = level;
  run_options opt;
  opt.level = level;
  opt.seed = set.seed;
  opt.timeout = set.timeout;
  opt.kernel_path = path;
  opt.properties = false;

  check_outcome fixtures;
  fixtures.kind = "fixtures";
  for (const std::string& id : list_fixtures(set.fixtures)) {
    fixture f = load_fixture((fs::path(set.fixtures) / (id + ".json")).string());
    f.id = id;
    case_result r = judge_fixture(f, kernel_results(*kernel, f, opt), opt);
    r.case_name = id;
    r.op = "fixture";
    count(fixtures, r, 3);
  }
  k.checks.push_back(fixtures);

  run_summary all;  // what the diagnosis reads: every catalog, half and property result
  check_outcome catalog;
  catalog.kind = "catalog";
  for (case_result& r : run_catalog(*kernel, default_catalog(set.seed), opt, nullptr).results) {
    count(catalog, r, 3);
    all.results.push_back(std::move(r));
  }
  k.checks.push_back(catalog);

  // The catalog in each configuration the kernel declares: the defects that show only against
  // the bound of a float16 or bfloat16 output.
  check_outcome half;
  half.kind = "half";
  for (const std::string& name : set.types) {
    const std::optional<data_types> types = parse_data_types(name);
    if (!types) throw usage_error("--types: unknown configuration '" + name + "'");
    if (!kernel->info().supports(*types)) continue;
    run_options typed = opt;
    typed.types = types;
    for (case_result& r : run_catalog(*kernel, default_catalog(set.seed), typed, nullptr).results) {
      count(half, r, 3, "[" + name + "] ");
      all.results.push_back(std::move(r));
    }
  }
  k.checks.push_back(half);

  check_outcome properties;
  properties.kind = "properties";
  property_options po;
  po.level = level;
  po.property_cases = set.property_cases;
  po.seed = set.seed;
  po.shrink_budget = 0;  // only whether a property fails matters here
  po.timeout = set.timeout;
  po.kernel_path = path;
  for (const auto& [name, failed] : property_verdicts(*kernel, po, set)) {
    ++properties.judged;
    if (failed) {
      ++properties.flagged;
      properties.caught.push_back(name);
      case_result r;
      r.case_name = "property/" + name;
      r.op = "property";
      r.result = verdict::fail;
      r.explained_by = explain_property(name);
      all.results.push_back(std::move(r));
    }
  }
  k.checks.push_back(properties);
  const std::vector<diagnosis> d = diagnose(all);
  for (const diagnosis& x : d) k.diagnosis.push_back(x.cls);
  if (!d.empty() && !d.front().evidence.empty()) k.evidence = d.front().evidence.front();
  std::map<std::string, run_summary> by_op;
  for (const case_result& r : all.results) {
    if (r.op != "property") by_op[op_of_case(r.case_name)].results.push_back(r);
  }
  for (const auto& [op, summary] : by_op) {
    if (count_failing(summary.results) == 0) continue;
    const std::vector<diagnosis> od = diagnose(summary);
    k.diagnosis_by_op[op] = od.empty() ? std::string() : od.front().cls;
  }
  return k;
}

json to_json(const kernel_outcome& k) {
  json j{{"name", k.name},          {"level", to_string(k.level)},
         {"checks", json::array()}, {"diagnosis", k.diagnosis},
         {"evidence", k.evidence},  {"diagnosis_by_op", k.diagnosis_by_op}};
  for (const auto& c : k.checks) {
    j["checks"].push_back(
        {{"kind", c.kind}, {"judged", c.judged}, {"flagged", c.flagged}, {"caught", c.caught}});
  }
  return j;
}

kernel_outcome from_json(const json& j) {
  kernel_outcome k;
  k.name = j.at("name").get<std::string>();
  k.level = parse_level(j.at("level").get<std::string>()).value_or(accuracy_level::lenient);
  for (const auto& c : j.at("checks")) {
    check_outcome o;
    o.kind = c.at("kind").get<std::string>();
    o.judged = c.at("judged").get<std::int64_t>();
    o.flagged = c.at("flagged").get<std::int64_t>();
    o.caught = c.at("caught").get<std::vector<std::string>>();
    k.checks.push_back(o);
  }
  k.diagnosis = j.at("diagnosis").get<std::vector<std::string>>();
  k.evidence = j.at("evidence").get<std::string>();
  k.diagnosis_by_op = j.at("diagnosis_by_op").get<std::map<std::string, std::string>>();
  return k;
}

// ---- The manifest ---------------------------------------------------------------------------

struct mutant_entry {
  std::string name, section, description;
  std::vector<std::string> types;  // the configurations of the half check
  std::string expected_class;      // DIAGNOSIS.tsv: the class the diagnosis should name
};

// DIAGNOSIS.tsv beside the manifest: mutant<TAB>defect class, for every mutant.
void read_expected_classes(const std::string& manifest_path, std::vector<mutant_entry>& mutants) {
  const std::string path = (fs::path(manifest_path).parent_path() / "DIAGNOSIS.tsv").string();
  std::ifstream in(path);
  if (!in) throw usage_error("cannot read " + path);
  std::map<std::string, std::string> cls;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    if (tab == std::string::npos || find_defect_class(line.substr(tab + 1)) == nullptr) {
      throw usage_error(path + ":" + std::to_string(n) + ": expected mutant<TAB>a defect class");
    }
    cls[line.substr(0, tab)] = line.substr(tab + 1);
  }
  for (mutant_entry& m : mutants) {
    const auto it = cls.find(m.name);
    if (it == cls.end()) throw usage_error(path + ": no class for the mutant " + m.name);
    m.expected_class = it->second;
  }
}

std::vector<mutant_entry> read_manifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw usage_error("cannot read the manifest " + path);
  std::vector<mutant_entry> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string col;
    while (std::getline(ss, col, '\t')) cols.push_back(col);
    if ((cols.size() != 3 && cols.size() != 4) || cols[0].empty()) {
      throw usage_error(path + ":" + std::to_string(n) +
                        ": expected name<TAB>section<TAB>description[<TAB>configurations]");
    }
    std::vector<std::string> types;
    if (cols.size() == 4) {
      std::stringstream list(cols[3]);
      std::string t;
      while (std::getline(list, t, ',')) {
        if (!parse_data_types(t)) {
          throw usage_error(path + ":" + std::to_string(n) + ": unknown configuration '" + t + "'");
        }
        types.push_back(t);
      }
    }
    out.push_back({cols[0], cols[1], cols[2], types, {}});
  }
  if (out.empty()) throw usage_error("the manifest " + path + " lists no mutant");
  read_expected_classes(path, out);
  return out;
}

// ---- Running many kernels in child processes ---------------------------------------------------

struct job {
  std::string label;  // mutant or correct-kernel name, also the JSON file's stem
  std::string path;
  accuracy_level level;
  bool expect_killed;
  std::vector<std::string> types;  // the half check's configurations
};

std::vector<std::string> job_args(const std::string& self, const job& j, const settings& set,
                                  const fs::path& json_out) {
  return {self,
          "--kernel",
          j.path,
          "--level",
          std::string(to_string(j.level)),
          "--expect",
          j.expect_killed ? "killed" : "clean",
          "--seed",
          std::to_string(set.seed),
          "--property-cases",
          std::to_string(set.property_cases),
          "--fixtures",
          set.fixtures,
          "--json",
          json_out.string(),
          set.one_process ? "--quiet" : "--isolate-every-call",
          "--quiet",
          "--types",
          j.types.empty() ? std::string("none") : joined(j.types)};
}

// Runs every job as a child process of this executable, `jobs` at a time (posix_spawn, no
// shell). Returns false when a child could not be started or ended without writing its JSON.
bool run_jobs(const std::vector<job>& all, const settings& set, int jobs, const fs::path& dir) {
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0;
  bool ok = true;
  const auto start = std::chrono::steady_clock::now();
  std::map<std::size_t, std::chrono::steady_clock::time_point> started;
  while (next < all.size() || !running.empty()) {
    while (next < all.size() && static_cast<int>(running.size()) < jobs) {
      std::vector<std::string> args =
          job_args(self, all[next], set, dir / (all[next].label + ".json"));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      pid_t pid = 0;
      if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
        std::cerr << "bnoracle_killmatrix: cannot start a child for " << all[next].label << "\n";
        ok = false;
      } else {
        running[pid] = next;
        started[next] = std::chrono::steady_clock::now();
      }
      ++next;
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const job& j = all[it->second];
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started[it->second])
            .count();
    const bool met = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::fprintf(stderr, "%-36s %-8s %s (%.1f s)\n", j.label.c_str(),
                 j.expect_killed ? "mutant" : "correct", met ? "as expected" : "EXPECTATION FAILED",
                 s);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) ok = false;
    running.erase(it);
  }
  std::fprintf(stderr, "kill matrix: %zu kernels in %.0f s\n", all.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return ok;
}

// ---- The document ---------------------------------------------------------------------------

std::string cell(const check_outcome& c, bool list_names) {
  std::ostringstream os;
  if (!c.killed()) {
    os << "· 0/" << c.judged;
    return os.str();
  }
  os << "**✗ " << c.flagged << "/" << c.judged << "**";
  if (list_names && !c.caught.empty()) {
    os << " ";
    for (std::size_t i = 0; i < c.caught.size(); ++i) os << (i ? ", " : "") << c.caught[i];
  }
  return os.str();
}

// The diagnosis column: the first class named, marked right or wrong against the expected one,
// and the other classes listed.
std::string diagnosis_cell(const kernel_outcome& k, const std::string& expected) {
  if (k.diagnosis.empty()) return "— (none; expected `" + expected + "`)";
  std::string out = (k.diagnosis.front() == expected ? "✓ `" : "✗ `") + k.diagnosis.front() + "`";
  if (k.diagnosis.front() != expected) out += " (expected `" + expected + "`)";
  for (std::size_t i = 1; i < k.diagnosis.size(); ++i)
    out += (i == 1 ? "; also " : ", ") + k.diagnosis[i];
  return out;
}

std::string escape(std::string s) {
  std::string out;
  for (const char ch : s) {
    if (ch == '|')
      out += "\\|";
    else
      out += ch;
  }
  return out;
}

std::string markdown(const std::vector<mutant_entry>& manifest,
                     const std::map<std::string, kernel_outcome>& mutants,
                     const std::vector<std::pair<std::string, kernel_outcome>>& correct,
                     const settings& set, std::int64_t fixture_files) {
  std::ostringstream md;
  int killed = 0;
  int multi = 0;
  int missing = 0;
  for (const auto& m : manifest) {
    const auto it = mutants.find(m.name);
    if (it == mutants.end()) {
      ++missing;
      continue;
    }
    if (it->second.kinds() > 0) ++killed;
    if (it->second.kinds() > 1) ++multi;
  }
  int flagged = 0;
  for (const auto& [label, k] : correct) flagged += k.kinds() > 0 ? 1 : 0;
  int named_right = 0;
  int diagnosed_correct = 0;  // correct kernels given a class: must stay 0
  for (const auto& m : manifest) {
    const auto it = mutants.find(m.name);
    if (it != mutants.end() && !it->second.diagnosis.empty() &&
        it->second.diagnosis.front() == m.expected_class) {
      ++named_right;
    }
  }
  for (const auto& [label, k] : correct) diagnosed_correct += k.diagnosis.empty() ? 0 : 1;
  const auto percent = [](int a, std::size_t b) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << (b == 0 ? 0.0 : 100.0 * a / static_cast<double>(b));
    return os.str();
  };

  md << "# Kill matrix\n\n"
     << "<!-- Generated by tools/run-kill-matrix (bnoracle_killmatrix); do not edit by hand. "
        "-->\n\n"
     << "Which check of bnoracle catches which mutant of [the mutation catalog]"
        "(../kernels/mutants/MANIFEST.tsv): float32 kernels that are correct but for one "
        "realistic defect, each imitating a bug from [BUGS.md](../../shared/BUGS.md). "
        "[mutation-testing.md](mutation-testing.md) explains the method and how to add a "
        "mutant.\n\n"
     << "- **fixtures**: the kernel's results on the golden corpus (`fixtures/corpus`, "
     << fixture_files << " files), judged as `bnoracle verify` does;\n"
     << "- **catalog**: the conformance catalog of `bnoracle check` (seed " << set.seed
     << "), including the fold and SyncBN-merge cases;\n"
     << "- **half**: the same catalog in float16/bfloat16 configurations (`bnoracle check "
        "--types`): for a mutant, those its manifest line names (the family's low-precision "
        "defects, which show against the bound of a narrow output); for a correct kernel, every "
        "named configuration it declares ("
     << joined(narrow_configurations()) << ");\n"
     << "- **properties**: the property suite, " << set.property_cases
     << " generated cases per property (seed " << set.seed
     << "), run in-process in one child process per kernel (`--isolate-every-call`: a process "
        "per call, as `bnoracle check` isolates them; the same verdicts, slower).\n\n"
     << "Mutants are judged at the **" << to_string(set.mutant_level)
     << "** level, the most permissive gate; the correct kernels at the level their algorithm "
        "guarantees. A cell reads *flagged/judged* (skipped results are not counted); **✗** "
        "marks a catch. For the fixtures and the catalog the first flagged results are named.\n\n";
  md << "## Summary\n\n"
     << "- mutants: " << manifest.size() << "; caught: " << killed
     << "; caught by more than one kind of check: " << multi
     << "; survived: " << (static_cast<int>(manifest.size()) - killed - missing);
  if (missing > 0) md << "; not run: " << missing;
  md << "\n- correct kernels: " << correct.size() << "; flagged: " << flagged << "\n";
  md << "- diagnosis ([diagnosis.md](diagnosis.md)): names the mutant's defect class first for "
     << named_right << " of " << manifest.size() << " mutants ("
     << percent(named_right, manifest.size())
     << "%); names a class for a correct kernel: " << diagnosed_correct << " of " << correct.size()
     << "\n\n";

  md << "## Mutants\n\n"
     << "| mutant | section | defect (and the bug it imitates) | fixtures | catalog | half | "
        "properties | kinds | diagnosis |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& m : manifest) {
    md << "| `" << m.name << "` | " << m.section << " | " << escape(m.description) << " | ";
    const auto it = mutants.find(m.name);
    if (it == mutants.end()) {
      md << "not run | not run | not run | not run | — | — |\n";
      continue;
    }
    for (const auto& c : it->second.checks) md << cell(c, true) << " | ";
    md << it->second.kinds() << " | " << diagnosis_cell(it->second, m.expected_class) << " |\n";
  }
  md << "\n## Correct kernels\n\n"
     << "| kernel | level | fixtures | catalog | half | properties |\n|---|---|---|---|---|---|\n";
  for (const auto& [label, k] : correct) {
    md << "| `" << label << "` | " << to_string(k.level);
    for (const auto& c : k.checks) md << " | " << cell(c, true);
    md << " |\n";
  }
  md << "\n## Diagnosis by defect class\n\n"
     << "For each class of [DIAGNOSIS.tsv](../kernels/mutants/DIAGNOSIS.tsv), the mutants that "
        "belong to it and how many of them the diagnosis names it for first; then for each op, "
        "the mutants with failures on that op's cases, diagnosed from those results alone.\n\n"
     << "| class | mutants | named first |\n|---|---|---|\n";
  for (const defect_class& dc : defect_classes()) {
    int n = 0, right = 0;
    for (const auto& m : manifest) {
      if (m.expected_class != dc.id) continue;
      ++n;
      const auto it = mutants.find(m.name);
      if (it != mutants.end() && !it->second.diagnosis.empty() &&
          it->second.diagnosis.front() == dc.id) {
        ++right;
      }
    }
    if (n > 0) md << "| `" << dc.id << "` " << dc.title << " | " << n << " | " << right << " |\n";
  }
  md << "\n| op | mutants failing on it | named first |\n|---|---|---|\n";
  for (const std::string_view op :
       {"batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm"}) {
    int n = 0, right = 0;
    for (const auto& m : manifest) {
      const auto it = mutants.find(m.name);
      if (it == mutants.end()) continue;
      const auto d = it->second.diagnosis_by_op.find(std::string(op));
      if (d == it->second.diagnosis_by_op.end()) continue;
      ++n;
      if (d->second == m.expected_class) ++right;
    }
    md << "| " << op << " | " << n << " | " << right << " ("
       << percent(right, static_cast<std::size_t>(n)) << "%) |\n";
  }
  md << "\n## By section of BUGS.md\n\n| section | mutants | caught | by more than one kind "
        "|\n|---|---|---|---|\n";
  std::vector<std::string> sections;
  for (const auto& m : manifest) {
    if (std::find(sections.begin(), sections.end(), m.section) == sections.end()) {
      sections.push_back(m.section);
    }
  }
  for (const auto& sec : sections) {
    int n = 0, k = 0, k2 = 0;
    for (const auto& m : manifest) {
      if (m.section != sec) continue;
      ++n;
      const auto it = mutants.find(m.name);
      if (it == mutants.end()) continue;
      k += it->second.kinds() > 0 ? 1 : 0;
      k2 += it->second.kinds() > 1 ? 1 : 0;
    }
    md << "| " << sec << " | " << n << " | " << k << " | " << k2 << " |\n";
  }
  return md.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) throw usage_error("cannot write " + path);
}

// ---- Command line ---------------------------------------------------------------------------

struct arguments {
  settings set;
  std::string kernel, expect = "killed", json_out, markdown_out, manifest, mutants, assemble;
  std::optional<accuracy_level> level;
  std::vector<std::pair<std::string, accuracy_level>> correct;  // path, level
  int jobs = 2;
  bool quiet = false;
};

std::uint64_t parse_count(const std::string& flag, const std::string& v, std::uint64_t max) {
  std::size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != v.size() || v.empty() || v[0] == '-' || n > max) {
    throw usage_error(flag + ": expected a whole number up to " + std::to_string(max) + ", got '" +
                      v + "'");
  }
  return n;
}

accuracy_level level_arg(const std::string& flag, const std::string& v) {
  const auto l = parse_level(v);
  if (!l) throw usage_error(flag + ": expected strict, standard or lenient, got '" + v + "'");
  return *l;
}

arguments parse(int argc, char** argv) {
  arguments a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--quiet") {
      a.quiet = true;
      continue;
    }
    if (k == "--isolate-every-call") {
      a.set.one_process = false;
      continue;
    }
    if (k == "--help" || k == "-h") throw usage_error("");
    if (i + 1 >= argc) throw usage_error(k + " needs a value");
    const std::string v = argv[++i];
    if (k == "--kernel")
      a.kernel = v;
    else if (k == "--expect") {
      if (v != "killed" && v != "clean") throw usage_error("--expect: killed or clean");
      a.expect = v;
    } else if (k == "--level")
      a.level = level_arg(k, v);
    else if (k == "--json")
      a.json_out = v;
    else if (k == "--markdown")
      a.markdown_out = v;
    else if (k == "--manifest")
      a.manifest = v;
    else if (k == "--mutants")
      a.mutants = v;
    else if (k == "--assemble")
      a.assemble = v;
    else if (k == "--fixtures")
      a.set.fixtures = v;
    else if (k == "--seed")
      a.set.seed = parse_count(k, v, UINT64_MAX);
    else if (k == "--property-cases")
      a.set.property_cases = static_cast<int>(parse_count(k, v, 100000));
    else if (k == "--types") {
      a.set.types.clear();
      std::stringstream list(v);
      std::string t;
      while (std::getline(list, t, ',')) {
        if (t == "none") continue;
        if (t == "all") {
          for (const std::string& n : narrow_configurations()) a.set.types.push_back(n);
          continue;
        }
        if (!parse_data_types(t)) throw usage_error("--types: unknown configuration '" + t + "'");
        a.set.types.push_back(t);
      }
    } else if (k == "--jobs")
      a.jobs = static_cast<int>(std::max<std::uint64_t>(1, parse_count(k, v, 64)));
    else if (k == "--correct") {
      const auto colon = v.rfind(':');
      if (colon != std::string::npos && parse_level(v.substr(colon + 1))) {
        a.correct.emplace_back(v.substr(0, colon), *parse_level(v.substr(colon + 1)));
      } else {
        a.correct.emplace_back(v, accuracy_level::lenient);
      }
    } else {
      throw usage_error("unknown option " + k);
    }
  }
  return a;
}

constexpr const char* k_usage =
    "usage:\n"
    "  bnoracle_killmatrix --kernel K.so [--expect killed|clean] [--level L] [--json FILE]\n"
    "      [--types CONFIGURATION[,CONFIGURATION...]|all|none]\n"
    "      one kernel through fixtures, catalog, the catalog in those data-type configurations\n"
    "      and properties; exit 0 when the expectation holds (killed: some check flags it;\n"
    "      clean: none does)\n"
    "  bnoracle_killmatrix --manifest MANIFEST.tsv --mutants DIR [--correct K.so[:LEVEL]]...\n"
    "                      [--jobs J] [--markdown FILE] [--json DIR]\n"
    "      the whole matrix (mutants at --level, default lenient)\n"
    "  bnoracle_killmatrix --assemble DIR --manifest MANIFEST.tsv [--correct K.so[:LEVEL]]...\n"
    "                      --markdown FILE\n"
    "      the document from the JSON files of earlier single-kernel runs in DIR\n"
    "common: --fixtures DIR (default the source corpus), --seed S (1), --property-cases N (100),\n"
    "  --isolate-every-call (the properties with a process per kernel call, as bnoracle check\n"
    "  runs them, instead of in-process in one child process: slower, the same verdicts)\n"
    "exit codes: 0 expectations met, 1 a mutant survived or a correct kernel was flagged,\n"
    "            2 usage or input error\n";

std::int64_t fixture_count(const std::string& dir) {
  return static_cast<std::int64_t>(list_fixtures(dir).size());
}

std::string stem_of(const std::string& plugin) {
  std::string s = fs::path(plugin).stem().string();
  for (const char* prefix : {"libbnm_", "libbnk_"}) {
    if (s.rfind(prefix, 0) == 0) return s.substr(std::string(prefix).size());
  }
  return s;
}

// The matrix (or its assembly from earlier runs): exit 0 when every mutant is caught and no
// correct kernel is flagged.
int matrix(const arguments& a) {
  const std::vector<mutant_entry> manifest = read_manifest(a.manifest);
  settings set = a.set;
  if (a.level) set.mutant_level = *a.level;
  fs::path dir;
  if (!a.assemble.empty()) {
    dir = a.assemble;
  } else {
    if (a.mutants.empty()) throw usage_error("--mutants DIR is required with --manifest");
    dir = a.json_out.empty()
              ? fs::temp_directory_path() / ("bnoracle_killmatrix." + std::to_string(getpid()))
              : fs::path(a.json_out);
    fs::create_directories(dir);
    std::vector<job> jobs;
    for (const auto& m : manifest) {
      jobs.push_back({"mutant." + m.name,
                      (fs::path(a.mutants) / ("libbnm_" + m.name + ".so")).string(),
                      set.mutant_level, true, m.types});
    }
    for (const auto& [path, level] : a.correct) {
      jobs.push_back({"correct." + stem_of(path), path, level, false, narrow_configurations()});
    }
    if (!run_jobs(jobs, set, a.jobs, dir)) return 2;
  }
  std::map<std::string, kernel_outcome> mutants;
  std::vector<std::pair<std::string, kernel_outcome>> correct;
  auto read = [&dir](const std::string& label) -> std::optional<kernel_outcome> {
    std::ifstream in(dir / (label + ".json"));
    if (!in) return std::nullopt;
    return from_json(json::parse(in));
  };
  for (const auto& m : manifest) {
    if (auto k = read("mutant." + m.name)) mutants[m.name] = *k;
  }
  bool ok = mutants.size() == manifest.size();
  for (const auto& [path, level] : a.correct) {
    const std::string label = stem_of(path);
    auto k = read("correct." + label);
    if (!k) {
      ok = false;
      continue;
    }
    if (k->kinds() > 0) ok = false;
    correct.emplace_back(label, *k);
  }
  for (const auto& [name, k] : mutants) {
    if (k.kinds() == 0) ok = false;
  }
  const std::string md = markdown(manifest, mutants, correct, set, fixture_count(set.fixtures));
  if (!a.markdown_out.empty()) write_file(a.markdown_out, md);
  return ok ? 0 : 1;
}

int single(const arguments& a) {
  const accuracy_level level = a.level.value_or(accuracy_level::lenient);
  const auto start = std::chrono::steady_clock::now();
  kernel_outcome k;
  try {
    k = run_checks(a.kernel, level, a.set);
  } catch (const plugin_error& e) {
    throw usage_error(e.what());
  }
  if (!a.json_out.empty()) write_file(a.json_out, to_json(k).dump(1) + "\n");
  const bool killed = k.kinds() > 0;
  const bool met = (a.expect == "killed") == killed;
  if (!a.quiet || !met) {
    std::printf("%s at %s: %s\n", k.name.c_str(), std::string(to_string(level)).c_str(),
                killed ? "caught" : "not flagged by any check");
    for (const auto& c : k.checks) {
      std::printf("  %-10s %lld/%lld flagged", c.kind.c_str(), static_cast<long long>(c.flagged),
                  static_cast<long long>(c.judged));
      for (std::size_t i = 0; i < c.caught.size(); ++i) {
        std::printf("%s%s", i ? ", " : ": ", c.caught[i].c_str());
      }
      std::printf("\n");
    }
    std::printf("  expectation (%s): %s, %.1f s\n", a.expect.c_str(), met ? "met" : "NOT MET",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return met ? 0 : 1;
}

}  // namespace
}  // namespace bnoracle

int main(int argc, char** argv) {
  using namespace bnoracle;
  try {
    const arguments a = parse(argc, argv);
    if (!a.manifest.empty()) return matrix(a);
    if (!a.kernel.empty()) return single(a);
    throw usage_error("give --kernel, or --manifest with --mutants or --assemble");
  } catch (const usage_error& e) {
    if (e.what()[0] != '\0') std::cerr << "bnoracle_killmatrix: " << e.what() << "\n";
    std::cerr << k_usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bnoracle_killmatrix: " << e.what() << "\n";
    return 2;
  }
}
