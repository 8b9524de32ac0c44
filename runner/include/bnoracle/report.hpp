// Reports of a conformance run: text for people, JSON for tools, JUnit XML for CI systems, and
// an HTML page that draws every output's error against its bound.
#pragma once

#include "bnoracle/runner.hpp"

#include <ostream>
#include <string>

namespace bnoracle {

enum class report_format : std::uint8_t { text, json, junit, html };

// The HTML report (html.cpp): one self-contained page; the results' output profiles are drawn
// where they were kept (run_options::profiles).
void write_html(std::ostream& os, const run_summary& s);

// `verbose` text lists every case; otherwise only failures, faults and mistrusted cases.
void write_report(std::ostream& os, const run_summary& s, report_format format, bool verbose);

// The characters of a reason the text and JUnit reports show; a longer one (a property's shrunk
// counterexample) is cut there, and the report points at its file when save_long_reasons wrote
// one. The JSON report always carries the whole reason.
inline constexpr std::size_t k_report_reason_limit = 2000;

// A reason as the text and JUnit reports show it: whole when it fits k_report_reason_limit, else
// cut at a line end before it, with the count of characters left out and where they are.
[[nodiscard]] std::string readable_reason(const case_result& r);

// Writes the whole reason of every result whose reason exceeds k_report_reason_limit to a file
// in `dir`, named after the kernel, the case and the seed, and records it in reason_file.
// Returns the sentences of what could not be written (the report then keeps the reason whole).
[[nodiscard]] std::vector<std::string> save_long_reasons(run_summary& s, const std::string& dir);

// XML-escapes a string (attribute and text content).
[[nodiscard]] std::string xml_escape(const std::string& s);

}  // namespace bnoracle
