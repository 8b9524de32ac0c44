// The JSON report as a value, shared by the JSON report (report.cpp) and the data the HTML
// report embeds (html.cpp). Internal: nlohmann::json stays out of the installed headers.
#pragma once

#include "bnoracle/runner.hpp"

#include <nlohmann/json.hpp>

namespace bnoracle {

// The fields of fixtures/schema/bnoracle.check.v1.schema.json.
[[nodiscard]] nlohmann::json report_json(const run_summary& s);

}  // namespace bnoracle
