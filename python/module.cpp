// bnoracle for Python: the exact reference and the judge on NumPy arrays (python/README.md,
// docs/python.md). The package bnoracle (python/bnoracle/__init__.py) wraps this extension,
// bnoracle._bnoracle.
//
// Tensors arrive as NumPy arrays in logical order, (N, C, spatial...) with 0 to 3 spatial axes:
// any memory layout the user has is a layout of the same logical tensor, and the reference's
// results do not depend on it. Values are taken as float32 (float16 arrays convert exactly); each
// must be a value of its role's format in the problem's data types, as for every other interface.
#include "check.hpp"

#include "bnoracle/error_model.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/op.hpp"
#include "bnoracle/problem.hpp"
#include "bnoracle/reference.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace bnoracle {

accuracy_level level_named(const std::string& s) {
  const std::optional<accuracy_level> l = parse_level(s);
  if (!l) throw py::value_error("level: '" + s + "' is not strict, standard or lenient");
  return *l;
}

namespace {

using float_array = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::vector<float> values_of(const std::optional<float_array>& a) {
  if (!a) return {};
  return {a->data(), a->data() + a->size()};
}

bn_mode mode_named(const std::string& s) {
  const std::optional<bn_mode> m = parse_mode(s);
  if (!m) {
    throw py::value_error("mode: '" + s +
                          "' is not forward_training, forward_inference, backward_training or "
                          "backward_inference");
  }
  return *m;
}

// A problem, its inputs owned (the reference reads them through pointers), the reference and
// its error model.
class problem_state {
 public:
  problem_state(const std::string& op, const std::string& mode, const float_array& src,
                const std::optional<float_array>& diff_dst, const std::optional<float_array>& gamma,
                const std::optional<float_array>& beta,
                const std::optional<float_array>& running_mean,
                const std::optional<float_array>& running_var, std::int64_t num_batches_tracked,
                double eps, std::optional<double> momentum, const std::string& convention,
                const std::string& types, const std::string& tier)
      : mode_(mode_named(mode)) {
    if (src.ndim() < 2 || src.ndim() > 5) {
      throw py::value_error(
          "src: expected an array of shape (N, C, spatial...) with 0 to 3 "
          "spatial axes, got " +
          std::to_string(src.ndim()) + " axes");
    }
    problem_.op = parse_op_desc(op);
    problem_.n = src.shape(0);
    problem_.c = src.shape(1);
    for (py::ssize_t d = 2; d < src.ndim(); ++d) problem_.spatial.push_back(src.shape(d));
    problem_.mem_layout = dense_layout(problem_.spatial.size());
    problem_.eps = eps;
    problem_.momentum = momentum;
    problem_.convention = convention;
    const std::optional<data_types> t = parse_data_types(types);
    if (!t) throw py::value_error("types: '" + types + "' is not a data-type configuration");
    problem_.types = *t;
    if (tier != "general" && tier != "exact") {
      throw py::value_error("tier: '" + tier + "' is not general or exact");
    }
    tier_ = tier == "exact" ? data_tier::exact : data_tier::general;
    src_ = values_of(src);
    if (diff_dst) {
      if (diff_dst->size() != src.size()) {
        throw py::value_error("diff_dst: " + std::to_string(diff_dst->size()) +
                              " values, src has " + std::to_string(src.size()));
      }
      diff_dst_ = values_of(diff_dst);
    }
    gamma_ = values_of(gamma);
    beta_ = values_of(beta);
    running_mean_ = values_of(running_mean);
    running_var_ = values_of(running_var);
    in_.src = src_.data();
    in_.diff_dst = diff_dst_.empty() ? nullptr : diff_dst_.data();
    in_.gamma = gamma_;
    in_.beta = beta_;
    in_.running_mean = running_mean_;
    in_.running_var = running_var_;
    in_.num_batches_tracked = num_batches_tracked;
    try {
      ref_ = std::make_unique<reference>(problem_, mode_, in_);
      model_ = std::make_unique<error_model>(*ref_, in_, tier_);
    } catch (const invalid_problem& e) {
      throw py::value_error(e.what());
    }
  }

  [[nodiscard]] const reference& ref() const { return *ref_; }
  [[nodiscard]] const error_model& model() const { return *model_; }
  [[nodiscard]] const bn_problem& problem() const { return problem_; }
  [[nodiscard]] std::vector<py::ssize_t> shape_of(output_id id) const {
    if (per_element(id)) {
      std::vector<py::ssize_t> s{problem_.n, problem_.c};
      for (const std::int64_t e : problem_.spatial) s.push_back(e);
      return s;
    }
    return {static_cast<py::ssize_t>(ref_->output_size(id))};
  }

 private:
  bn_mode mode_;
  bn_problem problem_;
  data_tier tier_ = data_tier::general;
  std::vector<float> src_, diff_dst_, gamma_, beta_, running_mean_, running_var_;
  bn_inputs in_;
  std::unique_ptr<reference> ref_;
  std::unique_ptr<error_model> model_;
};

output_id output_of(const problem_state& s, const std::string& name) {
  const std::optional<output_id> id = parse_output(name);
  if (!id || !s.ref().has_output(*id)) {
    std::string names;
    for (const std::string_view n : s.ref().output_names()) {
      names += (names.empty() ? "" : ", ") + std::string(n);
    }
    throw py::key_error("'" + name + "' is not an output of this mode (outputs: " + names + ")");
  }
  return *id;
}

void require_defined(const problem_state& s) {
  if (!s.ref().refusal().empty()) {
    throw py::value_error("the convention refuses this problem: " + s.ref().refusal() +
                          " (a conforming kernel must refuse it too; no output is defined)");
  }
}

// The correctly rounded goldens of one output, shaped as the output (a float32 array; float16
// and bfloat16 values are carried exactly in float32).
py::array_t<float> goldens_of(const problem_state& s, const std::string& name) {
  require_defined(s);
  const output_id id = output_of(s, name);
  py::array_t<float> out(s.shape_of(id));
  float* p = out.mutable_data();
  const std::vector<golden> g = s.ref().goldens(id);
  for (std::size_t i = 0; i < g.size(); ++i) p[i] = g[i].value;
  return out;
}

// The bounds |kernel − exact| of one output at a level, shaped as the output (float64; +inf
// where the model claims nothing).
py::array_t<double> bounds_of(const problem_state& s, const std::string& name,
                              const std::string& level) {
  require_defined(s);
  const output_id id = output_of(s, name);
  const accuracy_level l = level_named(level);
  py::array_t<double> out(s.shape_of(id));
  double* p = out.mutable_data();
  // The error model gives the three levels of a range at once (sharing each group's terms), a
  // block at a time so that the temporary stays small.
  constexpr py::ssize_t k_block = py::ssize_t{1} << 16;
  std::vector<std::array<double, 3>> block(
      static_cast<std::size_t>(std::min<py::ssize_t>(out.size(), k_block)));
  for (py::ssize_t from = 0; from < out.size(); from += k_block) {
    const py::ssize_t to = std::min(out.size(), from + k_block);
    s.model().bounds(id, from, to, std::span(block).first(static_cast<std::size_t>(to - from)));
    for (py::ssize_t i = from; i < to; ++i) {
      p[i] = block[static_cast<std::size_t>(i - from)][static_cast<std::size_t>(l)];
    }
  }
  return out;
}

// The exact values of one output as decimal strings (45 significant digits; "undefined" or
// "unspecified" where the value has no number), flattened in logical order.
std::vector<std::string> exact_of(const problem_state& s, const std::string& name, int digits) {
  require_defined(s);
  const output_id id = output_of(s, name);
  std::vector<std::string> out;
  const std::int64_t n = s.ref().output_size(id);
  out.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out.push_back(s.ref().exact(id, i).decimal(digits));
  return out;
}

py::dict judge_output_of(const problem_state& s, const std::string& name, const float_array& got,
                         const std::string& level, double mistrust_fraction) {
  require_defined(s);
  const output_id id = output_of(s, name);
  const std::int64_t n = s.ref().output_size(id);
  if (got.size() != n) {
    throw py::value_error(name + ": " + std::to_string(got.size()) + " values, the output has " +
                          std::to_string(n));
  }
  const float* p = got.data();
  const output_result r = judge_output(name, id, id, s.ref(), s.model(), level_named(level),
                                       mistrust_fraction, [p](std::int64_t i) { return p[i]; });
  py::dict passed;
  for (std::size_t l = 0; l < 3; ++l) {
    passed[py::str(std::string(to_string(k_accuracy_levels[l])))] = r.passed[l];
  }
  py::dict d;
  d["name"] = name;
  d["count"] = r.count;
  d["judged"] = r.judged;
  d["passed"] = passed;
  d["worst_ratio"] = r.worst_ratio;
  d["max_ulps"] = r.max_ulps;
  d["worst"] = r.worst_where;
  d["worst_index"] = r.worst_index;
  d["got"] = r.got;
  d["expected"] = r.expected;
  d["exact"] = r.worst_exact;
  d["error_ulps"] = r.worst_ulps;
  d["bound_ulps"] = r.worst_bound_ulps;
  d["bound"] = r.worst_bound;
  d["mistrusted"] = r.mistrusted;
  d["class_failure"] = r.class_failure;
  d["text"] = worst_element_text(r, "");
  return d;
}

}  // namespace
}  // namespace bnoracle

PYBIND11_MODULE(_bnoracle, m) {
  using namespace bnoracle;
  m.doc() = "bnoracle's exact reference and judge (the C++ core; use the bnoracle package)";
  py::class_<problem_state>(m, "Problem")
      .def(py::init<const std::string&, const std::string&, const float_array&,
                    const std::optional<float_array>&, const std::optional<float_array>&,
                    const std::optional<float_array>&, const std::optional<float_array>&,
                    const std::optional<float_array>&, std::int64_t, double, std::optional<double>,
                    const std::string&, const std::string&, const std::string&>(),
           py::arg("op"), py::arg("mode"), py::arg("src"), py::arg("diff_dst"), py::arg("gamma"),
           py::arg("beta"), py::arg("running_mean"), py::arg("running_var"),
           py::arg("num_batches_tracked"), py::arg("eps"), py::arg("momentum"),
           py::arg("convention"), py::arg("types"), py::arg("tier"))
      .def_property_readonly("refusal", [](const problem_state& s) { return s.ref().refusal(); })
      .def_property_readonly("outputs",
                             [](const problem_state& s) {
                               std::vector<std::string> names;
                               for (const std::string_view n : s.ref().output_names()) {
                                 names.emplace_back(n);
                               }
                               return names;
                             })
      .def_property_readonly("description",
                             [](const problem_state& s) { return describe(s.problem()); })
      .def("goldens", &goldens_of, py::arg("name"))
      .def("bounds", &bounds_of, py::arg("name"), py::arg("level"))
      .def("exact", &exact_of, py::arg("name"), py::arg("digits") = 45)
      .def("judge", &judge_output_of, py::arg("name"), py::arg("got"), py::arg("level"),
           py::arg("mistrust_fraction") = 0.5);
  bind_check(m);
  // The op descriptor's canonical text from the subprocess protocol's op object (kind and
  // fields), as bnoracle.check gives a kernel: "layer_norm(axes=1)", "group_norm(groups=4)".
  m.def("describe_op", [](const std::string& kind, int normalized_axes, std::int64_t groups,
                          bool centred, const std::string& params, bool weight_offset,
                          bool running_stats, bool cast_before_weight) {
    const std::optional<op_kind> k = parse_op_kind(kind);
    const std::optional<param_placement> pp = parse_param_placement(params);
    if (!k || !pp) throw py::value_error("op: unknown kind or params");
    op_desc op{*k,  normalized_axes, groups,        centred,
               *pp, weight_offset,   running_stats, cast_before_weight};
    return describe(op);
  });
}
