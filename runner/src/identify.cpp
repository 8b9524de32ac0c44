#include "bnoracle/identify.hpp"

#include "bnoracle/convention.hpp"
#include "bnoracle/isolation.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

namespace bnoracle {

namespace {

struct probe_result {
  bool ran = false;  // the call returned (no fault)
  int status = BNK_FAILED;
  float mean = 0, var = 0;
  std::string text;
};

// One forward-training call on an NC problem with C = 1 and the given values.
probe_result probe(bn_kernel& kernel, const run_options& opt, const std::vector<float>& x,
                   double momentum, bool cumulative, std::int64_t nbt, float old_mean,
                   float old_var) {
  bn_problem p;
  p.n = static_cast<std::int64_t>(x.size());
  p.c = 1;
  p.mem_layout = layout::nc;
  p.eps = 1e-5;
  p.momentum = cumulative ? std::nullopt : std::optional<double>(momentum);
  p.convention = kernel.info().convention;
  const geometry geo(p);
  const std::size_t n = x.size();
  std::vector<buffer_spec> specs{{"src", buffer_role::input, element_type::f32, n},
                                 {"gamma", buffer_role::input, element_type::f32, 1},
                                 {"beta", buffer_role::input, element_type::f32, 1},
                                 {"running_mean", buffer_role::in_out, element_type::f32, 1},
                                 {"running_var", buffer_role::in_out, element_type::f32, 1},
                                 {"num_batches_tracked", buffer_role::in_out, element_type::i64, 1},
                                 {"dst", buffer_role::output, element_type::f32, n}};
  if (kernel.info().saves != BNK_SAVES_NONE) {
    specs.push_back({"save_mean", buffer_role::output, element_type::f32, 1});
    specs.push_back({"save_stat", buffer_role::output, element_type::f32, 1});
  }
  guarded_arena arena(specs);
  std::copy(x.begin(), x.end(), arena.f32("src"));
  arena.f32("gamma")[0] = 1.0F;
  arena.f32("beta")[0] = 0.0F;
  arena.f32("running_mean")[0] = old_mean;
  arena.f32("running_var")[0] = old_var;
  arena.i64("num_batches_tracked")[0] = nbt;
  const bnk_problem_v2 problem = to_abi_v2(p, geo, true, true);
  const bnk_buffers_v2 buffers = abi_buffers_v2(arena);
  const run_result rr =
      opt.isolate
          ? run_kernel_isolated(kernel, bn_mode::forward_training, problem, buffers, arena,
                                opt.timeout)
          : run_inline(kernel_call(kernel, bn_mode::forward_training, problem, buffers), arena);
  probe_result r;
  r.ran = rr.ok();
  r.text = rr.ok() ? rr.message : rr.reason;
  r.status = rr.status;
  r.mean = arena.f32("running_mean")[0];
  r.var = arena.f32("running_var")[0];
  return r;
}

bool near(float got, double want) {
  return std::fabs(static_cast<double>(got) - want) <= 1e-5 * std::max(1.0, std::fabs(want));
}

}  // namespace

identify_result identify(bn_kernel& kernel, const run_options& opt) {
  identify_result out;
  const kernel_info& info = kernel.info();
  if (!info.supports(bn_mode::forward_training) || !info.updates_running) {
    out.weighs = out.estimator = out.cumulative = out.single_value = out.empty_batch = "unknown";
    out.notes.push_back("the kernel does not update running statistics in forward training");
    out.fields = "none";
    return out;
  }
  // x = [0, 0, 2, 2]: mean 1, biased variance 1, unbiased 4/3. From (0, 0) with momentum 0.25:
  // new-weighted: mean 0.25, var 0.25·v; old-weighted: mean 0.75, var 0.75·v.
  const probe_result a = probe(kernel, opt, {0, 0, 2, 2}, 0.25, false, 0, 0.0F, 0.0F);
  if (!a.ran || a.status != BNK_OK) {
    out.fault = !a.ran;
    out.weighs = out.estimator = "unknown";
    out.notes.push_back("basic probe failed: " + a.text);
  } else {
    double f = 0;
    if (near(a.mean, 0.25)) {
      out.weighs = "new";
      f = 0.25;
    } else if (near(a.mean, 0.75)) {
      out.weighs = "old";
      f = 0.75;
    } else {
      out.weighs = "unknown";
    }
    char line[160];
    std::snprintf(line, sizeof line,
                  "x=[0,0,2,2], momentum 0.25, from (0,0): running_mean %.9g running_var %.9g",
                  static_cast<double>(a.mean), static_cast<double>(a.var));
    out.notes.emplace_back(line);
    if (f > 0 && near(a.var, f * 1.0)) {
      out.estimator = "biased";
    } else if (f > 0 && near(a.var, f * 4.0 / 3.0)) {
      out.estimator = "unbiased";
    } else {
      out.estimator = "unknown";
    }
  }
  // Cumulative: num_batches_tracked 1 before the step, so the factor is 1/2: mean 0.5 from 0.
  if (!info.supports_cumulative) {
    out.cumulative = "unsupported";
  } else {
    const probe_result c = probe(kernel, opt, {0, 0, 2, 2}, 0.0, true, 1, 0.0F, 0.0F);
    out.fault = out.fault || !c.ran;
    out.cumulative = c.ran && c.status == BNK_OK && near(c.mean, 0.5) ? "supported" : "wrong";
    char line[160];
    std::snprintf(line, sizeof line, "momentum=None after 1 batch: running_mean %.9g (want 0.5)",
                  static_cast<double>(c.mean));
    out.notes.emplace_back(line);
  }
  // L = 1: biased variance 0. From (0, 4) with momentum 0.25.
  {
    const probe_result s = probe(kernel, opt, {7}, 0.25, false, 0, 0.0F, 4.0F);
    out.fault = out.fault || !s.ran;
    const double keep = out.weighs == "old" ? 0.25 : 0.75;
    if (!s.ran) {
      out.single_value = "crash";
    } else if (s.status == BNK_REFUSED) {
      out.single_value = "refuse";
    } else if (s.status != BNK_OK) {
      out.single_value = "error";
    } else if (std::isnan(s.var)) {
      out.single_value = "undefined";
    } else if (near(s.var, keep * 4.0)) {
      out.single_value = out.estimator == "biased" ? "not_applicable" : "no_correction";
    } else {
      out.single_value = "other";
    }
  }
  // L = 0: N = 0.
  {
    const probe_result e = probe(kernel, opt, {}, 0.25, false, 0, 3.0F, 4.0F);
    out.fault = out.fault || !e.ran;
    if (!e.ran) {
      out.empty_batch = "crash";
    } else if (e.status == BNK_REFUSED) {
      out.empty_batch = "refuse";
    } else if (e.status != BNK_OK) {
      out.empty_batch = "error";
    } else if (std::isnan(e.mean) || std::isnan(e.var)) {
      out.empty_batch = "undefined";
    } else if (e.mean == 3.0F && e.var == 4.0F) {
      out.empty_batch = "unchanged";
    } else {
      out.empty_batch = "other";
    }
  }
  for (const auto& c : all_conventions()) {
    const bool w = out.weighs == to_string(c.weighs);
    const bool e = out.estimator == to_string(c.running_var);
    const bool cu = (out.cumulative == "supported") == c.cumulative;
    const bool s1 = out.single_value == to_string(c.single_value);
    if (w && e && cu && s1) out.matches.emplace_back(c.name);
  }
  // Every observation in the field syntax, when every probe gave one a record can state. L = 0
  // "unchanged", "undefined" and "refuse" are records' values; anything else stays unstated
  // (unspecified: any running statistics accepted).
  if (out.cumulative != "wrong") {
    std::string f = "momentum=" + out.weighs + ",running_var=" + out.estimator +
                    ",cumulative=" + (out.cumulative == "supported" ? "yes" : "no") +
                    ",l1=" + (out.single_value == "not_applicable" ? "compute" : out.single_value);
    if (out.empty_batch == "unchanged" || out.empty_batch == "undefined" ||
        out.empty_batch == "refuse") {
      f += ",l0=" + out.empty_batch;
    }
    if (const convention* c = find_convention(f)) out.fields = std::string(c->name);
  }
  return out;
}

}  // namespace bnoracle
