// Reports of a conformance run: text for people, JSON for tools, JUnit XML for CI systems.
#pragma once

#include "bnoracle/runner.hpp"

#include <ostream>
#include <string>

namespace bnoracle {

enum class report_format : std::uint8_t { text, json, junit };

// `verbose` text lists every case; otherwise only failures, faults and mistrusted cases.
void write_report(std::ostream& os, const run_summary& s, report_format format, bool verbose);

// XML-escapes a string (attribute and text content).
[[nodiscard]] std::string xml_escape(const std::string& s);

}  // namespace bnoracle
