#include "bnoracle/judge.hpp"

#include "bnoracle/format.hpp"

#include "bnoracle/exact.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace bnoracle {

std::string value_text(float v) {
  if (!std::isfinite(v)) return hex_float(v);  // "nan", "inf", "-inf": one spelling suffices
  char decimal[32];
  std::snprintf(decimal, sizeof decimal, "%.9g", static_cast<double>(v));
  return std::string(decimal) + " (" + hex_float(v) + ")";
}

std::string worst_element_text(const output_result& o, const std::string& qualifier) {
  std::ostringstream os;
  os << o.worst_where << " got=" << value_text(o.got) << " exp=" << value_text(o.expected)
     << " err=" << o.worst_ulps << " ulp (bound " << o.worst_bound_ulps << " ulp" << qualifier
     << ")";
  return os.str();
}

std::string element_where(const reduction_map& m, const std::string& name, std::int64_t i,
                          output_extent extent) {
  std::string where;
  switch (extent) {
    case output_extent::element:
      where = m.element_name(i);
      break;
    case output_extent::group:
      where = m.group_name(i);
      break;
    case output_extent::parameter:
      where = m.param_name(i);
      break;
    case output_extent::running:
      where = "c=" + std::to_string(i);
      break;
  }
  return name + '[' + where + ']';
}

std::string element_where(const geometry& g, const std::string& name, std::int64_t i,
                          bool per_element) {
  return element_where(reduction_map(batch_norm_op(), g), name, i,
                       per_element ? output_extent::element : output_extent::group);
}

element_error reference_source::measure(std::int64_t i, float v) const {
  const golden& g = at(i);
  element_error e;
  e.ulps = error_ulps(v, g);
  e.ulp = exact_pow2(g.ulp_exp);
  e.abs_err = std::fabs(e.ulps) * e.ulp;
  e.exact_magnitude = std::fabs(static_cast<double>(g.value) + g.residual * e.ulp);
  return e;
}

output_result judge_output(const std::string& shown, const std::string& golden_name,
                           const std::string& bound_name, const reference& ref,
                           const error_model& model, accuracy_level level, double mistrust_fraction,
                           const std::function<float(std::int64_t)>& got) {
  return judge_output(shown, output_named(golden_name), output_named(bound_name), ref, model, level,
                      mistrust_fraction, got);
}

}  // namespace bnoracle
