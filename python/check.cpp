// bnoracle.check: the whole conformance suite — catalog, properties, diagnosis, reports — run in
// this Python process against a kernel written in Python (docs/python.md, "The conformance
// suite in process").
//
// The kernel is any object with a method per mode it provides (forward_training,
// forward_inference, backward_training, backward_inference) and a few optional attributes that
// describe it (name, version, convention, ops, types, saves, updates_running,
// supports_cumulative). Each call receives a namespace with the problem and its input tensors as
// float32 NumPy arrays in logical order (N, C, spatial...), whatever memory layout the case has,
// and returns a dict of its outputs; python_kernel reads the case's buffers into those arrays
// and writes the returned values back through the buffers' strides and formats. Calls are
// isolated as plugin calls are (a fork per call): a kernel that crashes the interpreter, hangs or
// writes its inputs is a FAULT of its result, not the end of the test process.
#include "check.hpp"

#include "bnoracle/catalog.hpp"
#include "bnoracle/format.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/properties.hpp"
#include "bnoracle/report.hpp"
#include "bnoracle/runner.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace bnoracle {
namespace {

constexpr const char* k_mode_methods[4] = {"forward_training", "forward_inference",
                                           "backward_training", "backward_inference"};

template <class T>
T attribute_or(const py::object& o, const char* name, T fallback) {
  if (!py::hasattr(o, name)) return fallback;
  return o.attr(name).cast<T>();
}

std::uint32_t dtype_bits(const std::vector<std::string>& names, const char* what) {
  std::uint32_t bits = 0;
  for (const std::string& n : names) {
    const std::optional<format_id> f = parse_format(n);
    if (!f) throw py::value_error(std::string(what) + ": '" + n + "' is not a format");
    bits |= dtype_bit(*f);
  }
  return bits;
}

// Reads and writes one tensor of a call: element i of the logical order at memory offset
// offsets[i], in format `f` (16-bit formats as their bits).
struct tensor_io {
  const void* in = nullptr;
  void* out = nullptr;
  format_id f = format_id::float32;

  [[nodiscard]] float get(std::int64_t off) const {
    if (f == format_id::float32) return static_cast<const float*>(in)[off];
    return decode_half(format_of(f), static_cast<const std::uint16_t*>(in)[off]);
  }
  void put(std::int64_t off, float v) const {
    if (f == format_id::float32) {
      static_cast<float*>(out)[off] = v;
      return;
    }
    const float_format& ff = format_of(f);
    static_cast<std::uint16_t*>(out)[off] = encode_half(ff, round_to_format(ff, v));
  }
};

class python_kernel final : public bn_kernel {
 public:
  explicit python_kernel(py::object kernel)
      : kernel_(std::move(kernel)),
        namespace_(py::module_::import("types").attr("SimpleNamespace")),
        as_float32_(py::module_::import("bnoracle").attr("_as_float32")) {
    info_.name =
        attribute_or<std::string>(kernel_, "name", py::str(py::type::of(kernel_).attr("__name__")));
    info_.version = attribute_or<std::string>(kernel_, "version", "0");
    info_.convention = attribute_or<std::string>(kernel_, "convention", "pytorch");
    info_.abi_version = 2;
    info_.layouts = ~std::uint32_t{0};  // every layout arrives as logical arrays
    info_.updates_running = attribute_or<bool>(kernel_, "updates_running", true);
    info_.supports_cumulative = attribute_or<bool>(kernel_, "supports_cumulative", false);
    const std::string saves = attribute_or<std::string>(kernel_, "saves", "none");
    if (saves == "mean_invstd") {
      info_.saves = BNK_SAVES_MEAN_INVSTD;
    } else if (saves == "mean_var") {
      info_.saves = BNK_SAVES_MEAN_VAR;
    } else if (saves != "none") {
      throw py::value_error("saves: '" + saves + "' is not mean_invstd, mean_var or none");
    }
    info_.ops = 0;
    for (const std::string& op :
         attribute_or<std::vector<std::string>>(kernel_, "ops", {"batch_norm"})) {
      const std::optional<op_kind> k = parse_op_kind(op);
      if (!k) throw py::value_error("ops: '" + op + "' is not an op");
      info_.ops |= BNK_OP_BIT(static_cast<int>(to_abi(op_desc{*k}).kind));
    }
    const auto types = attribute_or<std::vector<std::string>>(kernel_, "types", {"float32"});
    info_.data_type_bits = info_.parameter_type_bits = info_.statistic_type_bits =
        dtype_bits(types, "types");
    for (int m = 0; m < 4; ++m) info_.modes[m] = py::hasattr(kernel_, k_mode_methods[m]);
    const std::string why = settle_convention_claim(info_);
    if (!why.empty()) throw py::value_error("convention: " + why);
  }

  [[nodiscard]] const kernel_info& info() const override { return info_; }
  // Isolated calls run in one persistent worker forked at the first call (isolation.hpp), as a
  // plugin's do: the kernel object is not changed by this process while check() runs, and what
  // it keeps from call to call stays in the worker, as it would in a process of its own.
  [[nodiscard]] bool runs_in_worker() const override { return true; }

  bnk_status run_v2(bn_mode mode, const bnk_problem_v2& problem, const bnk_buffers_v2& b,
                    std::string& message) override {
    py::gil_scoped_acquire gil;
    try {
      return call(mode, problem, b, message);
    } catch (py::error_already_set& e) {
      if (e.matches(py::module_::import("bnoracle").attr("Unsupported"))) {
        message = py::str(e.value());
        return BNK_UNSUPPORTED;
      }
      if (e.matches(py::module_::import("bnoracle").attr("Refused"))) {
        message = py::str(e.value());
        return BNK_REFUSED;
      }
      message = std::string("the kernel raised ") + e.what();
      return BNK_FAILED;
    } catch (const std::exception& e) {
      message = e.what();
      return BNK_FAILED;
    }
  }

 private:
  bnk_status call(bn_mode mode, const bnk_problem_v2& pr, const bnk_buffers_v2& b,
                  std::string& message) {
    const std::optional<op_desc> op = from_abi(pr.op);
    const std::optional<format_id> data = dtype_from_abi(pr.types.data);
    const std::optional<format_id> params = dtype_from_abi(pr.types.parameters);
    const std::optional<format_id> stats = dtype_from_abi(pr.types.statistics);
    if (!op || !data || !params || !stats) {
      message = "an op or a data type this bnoracle does not know";
      return BNK_UNSUPPORTED;
    }
    // The memory offset of every logical element.
    bn_problem shape;
    shape.n = pr.shape.dims[0];
    shape.c = pr.shape.dims[1];
    for (int d = 2; d < pr.shape.rank; ++d) shape.spatial.push_back(pr.shape.dims[d]);
    shape.mem_layout = layout::strided;
    shape.strides.assign(pr.shape.strides, pr.shape.strides + pr.shape.rank);
    const geometry geo(shape);
    std::vector<std::int64_t> offsets(static_cast<std::size_t>(geo.elements()));
    geo.for_each_element(
        [&](std::int64_t off, std::int64_t li) { offsets[static_cast<std::size_t>(li)] = off; });
    std::vector<py::ssize_t> dims(pr.shape.dims, pr.shape.dims + pr.shape.rank);

    auto per_element = [&](const void* p, format_id f) -> py::object {
      if (p == nullptr) return py::none();
      py::array_t<float> a(dims);
      float* out = a.mutable_data();
      const tensor_io io{p, nullptr, f};
      for (std::size_t i = 0; i < offsets.size(); ++i) out[i] = io.get(offsets[i]);
      return a;
    };
    auto vector = [](const void* p, std::int64_t n, format_id f) -> py::object {
      if (p == nullptr || n <= 0) return py::none();
      py::array_t<float> a(n);
      const tensor_io io{p, nullptr, f};
      for (std::int64_t i = 0; i < n; ++i) a.mutable_data()[i] = io.get(i);
      return a;
    };
    const bool training = mode == bn_mode::forward_training || mode == bn_mode::backward_training;
    py::dict call;
    call["mode"] = std::string(to_string(mode));
    call["op"] = describe(*op);
    call["types"] = describe(data_types{*data, *params, *stats});
    call["eps"] = pr.eps;
    call["momentum"] = pr.cumulative != 0 ? py::none() : py::cast(pr.momentum);
    call["track_running"] = pr.track_running != 0;
    call["src"] = per_element(b.src, *data);
    call["diff_dst"] = per_element(b.diff_dst, *data);
    call["gamma"] = vector(b.gamma, pr.parameters, *params);
    call["beta"] = vector(b.beta, pr.parameters, *params);
    const bool running_in = !training || pr.track_running != 0;
    call["running_mean"] =
        running_in ? vector(b.running_mean, pr.running_size, *stats) : py::none();
    call["running_var"] = running_in ? vector(b.running_var, pr.running_size, *stats) : py::none();
    call["num_batches_tracked"] =
        b.num_batches_tracked != nullptr ? py::cast(*b.num_batches_tracked) : py::none();
    const bool saved_in = mode == bn_mode::backward_training;
    call["save_mean"] = saved_in ? vector(b.save_mean, pr.statistic_groups, *stats) : py::none();
    call["save_stat"] = saved_in ? vector(b.save_stat, pr.statistic_groups, *stats) : py::none();
    const py::object ns = namespace_(**call);

    const py::object result = kernel_.attr(k_mode_methods[static_cast<int>(mode)])(ns);
    if (!py::isinstance<py::dict>(result)) {
      message = "the kernel returned " +
                std::string(py::str(py::type::of(result).attr("__name__"))) +
                ", not a dict of outputs";
      return BNK_FAILED;
    }
    const py::dict outputs = result;
    // Writes output `name` (n values) through `offs` (or 0..n−1) in format f.
    auto write = [&](const char* name, void* p, std::int64_t n, format_id f,
                     const std::vector<std::int64_t>* offs) -> bool {
      if (p == nullptr || n <= 0) return true;
      if (!outputs.contains(name)) {
        message = std::string("the kernel returned no '") + name + "'";
        return false;
      }
      // Any array or tensor bnoracle takes elsewhere (PyTorch tensors with requires_grad, on a
      // GPU, in bfloat16): bnoracle._as_float32 converts it exactly.
      py::object converted;
      try {
        converted = as_float32_(outputs[name]);
      } catch (const py::error_already_set& e) {
        message = std::string("'") + name + "': not an array bnoracle can read (" + e.what() + ")";
        return false;
      }
      const auto a =
          py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(converted);
      if (!a || a.size() != n) {
        message = std::string("'") + name + "': expected " + std::to_string(n) + " values, got " +
                  (a ? std::to_string(a.size()) : std::string("no array"));
        return false;
      }
      const tensor_io io{nullptr, p, f};
      for (std::int64_t i = 0; i < n; ++i) {
        io.put(offs != nullptr ? (*offs)[static_cast<std::size_t>(i)] : i, a.data()[i]);
      }
      return true;
    };
    const auto E = static_cast<std::int64_t>(offsets.size());
    bool ok = write("dst", b.dst, E, *data, &offsets) &&
              write("diff_src", b.diff_src, E, *data, &offsets) &&
              write("diff_gamma", b.diff_gamma, pr.parameters, *params, nullptr) &&
              write("diff_beta", b.diff_beta, pr.parameters, *params, nullptr);
    if (ok && mode == bn_mode::forward_training) {
      ok = write("save_mean", b.save_mean, pr.statistic_groups, *stats, nullptr) &&
           write("save_stat", b.save_stat, pr.statistic_groups, *stats, nullptr);
      if (ok && pr.track_running != 0) {
        ok = write("running_mean", b.running_mean, pr.running_size, *stats, nullptr) &&
             write("running_var", b.running_var, pr.running_size, *stats, nullptr);
        if (ok && b.num_batches_tracked != nullptr) {
          if (!outputs.contains("num_batches_tracked")) {
            message = "the kernel returned no 'num_batches_tracked'";
            return BNK_FAILED;
          }
          *b.num_batches_tracked = outputs["num_batches_tracked"].cast<std::int64_t>();
        }
      }
    }
    return ok ? BNK_OK : BNK_FAILED;
  }

  py::object kernel_;
  // Looked up once: every call builds a namespace and converts each output.
  py::object namespace_;   // types.SimpleNamespace
  py::object as_float32_;  // bnoracle._as_float32
  kernel_info info_;
};

// A finished run, rendered in one of bnoracle check's report formats on demand.
struct run_reports {
  std::shared_ptr<const run_summary> summary;
  [[nodiscard]] std::string render(const std::string& name) const {
    const std::optional<report_format> format =
        name == "text"    ? std::optional{report_format::text}
        : name == "json"  ? std::optional{report_format::json}
        : name == "junit" ? std::optional{report_format::junit}
        : name == "html"  ? std::optional{report_format::html}
                          : std::nullopt;
    if (!format) throw py::value_error("report: '" + name + "' is not text, json, junit or html");
    std::ostringstream os;
    write_report(os, *summary, *format, false);
    return os.str();
  }
};

py::dict check(const py::object& kernel, const std::string& level, std::uint64_t seed,
               int property_cases, bool catalog, bool properties, const std::string& filter,
               const std::optional<std::string>& op, const std::optional<std::string>& types,
               bool isolate, double timeout, int jobs) {
  python_kernel k(kernel);
  run_options o;
  o.level = level_named(level);
  o.seed = seed;
  o.property_cases = property_cases;
  o.catalog = catalog;
  o.properties = properties;
  o.filter = filter;
  o.isolate = isolate;
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout * 1000));
  o.kernel_path = "--python";
  // 0: every core (at most 8), as bnoracle check --jobs.
  o.jobs =
      jobs > 0 ? jobs : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1U, 8U));
  if (op) {
    const std::optional<op_kind> kind = parse_op_kind(*op);
    if (!kind) throw py::value_error("op: '" + *op + "' is not an op");
    o.op = kind;
  }
  if (types) {
    o.types = parse_data_types(*types);
    if (!o.types) throw py::value_error("types: '" + *types + "' is not a configuration");
  }
  o.profiles = true;
  auto summary =
      std::make_shared<const run_summary>(run_conformance(k, default_catalog(seed), o, nullptr));
  const run_summary& s = *summary;
  py::dict out;
  out["verdict"] = std::string(to_string(s.verdict()));
  out["exit_code"] = s.exit_code();
  out["passed"] = s.passed;
  out["failed"] = s.failed;
  out["skipped"] = s.skipped;
  out["faults"] = s.faults;
  // The reports are rendered when Python first asks for one (the HTML page of a large run is
  // megabytes of plot data): the run's summary travels with the result.
  out["summary"] = run_reports{summary};
  std::vector<std::string> lines = diagnosis_lines(diagnose(s));
  out["diagnosis"] = lines;
  return out;
}

// The names `check` would run for this op (all ops when none): catalog cases and, as
// "property/NAME", properties — what `bnoracle check --list` prints (a kernel's declarations
// narrow them further when it runs).
std::vector<std::string> list_items(const std::optional<std::string>& op, bool catalog,
                                    bool properties) {
  std::optional<op_kind> kind;
  if (op) {
    kind = parse_op_kind(*op);
    if (!kind) throw py::value_error("op: '" + *op + "' is not an op");
  }
  std::vector<std::string> names;
  if (catalog) {
    for (const case_spec& c : default_catalog(1)) {
      if (!kind || c.problem.op.kind == *kind) names.push_back(c.name);
    }
  }
  if (properties) {
    for (const property_info& p : property_list()) {
      if (property_applies(p, nullptr, kind)) names.push_back("property/" + std::string(p.name));
    }
  }
  return names;
}

}  // namespace

void bind_check(py::module_& m) {
  py::class_<run_reports>(m, "RunReports").def("render", &run_reports::render, py::arg("format"));
  m.def("list_items", &list_items, py::arg("op"), py::arg("catalog"), py::arg("properties"));
  m.def("check", &check, py::arg("kernel"), py::arg("level"), py::arg("seed"),
        py::arg("property_cases"), py::arg("catalog"), py::arg("properties"), py::arg("filter"),
        py::arg("op"), py::arg("types"), py::arg("isolate"), py::arg("timeout"), py::arg("jobs"));
}

}  // namespace bnoracle
