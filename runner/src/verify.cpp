#include "bnoracle/verify.hpp"

#include "bnoracle/files.hpp"
#include "bnoracle/fixture_source.hpp"

#include "bnoracle/invoke.hpp"
#include "bnoracle/measure.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

namespace bnoracle {

namespace fs = std::filesystem;

std::vector<std::string> list_fixtures(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw fixture_error(dir, "", "not a directory");
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw fixture_error(dir, "", "cannot list: " + ec.message());
    // A dangling symlink or a symlink loop is an input error naming the file, not a crash.
    const bool regular = it->is_regular_file(ec);
    if (ec) throw fixture_error(it->path().string(), "", "cannot read: " + ec.message());
    if (!regular || it->path().extension() != ".json") continue;
    std::string rel = fs::relative(it->path(), dir).generic_string();
    rel.resize(rel.size() - 5);
    out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

const std::vector<float>& input(const fixture& f, const char* name) {
  static const std::vector<float> empty;
  const auto it = f.inputs.find(name);
  return it == f.inputs.end() ? empty : it->second;
}

}  // namespace

std::size_t export_fixtures(const std::vector<case_spec>& cases, const std::string& out,
                            std::optional<std::uint64_t> fold_and_syncbn_seed, bool force) {
  std::vector<fixture_file> operations;
  if (fold_and_syncbn_seed) operations = make_fold_and_syncbn_fixtures(*fold_and_syncbn_seed);
  // Every path is known before anything is computed or written: a refusal writes nothing.
  std::vector<std::string> paths;
  for (const auto& file : operations) paths.push_back(file.relative_path);
  for (const auto& c : cases) {
    for (auto& p : fixture_paths(c)) paths.push_back(std::move(p));
  }
  if (!force) {
    const auto conflicts = overwrite_conflicts(out, paths, k_fixture_schema);
    if (!conflicts.empty()) throw environment_error(conflict_message(conflicts, out));
  }
  std::size_t n = 0;
  for (const auto& file : operations) {
    write_file(fs::path(out) / file.relative_path, file.text, true);
    ++n;
  }
  for (const auto& c : cases) {
    for (const auto& file : make_fixtures(c)) {
      write_file(fs::path(out) / file.relative_path, file.text, true);
      ++n;
    }
  }
  return n;
}

namespace {

// The results of a kernel that provides the fold or the SyncBN merge, on such a fixture.
results operation_results(bn_kernel& kernel, const fixture& f, const std::string& claim,
                          const call_options& co) {
  results r;
  r.id = f.id;
  const kernel_info& info = kernel.info();
  op_result out;
  if (f.kind == "fold") {
    if (!info.fold) {
      r.status = "unsupported";
      r.message = "the kernel does not provide folding";
      return r;
    }
    fold_request q;
    q.out_channels = f.problem.n;
    q.fan_in = f.problem.c;
    q.eps = f.problem.eps;
    q.weight = input(f, "weight");
    q.bias = input(f, "bias");
    q.gamma = input(f, "gamma");
    q.beta = input(f, "beta");
    q.running_mean = input(f, "running_mean");
    q.running_var = input(f, "running_var");
    out = invoke_fold(kernel, q, co);
  } else {
    if (!info.syncbn_merge) {
      r.status = "unsupported";
      r.message = "the kernel does not provide the SyncBN merge";
      return r;
    }
    if (f.problem.convention != claim) {
      r.status = "unsupported";
      r.message = "fixture for convention " + f.problem.convention + ", kernel claims " + claim;
      return r;
    }
    if (!f.problem.momentum && !info.supports_cumulative) {
      r.status = "unsupported";
      r.message = "not supported by the kernel's self-description (momentum = None)";
      return r;
    }
    syncbn_request q;
    q.channels = f.problem.c;
    q.counts = f.counts;
    q.shard_mean = input(f, "shard_mean");
    q.shard_var = input(f, "shard_var");
    q.eps = f.problem.eps;
    q.momentum = f.problem.momentum;
    q.track_running = f.track_running;
    q.running_mean = input(f, "running_mean");
    q.running_var = input(f, "running_var");
    q.num_batches_tracked = f.num_batches_tracked;
    out = invoke_syncbn_merge(kernel, q, co);
  }
  if (!out.run.ok()) {
    r.status = "failed";
    r.message = out.describe();
    r.fault = true;
  } else if (out.status == BNK_UNSUPPORTED) {
    r.status = "unsupported";
    r.message = out.message;
  } else if (out.status == BNK_REFUSED) {
    r.status = "refused";
    r.message = out.message;
  } else if (out.status != BNK_OK) {
    r.status = "failed";
    r.message = out.message;
  } else {
    r.status = "ok";
    r.outputs = out.outputs;
    if (f.kind == "syncbn_merge" && f.track_running)
      r.num_batches_tracked = out.num_batches_tracked;
  }
  return r;
}

}  // namespace

results kernel_results(bn_kernel& kernel, const fixture& f, const run_options& opt) {
  results r;
  r.id = f.id;
  const kernel_info& info = kernel.info();
  const call_options co{opt.isolate, opt.timeout};
  // The convention the kernel is judged under: its claim, or the override of --convention.
  const std::string& claim = opt.convention.empty() ? info.convention : opt.convention;
  if (f.kind != "batch_norm") return operation_results(kernel, f, claim, co);
  if (!info.supports(f.problem.op.kind)) {
    r.status = "unsupported";
    r.message = "the kernel does not support " + std::string(to_string(f.problem.op.kind));
    return r;
  }
  if (!info.supports(f.problem.types)) {
    r.status = "unsupported";
    r.message = "the kernel does not support the data types " + describe(f.problem.types);
    return r;
  }

  const bool backward = f.op == bn_mode::backward_training || f.op == bn_mode::backward_inference;
  const bool training = f.op == bn_mode::forward_training || f.op == bn_mode::backward_training;
  // A fixture of another convention differs from the claim only in its running statistics and
  // its L = 1 refusal (docs/conventions.md): without a refusal its other outputs are judged and
  // its running statistics are not (`bnoracle check --convention` judges another claim in full).
  const bool same_convention = f.problem.convention == claim;
  if (!same_convention && !f.refusal.empty()) {
    r.status = "unsupported";
    r.message = "fixture for convention " + f.problem.convention + ", kernel claims " + claim +
                ": the fixture's convention refuses the problem";
    return r;
  }
  // Running statistics are updated and judged when the fixture tracks them, the kernel keeps them
  // and the conventions agree.
  const bool fixture_tracks = f.op == bn_mode::forward_training && f.track_running;
  const bool track = fixture_tracks && info.updates_running && same_convention;
  if (!info.supports(f.op) || !info.supports(f.problem.mem_layout) ||
      (!f.problem.momentum && !info.supports_cumulative && track)) {
    r.status = "unsupported";
    r.message = "not supported by the kernel's self-description";
    return r;
  }
  call_request q;
  q.problem = f.problem;
  q.affine = f.affine;
  q.src = input(f, "src");
  if (backward) q.diff_dst = input(f, "diff_dst");
  if (f.affine) {
    q.gamma = input(f, "gamma");
    q.beta = input(f, "beta");
  }
  if (!training || track) {
    q.running_mean = input(f, "running_mean");
    q.running_var = input(f, "running_var");
    q.num_batches_tracked = f.num_batches_tracked;
  }
  const bool saves = info.saves != BNK_SAVES_NONE;
  // Backward training needs the kernel's own saved statistics: one forward call first.
  if (f.op == bn_mode::backward_training && saves && info.supports(bn_mode::forward_training)) {
    call_request fwd = q;
    fwd.mode = bn_mode::forward_training;
    fwd.track_running = false;
    const call_result fr = invoke(kernel, fwd, co);
    if (fr.ok()) {
      q.save_mean = fr.save_mean;
      q.save_stat = fr.save_stat;
    }
  }
  q.mode = f.op;
  q.track_running = track;
  const call_result cr = invoke(kernel, q, co);
  if (!cr.run.ok() || !cr.padding_written.empty()) {
    r.status = "failed";
    r.message = cr.describe();
    r.fault = true;
  } else if (cr.status == BNK_UNSUPPORTED) {
    r.status = "unsupported";
    r.message = cr.message;
  } else if (cr.status == BNK_REFUSED && !same_convention) {
    // The kernel's own convention may refuse what the fixture's accepts (L = 1 under pytorch).
    r.status = "unsupported";
    r.message = "fixture for convention " + f.problem.convention + ", kernel claims " + claim +
                " and refused it: " + cr.message;
  } else if (cr.status == BNK_REFUSED) {
    r.status = "refused";
    r.message = cr.message;
  } else if (cr.status != BNK_OK) {
    r.status = "failed";
    r.message = cr.message;
  } else {
    r.status = "ok";
    if (fixture_tracks && !track) {
      r.running_returned = false;
      r.message = !info.updates_running
                      ? "the kernel keeps no running statistics (updates_running = 0)"
                      : "fixture for convention " + f.problem.convention + ", kernel claims " +
                            claim + ": running statistics not updated";
    }
    if (!backward) {
      r.outputs["dst"] = cr.dst;
    } else {
      r.outputs["diff_src"] = cr.diff_src;
      if (f.affine) {
        r.outputs["diff_gamma"] = cr.diff_gamma;
        r.outputs["diff_beta"] = cr.diff_beta;
      }
    }
    if (f.op == bn_mode::forward_training && saves) {
      if (f.problem.op.centred) r.outputs["mean"] = cr.save_mean;  // RMS norm has no mean
      r.outputs[info.saves == BNK_SAVES_MEAN_INVSTD ? "invstd" : "var"] = cr.save_stat;
    }
    if (q.track_running) {
      r.outputs["running_mean"] = cr.running_mean;
      r.outputs["running_var"] = cr.running_var;
      r.num_batches_tracked = cr.num_batches_tracked;
    }
  }
  return r;
}

std::size_t write_kernel_results(bn_kernel& kernel, const std::string& fixtures,
                                 const std::string& out, const run_options& opt, bool force) {
  const std::vector<std::string> ids = list_fixtures(fixtures);
  if (!force) {
    std::vector<std::string> paths;
    for (const auto& id : ids) paths.push_back(id + ".json");
    const auto conflicts = overwrite_conflicts(out, paths, k_results_schema);
    if (!conflicts.empty()) throw environment_error(conflict_message(conflicts, out));
  }
  std::size_t n = 0;
  for (const auto& id : ids) {
    fixture f = load_fixture((fs::path(fixtures) / (id + ".json")).string());
    f.id = id;
    write_file(fs::path(out) / (id + ".json"), dump_results(kernel_results(kernel, f, opt)), true);
    ++n;
  }
  return n;
}

namespace {

bool required_output(const fixture& f, const std::string& name) {
  if (f.kind != "batch_norm") return true;  // fold and syncbn_merge: every output
  // The saved batch statistics are optional (a kernel need not save them); the rest is required.
  const std::optional<output_id> id = parse_output(name);
  return id && *id != output_id::mean && *id != output_id::var && *id != output_id::invstd;
}

}  // namespace

case_result judge_fixture(const fixture& f, const results& res, const run_options& opt) {
  case_result r;
  r.case_name = f.catalog_case;
  r.mode = f.op;
  if (f.kind != "batch_norm") r.op = f.kind;
  r.step = f.step;
  r.problem = describe(f.problem);
  r.tier = std::string(to_string(f.tier));
  if (res.status == "unsupported") {
    r.result = verdict::skip;
    r.reason = "unsupported" + (res.message.empty() ? std::string() : ": " + res.message);
  } else if (!f.refusal.empty()) {
    r.result = res.status == "refused" ? verdict::pass : verdict::fail;
    r.best = accuracy_level::strict;
    r.reason = res.status == "refused" ? "refused, as the convention requires (" + f.refusal + ")"
                                       : "accepted a problem the convention rejects: " + f.refusal;
  } else if (res.status != "ok") {
    r.result = res.fault ? verdict::fault : verdict::fail;
    r.reason = res.status + (res.message.empty() ? std::string() : ": " + res.message);
  } else {
    for (const auto& e : f.expected) {
      const auto it = res.outputs.find(e.name);
      const std::optional<output_id> id = parse_output(e.name);
      const bool running = id == output_id::running_mean || id == output_id::running_var;
      if (!res.running_returned && running) continue;
      if (it == res.outputs.end()) {
        if (!required_output(f, e.name)) continue;
        output_result o;
        o.name = e.name;
        for (bool& p : o.passed) p = false;
        o.class_failure = "output " + e.name + " is missing from the results";
        r.outputs.push_back(o);
        continue;
      }
      if (it->second.size() != e.values.size()) {
        throw fixture_error(res.file, "outputs." + e.name,
                            "expected " + std::to_string(e.values.size()) + " values, got " +
                                std::to_string(it->second.size()));
      }
      if (!opt.profiles) {
        r.outputs.push_back(judge_elements(e.name, fixture_source(e, it->second), opt.level,
                                           opt.mistrust_fraction));
        continue;
      }
      // A fixture stores no reduction map: the profile is per element only.
      output_profile profile;
      const profile_observer observe(profile, static_cast<std::int64_t>(e.values.size()), 0, {});
      output_result o = judge_elements(e.name, fixture_source(e, it->second), opt.level,
                                       opt.mistrust_fraction, observe);
      o.profile = std::move(profile);
      r.outputs.push_back(std::move(o));
    }
    // Batch norm counts its training steps; instance norm leaves the counter as given (PyTorch).
    const std::int64_t nbt_after =
        f.num_batches_tracked + (f.problem.op.kind == op_kind::batch_norm ? 1 : 0);
    if (f.track_running && res.running_returned && res.num_batches_tracked &&
        *res.num_batches_tracked != nbt_after) {
      output_result o;
      o.name = "num_batches_tracked";
      for (bool& p : o.passed) p = false;
      o.class_failure = "num_batches_tracked: expected " + std::to_string(nbt_after) + ", got " +
                        std::to_string(*res.num_batches_tracked);
      r.outputs.push_back(o);
    }
    conclude(r, opt.level);
    if (!res.running_returned && f.track_running) {
      r.reason +=
          std::string(r.reason.empty() ? "" : "; ") + "running statistics not judged (" +
          (res.message.empty() ? std::string("omitted by the implementation") : res.message) + ")";
    }
  }
  return r;
}

run_summary verify_results(const std::string& fixtures_dir, const std::string& results_dir,
                           const run_options& opt, const progress_fn& progress) {
  run_summary s;
  s.kernel.name = "results in " + results_dir;
  s.kernel.version = "";
  s.kernel.convention = "as the fixtures say";
  s.options = opt;
  const std::vector<std::string> ids = list_fixtures(fixtures_dir);
  std::size_t done = 0;
  const auto failing = [&s] { return count_failing(s.results); };
  std::size_t index = 0;  // of the fixtures that pass the filter (--shard)
  for (const auto& id : ids) {
    if (progress) progress(done++, ids.size(), id, failing());
    if (!name_matches(id, opt.filter) || !in_shard(opt, index++)) continue;
    const fixture f = load_fixture((fs::path(fixtures_dir) / (id + ".json")).string());
    case_result r;
    r.case_name = f.catalog_case;
    r.mode = f.op;
    if (f.kind != "batch_norm") r.op = f.kind;
    r.step = f.step;
    r.problem = describe(f.problem) + " (" + id + ")";
    r.tier = std::string(to_string(f.tier));
    r.repro = "bnoracle verify --fixtures " + fixtures_dir + " --results " + results_dir +
              " --filter '" + id + "' --level " + std::string(to_string(opt.level));
    const fs::path rpath = fs::path(results_dir) / (id + ".json");
    std::error_code ec;
    if (!fs::exists(rpath, ec)) {
      r.result = verdict::fail;
      r.reason = "no results file " + rpath.string();
      s.results.push_back(std::move(r));
      continue;
    }
    // A results file that cannot be used fails its own case; the other cases are still judged.
    try {
      const results res = load_results(rpath.string());
      if (res.id != id) {
        throw fixture_error(rpath.string(), "id",
                            "the results are for fixture '" + res.id + "', not '" + id + "'");
      }
      case_result judged = judge_fixture(f, res, opt);
      judged.problem = r.problem;
      judged.repro = r.repro;
      r = std::move(judged);
    } catch (const fixture_error& e) {
      r.result = verdict::fail;
      r.reason = std::string("unusable results file: ") + e.what();
    }
    s.results.push_back(std::move(r));
  }
  if (progress) progress(ids.size(), ids.size(), "", failing());
  tally(s);
  return s;
}

}  // namespace bnoracle
