#include "bnoracle/report.hpp"

#include "bnoracle/files.hpp"
#include "bnoracle/op.hpp"
#include "bnoracle/text.hpp"
#include "report_json.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <string_view>
#include <vector>

namespace bnoracle {

namespace {

// "K/N" (1-based), or "1/1" for an unsharded run.
std::string shard_text(const run_options& o) {
  return std::to_string(o.shard_index + 1) + "/" + std::to_string(std::max(o.shard_count, 1));
}

std::string level_name(const std::optional<accuracy_level>& l) {
  return l ? std::string(to_string(*l)) : std::string("none");
}

std::string num(double v, int precision = 3) {
  if (std::isinf(v)) return "inf";
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}

std::string fixed(double v, int decimals) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(decimals) << v;
  return os.str();
}

std::string case_id(const case_result& r) {
  std::string id = r.case_name + " " + (r.op.empty() ? std::string(to_string(r.mode)) : r.op);
  if (r.mode == bn_mode::forward_training && r.step > 0)
    id += " step " + std::to_string(r.step + 1);
  return id;
}

// One cell of the case table: the verdict, and for passes the strictest level met.
std::string cell(const case_result& r) {
  switch (r.result) {
    case verdict::pass:
      return "pass " + level_name(r.best);
    case verdict::mistrusted:
      return "mistrusted";
    case verdict::fail:
      return "FAIL";
    case verdict::fault:
      return "FAULT";
    case verdict::skip:
      return "skip";
  }
  return "?";
}

// "CONFORMANT at standard", "NOT CONFORMANT at strict", "KERNEL FAULT" or "NOTHING JUDGED".
std::string verdict_line(const run_summary& s) {
  const run_verdict v = s.verdict();
  std::string line(to_string(v));
  if (v == run_verdict::conformant || v == run_verdict::not_conformant) {
    line += " at " + std::string(to_string(s.options.level));
  }
  return line;
}

void write_text(std::ostream& os, const run_summary& s, bool verbose) {
  os << "bnoracle check: kernel '" << s.kernel.name << "' " << s.kernel.version << " (convention "
     << s.kernel.convention;
  // --convention overrides the claim: say under which convention the kernel was judged.
  if (!s.options.convention.empty() && s.options.convention != s.kernel.convention) {
    os << "; judged under convention " << s.options.convention;
  }
  os << ")\n";
  os << "gate level " << to_string(s.options.level) << ", seed " << s.options.seed
     << (s.options.filter.empty() ? "" : ", filter '" + s.options.filter + "'")
     << (s.options.shard_count > 1 ? ", shard " + shard_text(s.options) : "") << "\n\n";
  // The table: one row per case, one column per mode; a training mode with several steps shows
  // its worst step.
  constexpr std::array<bn_mode, 4> modes{bn_mode::forward_training, bn_mode::forward_inference,
                                         bn_mode::backward_training, bn_mode::backward_inference};
  std::vector<std::string> order;
  std::map<std::string, std::array<const case_result*, 4>> rows;
  auto rank = [](verdict v) {
    switch (v) {
      case verdict::fault:
        return 4;
      case verdict::fail:
        return 3;
      case verdict::mistrusted:
        return 2;
      case verdict::skip:
        return 0;
      case verdict::pass:
        return 1;
    }
    return 0;
  };
  for (const auto& r : s.results) {
    if (r.op == "property") continue;  // their own table below
    auto [it, inserted] = rows.try_emplace(r.case_name, std::array<const case_result*, 4>{});
    if (inserted) order.push_back(r.case_name);
    // Operations that are not a batch-norm mode (fold, syncbn) show in the first column.
    const std::size_t col = r.op.empty() ? static_cast<std::size_t>(r.mode) : 0;
    const auto& cur = it->second[col];
    const bool worse = cur == nullptr || rank(r.result) > rank(cur->result) ||
                       (rank(r.result) == rank(cur->result) && r.best && cur->best &&
                        static_cast<int>(*r.best) > static_cast<int>(*cur->best));
    if (worse) it->second[col] = &r;
  }
  if (!order.empty()) {
    os << std::left << std::setw(46) << "case" << std::setw(16) << "forward train" << std::setw(16)
       << "forward infer" << std::setw(16) << "backward train"
       << "backward infer\n";
    for (const auto& name : order) {
      os << std::left << std::setw(46) << name;
      for (std::size_t m = 0; m < modes.size(); ++m) {
        const case_result* r = rows[name][m];
        os << std::setw(m + 1 < modes.size() ? 16 : 0) << (r ? cell(*r) : "-");
      }
      os << '\n';
    }
  }
  bool props = false;
  for (const auto& r : s.results) {
    if (r.op != "property") continue;
    if (!props) {
      os << "\nproperties (" << s.options.property_cases << " generated cases each, seed "
         << s.options.seed << ", tolerance at " << to_string(s.options.level)
         << "; docs/properties.md)\n";
      props = true;
    }
    os << "  " << std::left << std::setw(44) << r.case_name.substr(9) << std::setw(8)
       << (r.result == verdict::pass ? "pass" : std::string(to_string(r.result))) << std::setw(10)
       << (fixed(r.seconds, 2) + " s")
       << (r.result == verdict::pass
               ? r.problem
               : r.reason.substr(0, std::min(r.reason.find('\n'), k_report_reason_limit)))
       << '\n';
  }
  bool header = false;
  bool mistrust_explained = false;
  for (const auto& r : s.results) {
    const bool interesting =
        r.result == verdict::fail || r.result == verdict::fault || r.result == verdict::mistrusted;
    if (!interesting && !(verbose && r.result == verdict::skip)) continue;
    if (!header) {
      os << "\ndetails\n";
      header = true;
    }
    os << std::left << std::setw(11) << to_string(r.result) << case_id(r) << '\n';
    if (r.result == verdict::mistrusted && !mistrust_explained) {
      os << "           (MISTRUSTED: more than half of an output's elements are smaller than their "
            "bound, so agreeing carries little information: neither a pass nor a failure; "
            "docs/error-model.md, \"Mistrusted comparisons\")\n";
      mistrust_explained = true;
    }
    {
      // Multi-line reasons (a property's counterexample) stay indented.
      std::istringstream lines(readable_reason(r));
      for (std::string line; std::getline(lines, line);) os << "           " << line << '\n';
    }
    if (!interesting) continue;
    if (r.op == "property") {
      os << "           repro: " << r.repro << '\n';
      continue;
    }
    os << "           problem: " << r.problem << " [" << r.tier << " tier]\n";
    for (const auto& o : r.outputs) {
      const double rms = o.count > 0 ? std::sqrt(o.sum_sq_ulps / static_cast<double>(o.count)) : 0;
      os << "           " << std::left << std::setw(18) << o.name << " max " << num(o.max_ulps)
         << " ulp, rms " << num(rms) << ", worst/bound " << num(o.worst_ratio)
         << (o.passed[static_cast<std::size_t>(s.options.level)] ? "" : "  <-- fails") << '\n';
    }
    os << "           repro: " << r.repro << '\n';
  }
  os << '\n'
     << s.passed << " passed, " << s.failed << " failed, " << s.skipped << " skipped, "
     << s.mistrusted << " mistrusted, " << s.faults
     << " faults (one per case, mode and step, and one per property)\n";
  os << "best level met by every judged catalog case: " << level_name(s.best)
     << "   (strict: log2(L) summation error, standard: probabilistic sqrt(L), lenient: L; "
        "docs/error-model.md)\n";
  for (const auto& u : s.unjudged) os << "no evidence: " << u << '\n';
  for (const std::string& line : diagnosis_lines(diagnose(s))) os << "diagnosis: " << line << '\n';
  os << "verdict: " << verdict_line(s) << '\n';
}

nlohmann::json to_json_value(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  return v;
}

// A double as a decimal string that reads back exactly ("nan", "inf", "-inf" otherwise).
std::string decimal17(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char text[40];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

}  // namespace

nlohmann::json report_json(const run_summary& s) {
  nlohmann::json j;
  j["schema"] = "bnoracle.check";
  j["schema_version"] = 1;
  j["kernel"] = {
      {"name", s.kernel.name}, {"version", s.kernel.version}, {"convention", s.kernel.convention}};
  j["options"] = {
      {"level", to_string(s.options.level)},
      {"seed", s.options.seed},
      {"catalog", s.options.catalog},
      {"properties", s.options.properties},
      {"property_cases", s.options.property_cases},
      {"filter", s.options.filter},
      {"types", describe(s.options.types.value_or(data_types{}))},
      {"shard", shard_text(s.options)},
      {"convention", s.options.convention.empty() ? s.kernel.convention : s.options.convention}};
  j["summary"] = {{"passed", s.passed},         {"failed", s.failed},
                  {"skipped", s.skipped},       {"mistrusted", s.mistrusted},
                  {"faults", s.faults},         {"best_level", level_name(s.best)},
                  {"exit_code", s.exit_code()}, {"verdict", to_string(s.verdict())},
                  {"unjudged", s.unjudged}};
  auto& diagnosis = j["diagnosis"] = nlohmann::json::array();
  for (const auto& d : diagnose(s)) {
    diagnosis.push_back({{"class", d.cls},
                         {"title", d.title},
                         {"explained", d.explained},
                         {"failed", d.failed},
                         {"magnitude_only", d.approximate},
                         {"evidence", d.evidence},
                         {"example", d.example}});
  }
  auto& cases = j["cases"] = nlohmann::json::array();
  for (const auto& r : s.results) {
    nlohmann::json c{{"case", r.case_name},
                     {"mode", r.op.empty() ? std::string(to_string(r.mode)) : r.op},
                     {"step", r.step},
                     {"problem", r.problem},
                     {"tier", r.tier},
                     {"verdict", to_string(r.result)},
                     {"best_level", level_name(r.best)},
                     {"reason", r.reason},
                     {"reason_file", r.reason_file},
                     {"seconds", r.seconds},
                     {"repro", r.repro}};
    auto& explained = c["explained_by"] = nlohmann::json::array();
    for (const auto& e : r.explained_by) {
      explained.push_back(
          {{"class", e.cls}, {"evidence", e.evidence}, {"magnitude_only", e.approximate}});
    }
    auto& outs = c["outputs"] = nlohmann::json::array();
    for (const auto& o : r.outputs) {
      outs.push_back(
          {{"name", o.name},
           {"count", o.count},
           {"passed",
            {{"strict", o.passed[0]}, {"standard", o.passed[1]}, {"lenient", o.passed[2]}}},
           {"max_ulps", to_json_value(o.max_ulps)},
           {"worst_ratio", to_json_value(o.worst_ratio)},
           {"worst", o.worst_where},
           {"got", hex_float(o.got)},
           {"expected", hex_float(o.expected)},
           {"exact", decimal17(o.worst_exact)},
           {"error_ulps", to_json_value(o.worst_ulps)},
           {"bound_ulps", to_json_value(o.worst_bound_ulps)},
           {"bound", decimal17(o.worst_bound)},
           {"mistrusted", o.mistrusted},
           {"class_failure", o.class_failure}});
    }
    cases.push_back(std::move(c));
  }
  return j;
}

namespace {

void write_json(std::ostream& os, const run_summary& s) {
  // Names and reasons hold text from kernels and file names: invalid UTF-8 becomes U+FFFD.
  os << report_json(s).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

// The test class of a result: bnoracle.<kernel>.<mode> for catalog cases, .<operation> for the
// fold and the SyncBN merge, and .property.<name> for each property, so that CI systems group
// them apart.
std::string junit_classname(const run_summary& s, const case_result& r) {
  const std::string base = "bnoracle." + s.kernel.name + ".";
  if (r.op == "property") {
    const std::string_view prefix = "property/";
    const std::string name =
        r.case_name.rfind(prefix, 0) == 0 ? r.case_name.substr(prefix.size()) : r.case_name;
    return base + "property." + name;
  }
  return base + (r.op.empty() ? std::string(to_string(r.mode)) : r.op);
}

// JUnit XML as Jenkins' xunit junit-10.xsd defines it and GitLab's and GitHub's readers take it:
// counts on <testsuite> (<testsuites> carries no `skipped`), times in fixed-point seconds, the
// run's settings in <properties>.
void write_junit(std::ostream& os, const run_summary& s) {
  double total = 0;
  for (const auto& r : s.results) total += r.seconds;
  // One more test case than results: the evidence rule, which fails when nothing was judged, so
  // that a CI system reading only the XML does not take a run of skips for a success.
  const std::size_t tests = s.results.size() + 1;
  const std::int64_t failures = s.failed + (s.unjudged.empty() ? 0 : 1);
  const auto seconds = [](double t) { return fixed(std::max(t, 0.0), 6); };
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  os << "<testsuites name=\"bnoracle\" tests=\"" << tests << "\" failures=\"" << failures
     << "\" errors=\"" << s.faults << "\" time=\"" << seconds(total) << "\">\n";
  os << "  <testsuite name=\"" << xml_escape("bnoracle." + s.kernel.name) << "\" tests=\"" << tests
     << "\" failures=\"" << failures << "\" errors=\"" << s.faults << "\" skipped=\"" << s.skipped
     << "\" time=\"" << seconds(total) << "\">\n";
  const std::array<std::pair<const char*, std::string>, 8> props{{
      {"kernel", s.kernel.name},
      {"kernel_version", s.kernel.version},
      {"convention", s.options.convention.empty() ? s.kernel.convention : s.options.convention},
      {"level", std::string(to_string(s.options.level))},
      {"seed", std::to_string(s.options.seed)},
      {"types", describe(s.options.types.value_or(data_types{}))},
      {"filter", s.options.filter},
      {"shard", shard_text(s.options)},
  }};
  os << "    <properties>\n";
  for (const auto& [name, value] : props) {
    os << "      <property name=\"" << name << "\" value=\"" << xml_escape(value) << "\"/>\n";
  }
  os << "    </properties>\n";
  os << "    <testcase classname=\"" << xml_escape("bnoracle." + s.kernel.name + ".evidence")
     << "\" name=\"every declared operation has a judged result\" time=\"" << seconds(0) << "\">\n";
  if (!s.unjudged.empty()) {
    std::string why;
    for (const auto& u : s.unjudged) why += (why.empty() ? "" : "; ") + u;
    os << "      <failure message=\"" << xml_escape("NOTHING JUDGED: " + why)
       << "\" type=\"nothing-judged\">" << xml_escape(why) << "</failure>\n";
  }
  os << "    </testcase>\n";
  for (const auto& r : s.results) {
    os << "    <testcase classname=\"" << xml_escape(junit_classname(s, r)) << "\" name=\""
       << xml_escape(case_id(r)) << "\" time=\"" << seconds(r.seconds) << "\">\n";
    switch (r.result) {
      case verdict::fail:
        os << "      <failure message=\"" << xml_escape(readable_reason(r))
           << "\" type=\"non-conformant\">" << xml_escape(r.problem + "\nrepro: " + r.repro)
           << "</failure>\n";
        break;
      case verdict::fault:
        os << "      <error message=\"" << xml_escape(readable_reason(r))
           << "\" type=\"kernel-fault\">" << xml_escape(r.problem + "\nrepro: " + r.repro)
           << "</error>\n";
        break;
      case verdict::skip:
        os << "      <skipped message=\"" << xml_escape(r.reason) << "\"/>\n";
        break;
      case verdict::mistrusted:
        os << "      <system-out>" << xml_escape("MISTRUSTED: " + r.reason) << "</system-out>\n";
        break;
      case verdict::pass:
        break;
    }
    os << "    </testcase>\n";
  }
  os << "  </testsuite>\n</testsuites>\n";
}

// "bnoracle-<kernel>-<case>-seed<N>.txt" with every character outside [A-Za-z0-9._-] as '_'.
std::string reason_file_name(const run_summary& s, const case_result& r) {
  std::string name =
      "bnoracle-" + s.kernel.name + "-" + case_id(r) + "-seed" + std::to_string(s.options.seed);
  for (char& ch : name) {
    const bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    if (!keep) ch = '_';
  }
  return name + ".txt";
}

constexpr std::string_view k_reason_file_header = "bnoracle: the whole reason of ";

}  // namespace

std::string readable_reason(const case_result& r) {
  if (r.reason.size() <= k_report_reason_limit || r.reason_file.empty()) return r.reason;
  std::size_t cut = r.reason.rfind('\n', k_report_reason_limit);
  if (cut == std::string::npos || cut == 0) cut = k_report_reason_limit;
  return r.reason.substr(0, cut) + "\n... " + std::to_string(r.reason.size() - cut) +
         " more characters; the whole reason is in " + r.reason_file;
}

std::vector<std::string> save_long_reasons(run_summary& s, const std::string& dir) {
  std::vector<std::string> problems;
  for (case_result& r : s.results) {
    if (r.reason.size() <= k_report_reason_limit) continue;
    const std::filesystem::path path = std::filesystem::path(dir) / reason_file_name(s, r);
    // A file of that name that bnoracle did not write is left alone.
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      std::ifstream in(path, std::ios::binary);
      std::string head(k_reason_file_header.size(), '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      if (!in || head != k_reason_file_header) {
        problems.push_back(path.string() + " exists and was not written by bnoracle");
        continue;
      }
    }
    try {
      write_file(path, std::string(k_reason_file_header) + case_id(r) + " (kernel " +
                           s.kernel.name + ", seed " + std::to_string(s.options.seed) + ")\n" +
                           r.reason + "\n");
      r.reason_file = path.string();
    } catch (const environment_error& e) {
      problems.emplace_back(e.what());
    }
  }
  return problems;
}

std::string xml_escape(const std::string& raw) {
  // Text from kernels and file names may not be UTF-8: ill-formed bytes become U+FFFD first.
  const std::string in = valid_utf8(raw);
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char ch = in[i];
    // U+FFFE and U+FFFF (EF BF BE, EF BF BF) are not XML characters either.
    if (static_cast<unsigned char>(ch) == 0xEF && i + 2 < in.size() &&
        static_cast<unsigned char>(in[i + 1]) == 0xBF &&
        (static_cast<unsigned char>(in[i + 2]) & 0xFE) == 0xBE) {
      out += '?';
      i += 2;
      continue;
    }
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0 (except tab, LF, CR).
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') {
          out += '?';
        } else {
          out += ch;
        }
    }
  }
  return out;
}

void write_report(std::ostream& os, const run_summary& s, report_format format, bool verbose) {
  switch (format) {
    case report_format::text:
      write_text(os, s, verbose);
      break;
    case report_format::json:
      write_json(os, s);
      break;
    case report_format::junit:
      write_junit(os, s);
      break;
    case report_format::html:
      write_html(os, s);
      break;
  }
}

}  // namespace bnoracle
