#include "bnoracle/reduction.hpp"

namespace bnoracle {

reduction_map::cursor::cursor(const reduction_map& m, std::int64_t first)
    : m_(&m), p_(m.locate(first)) {
  const geometry::coordinates at = m.geom_.coordinates_of(first);
  n_ = at.n;
  c_ = at.c;
  s_ = at.s;
  if (m.op_.kind != op_kind::batch_norm && m.group_size_ > 0) k_ = first % m.group_size_;
}

reduction_map::reduction_map(const op_desc& op, const geometry& geom) : op_(op), geom_(geom) {
  validate(op);
  const std::int64_t N = geom.n();
  const std::int64_t C = geom.c();
  const std::int64_t S = geom.spatial_size();
  switch (op.kind) {
    case op_kind::batch_norm:
      groups_ = C;
      group_size_ = N * S;
      break;
    case op_kind::instance_norm:
      groups_ = N * C;
      group_size_ = S;
      break;
    case op_kind::group_norm:
      if (C % op.groups != 0) {
        throw invalid_problem("op: groups=" + std::to_string(op.groups) + " does not divide the " +
                              std::to_string(C) + " channels");
      }
      groups_ = N * op.groups;
      group_size_ = C / op.groups * S;
      break;
    case op_kind::layer_norm:
    case op_kind::rms_norm: {
      const auto rank = static_cast<int>(geom.spatial().size());
      if (op.normalized_axes > rank + 1) {
        throw invalid_problem("op: normalized_axes=" + std::to_string(op.normalized_axes) +
                              " exceeds the " + std::to_string(rank + 1) +
                              " axes of (c, spatial...)");
      }
      // The last k axes of (c, spatial...): spatial extents from the back, then c.
      group_size_ = 1;
      for (int k = 0; k < op.normalized_axes; ++k) {
        group_size_ *= k < rank ? geom.spatial()[static_cast<std::size_t>(rank - 1 - k)] : C;
      }
      groups_ = N * C * S / group_size_;
      break;
    }
  }
  switch (op.params) {
    case param_placement::none:
      params_ = 0;
      break;
    case param_placement::per_channel:
      params_ = C;
      break;
    case param_placement::per_normalized_element:
      params_ = group_size_;
      break;
  }
}

std::string reduction_map::element_name(std::int64_t logical) const {
  const geometry::coordinates at = geom_.coordinates_of(logical);
  return "n=" + std::to_string(at.n) + ",c=" + std::to_string(at.c) + ",s=" + std::to_string(at.s);
}

std::string reduction_map::group_name(std::int64_t group) const {
  switch (op_.kind) {
    case op_kind::batch_norm:
      return "c=" + std::to_string(group);
    case op_kind::instance_norm:
      return "n=" + std::to_string(group / geom_.c()) + ",c=" + std::to_string(group % geom_.c());
    case op_kind::group_norm:
      return "n=" + std::to_string(group / op_.groups) + ",g=" + std::to_string(group % op_.groups);
    case op_kind::layer_norm:
    case op_kind::rms_norm:
      break;
  }
  return "row=" + std::to_string(group);
}

std::string reduction_map::param_name(std::int64_t param) const {
  return (op_.params == param_placement::per_normalized_element ? "j=" : "c=") +
         std::to_string(param);
}

}  // namespace bnoracle
