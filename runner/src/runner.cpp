#include "bnoracle/runner.hpp"
#include "bnoracle/verify.hpp"

#include "bnoracle/invoke.hpp"
#include "bnoracle/isolation.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/properties.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

namespace bnoracle {

std::string_view to_string(verdict v) {
  switch (v) {
    case verdict::pass:
      return "PASS";
    case verdict::fail:
      return "FAIL";
    case verdict::skip:
      return "SKIP";
    case verdict::mistrusted:
      return "MISTRUSTED";
    case verdict::fault:
      return "FAULT";
  }
  return "?";
}

std::int64_t count_failing(const std::vector<case_result>& results) {
  return static_cast<std::int64_t>(
      std::count_if(results.begin(), results.end(), [](const case_result& r) {
        return r.result == verdict::fail || r.result == verdict::fault;
      }));
}

std::string_view to_string(run_verdict v) {
  switch (v) {
    case run_verdict::conformant:
      return "CONFORMANT";
    case run_verdict::not_conformant:
      return "NOT CONFORMANT";
    case run_verdict::kernel_fault:
      return "KERNEL FAULT";
    case run_verdict::nothing_judged:
      return "NOTHING JUDGED";
  }
  return "?";
}

run_verdict run_summary::verdict() const {
  if (faults > 0) return run_verdict::kernel_fault;
  if (failed > 0) return run_verdict::not_conformant;
  if (!unjudged.empty()) return run_verdict::nothing_judged;
  return run_verdict::conformant;
}

int run_summary::exit_code() const {
  switch (verdict()) {
    case run_verdict::conformant:
      return k_exit_conformant;
    case run_verdict::not_conformant:
      return k_exit_not_conformant;
    case run_verdict::kernel_fault:
      return k_exit_kernel_fault;
    case run_verdict::nothing_judged:
      return k_exit_nothing_judged;
  }
  return k_exit_not_conformant;
}

namespace {

// The kernel option of a reproduction command: kernel_path is a plugin's path, or a whole option
// such as --exec "CMD" (it then starts with --).
std::string kernel_option(const std::string& kernel_path) {
  return kernel_path.starts_with("--") ? kernel_path : "--kernel " + kernel_path;
}

// Whether a run judges data types other than float32 (then only the catalog runs).
bool narrow_types(const run_options& o) {
  return o.types && !o.types->all_float32();
}

// The --types argument naming `t`: a configuration's name where one fits.
std::string types_option(const data_types& t) {
  for (const named_types& n : named_data_types()) {
    if (n.types == t) return std::string(n.name);
  }
  return describe(t);
}

// The reproduction command of one catalog case: every option that changes its result.
std::string check_repro(const run_options& o, const std::string& case_name) {
  // --exec runs without fork isolation by design: its option already says so.
  const bool exec = o.kernel_path.starts_with("--exec");
  return "bnoracle check " + kernel_option(o.kernel_path) + " --filter '" + case_name +
         "' --seed " + std::to_string(o.seed) + " --level " + std::string(to_string(o.level)) +
         (o.convention.empty() ? "" : " --convention " + o.convention) +
         (narrow_types(o) ? " --types " + types_option(*o.types) : std::string()) +
         repro_options(call_options{o.isolate || exec, o.timeout});
}

struct kernel_state {
  std::vector<float> running_mean, running_var;
  std::int64_t nbt = 0;
  std::vector<float> save_mean, save_stat;  // from step 0's forward training
  bool have_saved = false;
};

class case_runner {
 public:
  case_runner(bn_kernel& k, const run_options& o) : kernel_(k), opt_(o) {}

  void run(const case_spec& spec, std::vector<case_result>& out) {
    bn_problem p = spec.problem;
    p.convention = opt_.convention.empty() ? kernel_.info().convention : opt_.convention;
    const kernel_info& info = kernel_.info();
    const geometry geo(p);
    auto base = [&](bn_mode m, int step) {
      case_result r;
      r.case_name = spec.name;
      r.mode = m;
      r.step = step;
      r.problem = describe(p);
      r.tier = std::string(to_string(spec.tier));
      r.repro = check_repro(opt_, spec.name);
      return r;
    };
    const bool layout_ok = info.supports(p.mem_layout);
    // momentum = None concerns only the running statistics: irrelevant to a kernel keeping none.
    const bool momentum_ok =
        p.momentum.has_value() || info.supports_cumulative || !info.updates_running;
    kernel_state state;
    case_data first = make_case_data(spec, 0);
    state.running_mean = first.running_mean;
    state.running_var = first.running_var;
    state.nbt = first.num_batches_tracked;
    for (const bn_mode m : {bn_mode::forward_training, bn_mode::backward_training,
                            bn_mode::forward_inference, bn_mode::backward_inference}) {
      if (!has_mode(p.op, m)) continue;  // an op without running statistics has no inference
      const int steps = m == bn_mode::forward_training ? spec.steps : 1;
      for (int step = 0; step < steps; ++step) {
        case_result r = base(m, step);
        const auto t0 = std::chrono::steady_clock::now();
        if (!info.supports(m)) {
          r.result = verdict::skip;
          r.reason = "the kernel does not provide this mode";
        } else if (!info.supports(p.op.kind)) {
          r.result = verdict::skip;
          r.reason = "the kernel does not support " + std::string(to_string(p.op.kind));
        } else if (!info.supports(p.types)) {
          r.result = verdict::skip;
          r.reason = "the kernel does not support the data types " + describe(p.types);
        } else if (!layout_ok) {
          r.result = verdict::skip;
          r.reason = "the kernel does not support layout " + std::string(to_string(p.mem_layout));
        } else if (!momentum_ok && m == bn_mode::forward_training) {
          r.result = verdict::skip;
          r.reason = "the kernel does not support cumulative averaging (momentum=None)";
        } else {
          const case_data d = step == 0 ? first : make_case_data(spec, step);
          run_mode(spec, p, geo, m, step, d, state, r);
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out.push_back(std::move(r));
      }
    }
  }

 private:
  void run_mode(const case_spec& spec, const bn_problem& p, const geometry& geo, bn_mode m,
                int step, const case_data& d, kernel_state& state, case_result& r) {
    const kernel_info& info = kernel_.info();
    const bool training = m == bn_mode::forward_training || m == bn_mode::backward_training;
    const bool track = m == bn_mode::forward_training && info.updates_running &&
                       reduction_map(p.op, geo).running_size() > 0;
    const bool affine = spec.affine;

    // Inputs of the reference. Training steps start from the kernel's own running state, so
    // that each step is judged on its own; eval uses it too when it is a valid state.
    std::vector<float> run_mean = d.running_mean;
    std::vector<float> run_var = d.running_var;
    if (info.updates_running && valid_running_state(state.running_mean, state.running_var)) {
      run_mean = state.running_mean;
      run_var = state.running_var;
    }
    bn_inputs in;
    in.src = d.src.data();
    in.diff_dst = d.diff_dst.data();
    if (affine) {
      in.gamma = d.gamma;
      in.beta = d.beta;
    }
    if (!training || track) {
      in.running_mean = run_mean;
      in.running_var = run_var;
    }
    in.num_batches_tracked = state.nbt;
    const reference ref(p, m, in);
    const error_model model(ref, in, spec.tier);

    call_request q;
    q.mode = m;
    q.problem = p;
    q.affine = affine;
    q.track_running = track;
    q.src = to_logical(geo, d.src.data());
    const bool backward = m == bn_mode::backward_training || m == bn_mode::backward_inference;
    if (backward) q.diff_dst = to_logical(geo, d.diff_dst.data());
    if (affine) {
      q.gamma = d.gamma;
      q.beta = d.beta;
    }
    if (!training || track) {
      q.running_mean = run_mean;
      q.running_var = run_var;
      q.num_batches_tracked = state.nbt;
    }
    const bool saves = info.saves != BNK_SAVES_NONE;
    if (m == bn_mode::backward_training && saves && state.have_saved) {
      q.save_mean = state.save_mean;
      q.save_stat = state.save_stat;
    }
    const call_result cr = invoke(kernel_, q, {opt_.isolate, opt_.timeout});
    if (!cr.run.ok() || !cr.padding_written.empty()) {
      r.result = verdict::fault;
      r.reason = cr.describe();
      if (opt_.diagnose) r.explained_by = explain_fault(m, cr.run.reason);
      return;
    }
    const bnk_status status = cr.status;
    const std::string& message = cr.message;
    if (status == BNK_UNSUPPORTED) {
      r.result = verdict::skip;
      r.reason = "the kernel reported this problem unsupported" +
                 (message.empty() ? std::string() : ": " + message);
      return;
    }
    if (!ref.refusal().empty()) {
      if (status == BNK_REFUSED) {
        r.result = verdict::pass;
        r.best = accuracy_level::strict;
        r.reason =
            "refused, as the " + p.convention + " convention requires (" + ref.refusal() + ")";
      } else {
        r.result = verdict::fail;
        r.reason =
            "accepted a problem the " + p.convention + " convention rejects: " + ref.refusal();
        r.explained_by.push_back(
            {"degenerate_batch",
             "accepted a degenerate batch the convention refuses (" + ref.refusal() + ")", false});
      }
      return;
    }
    if (status != BNK_OK) {
      r.result = verdict::fail;
      r.reason =
          std::string(status == BNK_REFUSED ? "refused a valid problem" : "reported failure") +
          (message.empty() ? std::string() : ": " + message);
      return;
    }

    // Judge every output.
    auto from = [](const std::vector<float>& v) {
      return [&v](std::int64_t i) { return v[static_cast<std::size_t>(i)]; };
    };
    std::vector<returned_output> returned;  // what the diagnosis compares its models with
    auto judge = [&](const std::string& shown, output_id id, const std::vector<float>& got) {
      returned.push_back({shown, id, &got});
      if (!opt_.profiles) {
        r.outputs.push_back(
            judge_output(shown, id, id, ref, model, opt_.level, opt_.mistrust_fraction, from(got)));
        return;
      }
      // Per-element outputs are also drawn per statistic group.
      output_profile profile;
      std::function<std::int64_t(std::int64_t)> group_of;
      if (per_element(id)) {
        group_of = [&ref](std::int64_t i) { return ref.map().locate(i).group; };
      }
      const profile_observer observe(profile, static_cast<std::int64_t>(got.size()),
                                     ref.map().groups(), std::move(group_of));
      output_result o = judge_output(shown, id, id, ref, model, opt_.level, opt_.mistrust_fraction,
                                     from(got), observe);
      o.profile = std::move(profile);
      r.outputs.push_back(std::move(o));
    };
    if (m == bn_mode::forward_training || m == bn_mode::forward_inference) {
      judge("dst", output_id::dst, cr.dst);
    } else {
      judge("diff_src", output_id::diff_src, cr.diff_src);
      if (affine) {
        judge("diff_gamma", output_id::diff_gamma, cr.diff_gamma);
        judge("diff_beta", output_id::diff_beta, cr.diff_beta);
      }
    }
    if (m == bn_mode::forward_training && saves) {
      if (p.op.centred) judge("save_mean", output_id::mean, cr.save_mean);
      const bool invstd = info.saves == BNK_SAVES_MEAN_INVSTD;
      judge(invstd ? "save_stat(invstd)" : "save_stat(var)",
            invstd ? output_id::invstd : output_id::var, cr.save_stat);
      if (step == 0) {
        state.save_mean = cr.save_mean;
        state.save_stat = cr.save_stat;
        state.have_saved = true;
      }
    }
    if (track) {
      judge("running_mean", output_id::running_mean, cr.running_mean);
      judge("running_var", output_id::running_var, cr.running_var);
      const std::int64_t nbt = cr.num_batches_tracked;
      if (nbt != ref.num_batches_tracked()) {
        output_result o;
        o.name = "num_batches_tracked";
        o.count = 1;
        for (bool& pl : o.passed) pl = false;
        o.class_failure = "num_batches_tracked: expected " +
                          std::to_string(ref.num_batches_tracked()) + ", got " +
                          std::to_string(nbt);
        r.outputs.push_back(o);
      }
      state.running_mean = cr.running_mean;
      state.running_var = cr.running_var;
      state.nbt = nbt;
    }
    conclude(r, opt_.level);
    if (r.result == verdict::fail && opt_.diagnose) {
      r.explained_by = explain_call(ref, model, in, affine, r.outputs, returned,
                                    cr.num_batches_tracked, opt_.level);
    }
  }

  bn_kernel& kernel_;
  const run_options& opt_;
};

}  // namespace

void conclude(case_result& r, accuracy_level gate) {
  r.best.reset();
  if (r.outputs.empty()) {
    // Nothing compared is no evidence: a skip, which a run's verdict does not count as judged.
    r.result = verdict::skip;
    r.reason = "nothing to judge: no output was compared";
    return;
  }
  for (std::size_t l = 3; l-- > 0;) {
    if (std::all_of(r.outputs.begin(), r.outputs.end(),
                    [l](const output_result& o) { return o.passed[l]; })) {
      r.best = k_accuracy_levels[l];
    }
  }
  const auto lvl = static_cast<std::size_t>(gate);
  const auto failing = std::find_if(r.outputs.begin(), r.outputs.end(),
                                    [lvl](const output_result& o) { return !o.passed[lvl]; });
  if (failing != r.outputs.end()) {
    r.result = verdict::fail;
    if (!failing->class_failure.empty()) {
      r.reason = failing->class_failure;
    } else {
      std::ostringstream qualifier;
      qualifier << " at " << to_string(gate) << ", ratio " << failing->worst_ratio;
      r.reason = worst_element_text(*failing, qualifier.str());
    }
  } else if (std::any_of(r.outputs.begin(), r.outputs.end(),
                         [](const output_result& o) { return o.mistrusted; })) {
    r.result = verdict::mistrusted;
    r.reason = "too little signal: most elements are smaller than their bound";
  } else {
    r.result = verdict::pass;
    r.evidence = std::any_of(r.outputs.begin(), r.outputs.end(),
                             [](const output_result& o) { return o.judged > 0; });
  }
}

namespace {

// The operations a kernel declares: its modes, then the fold and the SyncBN merge.
std::vector<std::string> declared_operations(const kernel_info& k) {
  std::vector<std::string> ops;
  for (const bn_mode m : {bn_mode::forward_training, bn_mode::forward_inference,
                          bn_mode::backward_training, bn_mode::backward_inference}) {
    if (k.supports(m)) ops.emplace_back(to_string(m));
  }
  if (k.fold) ops.emplace_back("fold");
  if (k.syncbn_merge) ops.emplace_back("syncbn_merge");
  return ops;
}

// The operation a catalog or fixture result exercises ("" for a property).
std::string operation_of(const case_result& r) {
  if (r.op == "property") return "";
  return r.op.empty() ? std::string(to_string(r.mode)) : r.op;
}

std::vector<std::string> missing_evidence(const run_summary& s) {
  std::vector<std::string> out;
  const auto judged = [](const case_result& r) { return r.result == verdict::pass && r.evidence; };
  if (std::none_of(s.results.begin(), s.results.end(), judged)) {
    out.push_back(s.results.empty()
                      ? "no case was run (check the filter)"
                      : "none of the " + std::to_string(s.results.size()) +
                            " results compared a value and passed (" + std::to_string(s.skipped) +
                            " skipped, " + std::to_string(s.mistrusted) + " mistrusted, " +
                            std::to_string(s.passed) + " passed without a compared value)");
    return out;
  }
  for (const std::string& op : declared_operations(s.kernel)) {
    std::int64_t rows = 0;
    std::int64_t evidence = 0;
    for (const auto& r : s.results) {
      if (operation_of(r) != op) continue;
      ++rows;
      if (judged(r)) ++evidence;
    }
    if (rows > 0 && evidence == 0) {
      out.push_back(op + ", which the kernel declares: none of its " + std::to_string(rows) +
                    " results compared a value and passed");
    }
  }
  return out;
}

}  // namespace

void tally(run_summary& s) {
  s.passed = s.failed = s.skipped = s.mistrusted = s.faults = 0;
  std::optional<accuracy_level> best = accuracy_level::strict;
  bool any_judged = false;
  for (const auto& r : s.results) {
    switch (r.result) {
      case verdict::pass:
        ++s.passed;
        break;
      case verdict::fail:
        ++s.failed;
        break;
      case verdict::skip:
        ++s.skipped;
        break;
      case verdict::mistrusted:
        ++s.mistrusted;
        break;
      case verdict::fault:
        ++s.faults;
        break;
    }
    if (r.result == verdict::skip || r.op == "property") continue;
    any_judged = true;
    if (!r.best) {
      best = std::nullopt;
    } else if (best && static_cast<int>(*r.best) > static_cast<int>(*best)) {
      best = r.best;
    }
  }
  s.best = any_judged ? best : std::nullopt;
  s.unjudged = missing_evidence(s);
}

namespace {

// Calls f with the kernel as the options' convention sees it.
template <class F>
run_summary as_judged(bn_kernel& kernel, const run_options& options, F&& f) {
  const std::string& name =
      options.convention.empty() ? kernel.info().convention : options.convention;
  const convention* c = find_convention(name);
  if (c != nullptr && !c->running_stats &&
      (kernel.info().updates_running || kernel.info().supports_cumulative)) {
    // Judged as a kernel keeping no running statistics: their buffers are never given.
    kernel_info info = kernel.info();
    info.updates_running = false;
    info.supports_cumulative = false;
    return f(*with_info(kernel, std::move(info)));
  }
  return f(kernel);
}

run_summary run_catalog_as_judged(bn_kernel& kernel, const std::vector<case_spec>& cases,
                                  const run_options& options, const progress_fn& progress) {
  run_summary s;
  s.kernel = kernel.info();
  s.options = options;
  // The catalog in the requested data types.
  std::vector<case_spec> typed;
  if (options.types) {
    typed = cases;
    for (case_spec& c : typed) c.problem.types = *options.types;
  }
  std::vector<const case_spec*> selected;
  std::size_t index = 0;  // of the cases that pass the filter: what --shard divides
  for (const auto& c : options.types ? typed : cases) {
    const bool op_ok = !options.op || c.problem.op.kind == *options.op;
    if (op_ok && name_matches(c.name, options.filter) && in_shard(options, index++)) {
      selected.push_back(&c);
    }
  }
  // The fold and SyncBN-merge cases, as fixtures made for this seed and convention claim: float32
  // operations, run with a float32 catalog.
  std::vector<fixture> operations;
  const bool batch_norm = !options.op || *options.op == op_kind::batch_norm;
  if (options.operations && batch_norm && !narrow_types(options)) {
    const std::string& claim =
        options.convention.empty() ? s.kernel.convention : options.convention;
    for (const fixture_file& file : make_operation_cases(options.seed, claim)) {
      fixture f = parse_fixture(file.text, file.relative_path);
      if (!name_matches(f.catalog_case, options.filter) || !in_shard(options, index++)) continue;
      f.id = file.relative_path.substr(0, file.relative_path.size() - 5);  // without ".json"
      operations.push_back(std::move(f));
    }
  }
  const std::size_t total = selected.size() + operations.size();
  case_runner runner(kernel, options);
  const auto failing = [&s] { return count_failing(s.results); };
  for (std::size_t i = 0; i < selected.size(); ++i) {
    if (progress) progress(i, total, selected[i]->name, failing());
    runner.run(*selected[i], s.results);
  }
  for (std::size_t i = 0; i < operations.size(); ++i) {
    const fixture& f = operations[i];
    if (progress) progress(selected.size() + i, total, f.catalog_case, failing());
    const auto start = std::chrono::steady_clock::now();
    const results got = kernel_results(kernel, f, options);
    case_result r = judge_fixture(f, got, options);
    if (r.result == verdict::fail && options.diagnose) {
      r.explained_by = explain_operation(f, got, r.outputs, options.level);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.repro = check_repro(options, f.catalog_case);
    s.results.push_back(std::move(r));
  }
  if (progress) progress(total, total, "", failing());
  tally(s);
  return s;
}

// ---- properties in helper processes ----------------------------------------------------------

// A process forked to check some of the properties while this one runs the catalog and the
// others. RapidCheck keeps a property's context in static state, so properties cannot run in
// threads of one process; a forked process has its own (and its own isolation slab: a slab
// belongs to the process that made it). Its results come back as JSON in a temporary file.
struct property_helper {
  pid_t pid = -1;
  std::FILE* out = nullptr;
  std::vector<std::size_t> indices;  // of the selected properties, in order
};

nlohmann::json property_to_json(const property_result& p) {
  return {{"name", p.name},      {"summary", p.summary}, {"verdict", static_cast<int>(p.verdict)},
          {"cases", p.cases},    {"reason", p.reason},   {"counterexample", p.counterexample},
          {"repro", p.repro},    {"fault", p.fault},     {"rapidcheck_seed", p.rapidcheck_seed},
          {"seconds", p.seconds}};
}

property_result property_from_json(const nlohmann::json& j) {
  property_result p;
  p.name = j.at("name").get<std::string>();
  p.summary = j.at("summary").get<std::string>();
  const int v = j.at("verdict").get<int>();
  if (v < 0 || v > static_cast<int>(property_verdict::skip)) {
    throw std::runtime_error("a property verdict out of range");
  }
  p.verdict = static_cast<property_verdict>(v);
  p.cases = j.at("cases").get<int>();
  p.reason = j.at("reason").get<std::string>();
  p.counterexample = j.at("counterexample").get<std::string>();
  p.repro = j.at("repro").get<std::string>();
  p.fault = j.at("fault").get<bool>();
  p.rapidcheck_seed = j.at("rapidcheck_seed").get<std::uint64_t>();
  p.seconds = j.at("seconds").get<double>();
  return p;
}

// Starts options.jobs − 1 helpers, helper h checking selected properties h + 1, h + 1 + J, ...
// (this process keeps 0, J, 2J, ...). A helper that cannot be started leaves its properties to
// this process.
std::vector<property_helper> start_property_helpers(bn_kernel& kernel, const run_options& options,
                                                    const std::vector<std::string_view>& names) {
  std::vector<property_helper> helpers;
  const auto jobs = static_cast<std::size_t>(std::max(options.jobs, 1));
  for (std::size_t h = 1; h < jobs && h < names.size(); ++h) {
    property_helper helper;
    for (std::size_t i = h; i < names.size(); i += jobs) helper.indices.push_back(i);
    helper.out = std::tmpfile();
    if (helper.out == nullptr) break;
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      std::fclose(helper.out);
      break;
    }
    if (pid == 0) {
      // Fault injection for the test of a helper that dies (tests/test_runner.cpp).
      if (const char* e = std::getenv("BNORACLE_TEST_PROPERTY_HELPER_DIES"); e != nullptr && *e) {
        std::abort();
      }
      int rc = 0;
      try {
        nlohmann::json results = nlohmann::json::array();
        for (const std::size_t i : helper.indices) {
          results.push_back(property_to_json(check_property(names[i], kernel, options)));
        }
        const std::string text = results.dump();
        if (std::fwrite(text.data(), 1, text.size(), helper.out) != text.size()) rc = 4;
        if (std::fflush(helper.out) != 0) rc = 4;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bnoracle: property helper: %s\n", e.what());
        rc = 4;
      }
      std::fflush(nullptr);
      _exit(rc);
    }
    register_owned_child(pid);
    helper.pid = pid;
    helpers.push_back(std::move(helper));
  }
  return helpers;
}

// Waits for a helper and puts its results at their indices; a helper that died or answered
// nothing readable makes each of its properties a fault that says so — never a pass.
void finish_property_helper(property_helper& helper, const std::vector<std::string_view>& names,
                            std::vector<std::optional<property_result>>& results) {
  int status = 0;
  pid_t got = -1;
  do {
    got = waitpid(helper.pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  unregister_owned_child(helper.pid);
  std::string trouble;
  if (got != helper.pid) {
    trouble = "could not be waited for";
  } else if (WIFSIGNALED(status)) {
    trouble = "was killed by signal " + std::to_string(WTERMSIG(status));
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    trouble = "exited with code " + std::to_string(WEXITSTATUS(status));
  } else {
    std::rewind(helper.out);
    std::string text;
    std::array<char, 65536> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), helper.out)) > 0) text.append(buf.data(), n);
    try {
      const nlohmann::json j = nlohmann::json::parse(text);
      if (!j.is_array() || j.size() != helper.indices.size()) {
        throw std::runtime_error("not one result per property");
      }
      for (std::size_t k = 0; k < helper.indices.size(); ++k) {
        property_result p = property_from_json(j[k]);
        if (p.name != names[helper.indices[k]]) throw std::runtime_error("results out of order");
        results[helper.indices[k]] = std::move(p);
      }
    } catch (const std::exception& e) {
      trouble = std::string("answered nothing readable (") + e.what() + ")";
    }
  }
  std::fclose(helper.out);
  helper.out = nullptr;
  if (trouble.empty()) return;
  for (const std::size_t i : helper.indices) {
    property_result p;
    p.name = std::string(names[i]);
    p.verdict = property_verdict::fail;
    p.fault = true;
    p.reason = "the helper process checking this property " + trouble +
               " (--jobs 1 checks it in bnoracle's own process)";
    results[i] = std::move(p);
  }
}

run_summary run_conformance_as_judged(bn_kernel& kernel, const std::vector<case_spec>& cases,
                                      const run_options& options, const progress_fn& progress) {
  // Helpers start first, so that they check their properties while this process runs the
  // catalog. A kernel in a process of its own (--exec) is not shared by forked processes.
  const bool run_properties = options.properties && !narrow_types(options);
  std::vector<std::string_view> names;
  std::vector<property_helper> helpers;
  if (run_properties && options.jobs > 1 && kernel.runs_in_worker()) {
    names = selected_properties(kernel.info(), options, options.filter);
    helpers = start_property_helpers(kernel, options, names);
  }
  run_summary s;
  if (options.catalog) {
    s = run_catalog_as_judged(kernel, cases, options, progress);
  } else {
    s.kernel = kernel.info();
    s.options = options;
  }
  // The property suite generates float32 problems: it runs with a float32 catalog.
  if (run_properties) {
    // The catalog's failures count on through the properties.
    const std::int64_t catalog_failing = s.failed + s.faults;
    const property_progress pp = [&progress, catalog_failing](std::size_t done, std::size_t total,
                                                              const std::string& name,
                                                              std::int64_t failing) {
      if (progress) progress(done, total, name, catalog_failing + failing);
    };
    std::vector<property_result> checked;
    if (helpers.empty()) {
      checked = check_properties(kernel, options, options.filter, pp);
    } else {
      // This process's share, then the helpers' results, in the order of one process.
      std::vector<std::optional<property_result>> at(names.size());
      std::vector<bool> helped(names.size(), false);
      for (const property_helper& h : helpers) {
        for (const std::size_t i : h.indices) helped[i] = true;
      }
      std::int64_t failing = 0;
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (helped[i]) continue;
        pp(i, names.size(), "property/" + std::string(names[i]), failing);
        at[i] = check_property(names[i], kernel, options);
        if (at[i]->verdict == property_verdict::fail) ++failing;
      }
      for (property_helper& h : helpers) finish_property_helper(h, names, at);
      for (auto& p : at) checked.push_back(std::move(*p));
      pp(names.size(), names.size(), "", failing);
    }
    for (const property_result& p : checked) {
      case_result r;
      r.case_name = "property/" + p.name;
      r.op = "property";
      r.problem = p.summary;
      r.tier = "generated";
      r.seconds = p.seconds;
      r.repro = p.repro;
      switch (p.verdict) {
        case property_verdict::pass:
          r.result = verdict::pass;
          r.evidence = true;
          r.best = options.level;
          r.reason = std::to_string(p.cases) + " generated cases";
          break;
        case property_verdict::skip:
          r.result = verdict::skip;
          r.reason = p.reason;
          break;
        case property_verdict::fail:
          r.result = p.fault ? verdict::fault : verdict::fail;
          if (options.diagnose) r.explained_by = explain_property(p.name);
          r.reason = p.reason + " (after " + std::to_string(p.cases) +
                     " passing cases; shrunk counterexample:)\n" + p.counterexample;
          break;
      }
      s.results.push_back(std::move(r));
    }
  }
  tally(s);
  return s;
}

}  // namespace

run_summary run_catalog(bn_kernel& kernel, const std::vector<case_spec>& cases,
                        const run_options& options, const progress_fn& progress) {
  return as_judged(kernel, options, [&](bn_kernel& judged) {
    return run_catalog_as_judged(judged, cases, options, progress);
  });
}

run_summary run_conformance(bn_kernel& judged, const std::vector<case_spec>& cases,
                            const run_options& options, const progress_fn& progress) {
  return as_judged(judged, options, [&](bn_kernel& kernel) {
    return run_conformance_as_judged(kernel, cases, options, progress);
  });
}

}  // namespace bnoracle
