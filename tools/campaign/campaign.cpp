// bnoracle_campaign: the false-positive campaign (docs/false-positive-campaign.md).
//
// Runs kernels against many generated problems (bnoracle's own generators, sound and `any`
// domains, every layout the kernel claims), every mode the kernel provides, and judges every
// output element against the exact reference with the error model at one accuracy level, through
// judge_output, the routine the runner and the property suite use. A correct kernel must never
// fail; the distribution of |kernel − exact| / bound is recorded per output to show how close to
// its bounds each kernel comes.
//
// Problem i depends only on (--seed, i, the kernel's claims, --max-elements), so any problem
// reproduces alone with --only i, and a campaign split over worker processes (--jobs) reports
// exactly what one process would.
//
// Exit codes: 0 no failure, 1 some failure (a ratio >= 1, a class mismatch, a wrong refusal,
// a kernel fault), 2 usage error or a plugin that cannot be loaded, 4 internal error.
#include "bnoracle/error_model.hpp"
#include "bnoracle/generators.hpp"
#include "bnoracle/invoke.hpp"
#include "bnoracle/judge.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/measure.hpp"
#include "bnoracle/properties.hpp"
#include "report.hpp"
#include "stats.hpp"

#include <rapidcheck.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace bnoracle::campaign {
namespace {

constexpr int k_exit_ok = 0;
constexpr int k_exit_failed = 1;
constexpr int k_exit_usage = 2;
constexpr int k_exit_internal = 4;

class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void print_usage(std::ostream& os) {
  os << "usage: bnoracle_campaign --kernel PATH.so[:LEVEL] [--kernel ...] [options]\n"
        "\n"
        "Runs each kernel against generated problems in every mode it provides and judges every\n"
        "output element against the exact reference; reports the distribution of\n"
        "|kernel - exact| / bound. Exit 0: no failure; 1: some failure; 2: usage error.\n"
        "\n"
        "options:\n"
        "  --kernel PATH[:LEVEL]  a kernel plugin, optionally with its level (repeatable)\n"
        "  --problems N           batch-norm problems per kernel (default 1000)\n"
        "  --family-problems N    problems of each other op the kernel declares (default: as\n"
        "                         many as --problems)\n"
        "  --op OP                only OP's problems (batch_norm, layer_norm, rms_norm,\n"
        "                         group_norm, instance_norm)\n"
        "  --types TYPES          every problem in these data types: a configuration\n"
        "                         (cudnn_mixed, bf16_mixed, bf16_weights, pytorch_cpu_bf16,\n"
        "                         all_half), one format, or roles one by one (default float32)\n"
        "  --seed S               campaign seed (default 1)\n"
        "  --level L              strict|standard|lenient for every kernel without its own\n"
        "                         (default: the level the kernel's algorithm guarantees, for the\n"
        "                         bundled kernels; standard otherwise)\n"
        "  --jobs J               worker processes over disjoint problems (default 1)\n"
        "  --no-isolation         call kernels in-process instead of a forked child per call\n"
        "  --timeout SECONDS      per isolated kernel call (default 20)\n"
        "  --max-elements N       largest N*C*spatial of a problem (default 4096)\n"
        "  --only INDEX           run problem INDEX of each op alone and show it (reproduces a\n"
        "                         report's problem with --op)\n"
        "  --shard K/N            run shard K of N: problems i with i mod N = K - 1 of every\n"
        "                         stream (1 <= K <= N <= 100000); the N shards' JSON reports\n"
        "                         merge into the unsharded run's report (--merge)\n"
        "  --merge FILE           (repeatable) run nothing: merge the --json reports of the N\n"
        "                         shards of this same command (same kernels and options, no\n"
        "                         --shard) into its report; every shard exactly once\n"
        "  --markdown FILE        write the report as Markdown (deterministic)\n"
        "  --json FILE            write the report as JSON\n"
        "  --help                 this text\n";
}

// ---- Command line ----------------------------------------------------------------------------

template <class T>
T parse_number(std::string_view option, std::string_view text, T lo, T hi) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < lo || v > hi) {
    throw usage_error(std::string(option) + ": '" + std::string(text) + "' is not a number in [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

accuracy_level parse_level_or_throw(std::string_view option, std::string_view text) {
  const auto l = parse_level(text);
  if (!l) {
    throw usage_error(std::string(option) + ": unknown level '" + std::string(text) +
                      "' (strict, standard or lenient)");
  }
  return *l;
}

settings parse_args(int argc, char** argv) {
  settings s;
  if (argc > 0 && argv[0] != nullptr && *argv[0] != '\0') s.program = shown_path(argv[0]);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size()) throw usage_error(std::string(a) + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      s.help = true;
    } else if (a == "--kernel") {
      const std::string_view v = value();
      kernel_arg k{std::string(v), std::nullopt};
      // PATH:LEVEL, where LEVEL must name a level (a path may itself contain ':').
      if (const auto colon = v.rfind(':'); colon != std::string_view::npos) {
        if (const auto l = parse_level(v.substr(colon + 1))) {
          k.path = std::string(v.substr(0, colon));
          k.level = *l;
        }
      }
      if (k.path.empty()) throw usage_error("--kernel: empty path");
      s.kernels.push_back(k);
    } else if (a == "--problems") {
      s.problems = parse_number<std::int64_t>(a, value(), 1, std::int64_t{1} << 40);
    } else if (a == "--family-problems") {
      s.family_problems = parse_number<std::int64_t>(a, value(), 1, std::int64_t{1} << 40);
    } else if (a == "--op") {
      const std::string_view v = value();
      s.op = parse_op_kind(v);
      if (!s.op) {
        throw usage_error("--op: unknown op '" + std::string(v) +
                          "' (batch_norm, layer_norm, rms_norm, group_norm, instance_norm)");
      }
    } else if (a == "--types") {
      const std::string_view v = value();
      if (!parse_data_types(v)) {
        throw usage_error("--types: not a data-type configuration '" + std::string(v) + "'");
      }
      s.types = std::string(v);
    } else if (a == "--seed") {
      s.seed =
          parse_number<std::uint64_t>(a, value(), 0, std::numeric_limits<std::uint64_t>::max());
    } else if (a == "--level") {
      s.level = parse_level_or_throw(a, value());
    } else if (a == "--jobs") {
      s.jobs = parse_number<int>(a, value(), 1, 256);
    } else if (a == "--no-isolation") {
      s.isolate = false;
    } else if (a == "--timeout") {
      s.timeout_seconds = parse_number<int>(a, value(), 1, 86'400);
    } else if (a == "--max-elements") {
      s.max_elements = parse_number<std::int64_t>(a, value(), 16, std::int64_t{1} << 24);
    } else if (a == "--only") {
      s.only = parse_number<std::int64_t>(a, value(), 0, std::int64_t{1} << 40);
    } else if (a == "--shard") {
      const std::string_view v = value();
      const auto slash = v.find('/');
      if (slash == std::string_view::npos)
        throw usage_error("--shard: expected K/N, got '" + std::string(v) + "'");
      const auto n = parse_number<std::int64_t>(a, v.substr(slash + 1), 1, 100'000);
      const auto k = parse_number<std::int64_t>(a, v.substr(0, slash), 1, n);
      s.shard_index = k - 1;
      s.shard_count = n;
    } else if (a == "--merge") {
      s.merge.emplace_back(value());
    } else if (a == "--markdown") {
      s.markdown = std::string(value());
    } else if (a == "--json") {
      s.json = std::string(value());
    } else {
      throw usage_error("unknown option '" + std::string(a) + "'");
    }
  }
  if (!s.help && s.kernels.empty()) throw usage_error("no --kernel given");
  if (!s.merge.empty() && (s.shard_count > 1 || s.only)) {
    throw usage_error("--merge: give the unsharded command's options, without --shard or --only");
  }
  if (s.only && *s.only >= s.problems) s.problems = *s.only + 1;
  if (s.only && *s.only >= problems_of(s, op_kind::layer_norm)) s.family_problems = *s.only + 1;
  return s;
}

// ---- Levels ----------------------------------------------------------------------------------

// The level each bundled kernel's summation algorithm guarantees deterministically
// (docs/error-model.md, "Summation and the accuracy levels"; tests/test_properties.cpp checks the
// same table).
struct guaranteed_level {
  std::string_view kernel;
  accuracy_level level;
  std::string_view why;
};
constexpr guaranteed_level k_guaranteed[] = {
    {"pairwise", accuracy_level::strict, "pairwise reductions"},
    {"compensated", accuracy_level::strict, "compensated sums"},
    {"two_pass", accuracy_level::lenient, "sequential sums"},
    {"welford", accuracy_level::lenient, "Welford updates and sequential sums"},
    {"blocked_threads", accuracy_level::lenient, "two sequential blocks per sum"},
    {"minimal", accuracy_level::lenient, "sequential sums"},
};

void choose_level(kernel_run& k, const settings& s) {
  if (k.arg.level) {
    k.level = *k.arg.level;
    k.level_source = "given with --kernel";
    return;
  }
  if (s.level) {
    k.level = *s.level;
    k.level_source = "given with --level";
    return;
  }
  for (const auto& g : k_guaranteed) {
    if (g.kernel == k.name) {
      k.level = g.level;
      k.level_source = "guaranteed: " + std::string(g.why);
      return;
    }
  }
  k.level = accuracy_level::standard;
  k.level_source = "the default gate (no guaranteed level known for this kernel)";
}

// ---- Problems --------------------------------------------------------------------------------

// One generated problem: the case every mode runs on, and the data forward inference runs on
// (the same, but in the `any` domain one src element in eight may be any float32 at all, as in
// the reference_agreement property: inference is element-wise, so overflow and NaN rules apply).
struct campaign_problem {
  property_case pc;
  property_case inference;
  bool any_domain = false;
};

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9e37'79b9'7f4a'7c15ULL;
  z = (z ^ (z >> 30U)) * 0xbf58'476d'1ce4'e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d0'49bb'1331'11ebULL;
  return z ^ (z >> 31U);
}

// The RapidCheck seed of problem `index` of an op's stream (documented: stable across releases;
// batch norm's is the stream of the campaign before the other ops joined it).
std::uint64_t problem_seed(std::uint64_t seed, std::int64_t index, op_kind op) {
  const std::uint64_t bn = splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(index));
  if (op == op_kind::batch_norm) return bn;
  return splitmix64(bn ^ splitmix64(static_cast<std::uint64_t>(op)));
}

campaign_problem make_problem(const kernel_info& info, const settings& s, std::int64_t index,
                              op_kind op) {
  gen::case_options o;
  if (op != op_kind::batch_norm) o.ops = {op};
  o.shape.layouts = info.layouts;
  o.shape.max_elements = s.max_elements;
  o.shape.min_per_channel = 1;  // L = 1: a refusal under PyTorch's convention
  o.cumulative = info.supports_cumulative;
  o.domain = index % 2 == 0 ? gen::data_domain::sound : gen::data_domain::any;
  if (!s.types.empty()) o.types = *parse_data_types(s.types);
  const auto generator = rc::gen::exec([o] {
    campaign_problem p;
    p.any_domain = o.domain == gen::data_domain::any;
    p.pc = *gen::property_case_of(o);
    p.inference = p.pc;
    if (p.any_domain && has_mode(p.pc.problem.op, bn_mode::forward_inference)) {
      for (float& x : p.inference.src) {
        // Any value of the data format: a float32 beyond its range rounds to ±Inf.
        if (*rc::gen::inRange(0, 8) == 0) {
          x = round_to_format(format_of(o.types.data), *gen::any_float32());
        }
      }
    }
    return p;
  });
  const int size = static_cast<int>(index % 101);  // RapidCheck's size: 0 to 100 in turn
  campaign_problem p = generator(rc::Random(problem_seed(s.seed, index, op)), size).value();
  p.pc.problem.convention = info.convention;
  p.inference.problem.convention = info.convention;
  return p;
}

std::string show_problem(const campaign_problem& p) {
  std::ostringstream os;
  showValue(p.pc, os);
  if (p.inference.src != p.pc.src) {
    os << "\nand for forward inference, with special values in src:\n";
    showValue(p.inference, os);
  }
  return os.str();
}

bool is_training(bn_mode m) {
  return m == bn_mode::forward_training || m == bn_mode::backward_training;
}
bool is_backward(bn_mode m) {
  return m == bn_mode::backward_training || m == bn_mode::backward_inference;
}

// The exact side of one call: reference and error model of the case's logical data (the case
// must outlive this object, which must not move: the reference points into the case).
class exact_case {
 public:
  exact_case(const property_case& pc, bn_mode mode, bool track) : problem_(pc.problem) {
    problem_.mem_layout = dense_layout(problem_.spatial.size());
    problem_.strides.clear();
    bn_inputs in;
    in.src = pc.src.data();
    if (is_backward(mode)) in.diff_dst = pc.diff_dst.data();
    if (pc.affine) {
      in.gamma = pc.gamma;
      in.beta = pc.beta;
    }
    if (!is_training(mode) || track) {
      in.running_mean = pc.running_mean;
      in.running_var = pc.running_var;
    }
    in.num_batches_tracked = pc.num_batches_tracked;
    ref_.emplace(problem_, mode, in);
    model_.emplace(*ref_, in, data_tier::general);
  }
  exact_case(const exact_case&) = delete;
  exact_case& operator=(const exact_case&) = delete;

  [[nodiscard]] const reference& ref() const { return *ref_; }
  [[nodiscard]] const error_model& model() const { return *model_; }

 private:
  bn_problem problem_;
  std::optional<reference> ref_;
  std::optional<error_model> model_;
};

// Runs one problem through every mode of one kernel and records what it finds.
class problem_runner {
 public:
  problem_runner(const kernel_run& k, const settings& s, std::int64_t index, kernel_stats& stats,
                 std::ostream* verbose)
      : k_(k), info_(k.kernel->info()), index_(index), stats_(stats), verbose_(verbose) {
    call_.isolate = s.isolate;
    call_.timeout = std::chrono::milliseconds(std::int64_t{1000} * s.timeout_seconds);
    lvl_ = static_cast<std::size_t>(k.level);
  }

  void run(const campaign_problem& p) {
    ++stats_.problems;
    try {
      run_modes(p);
    } catch (const std::exception& e) {
      fail(std::string("internal error (generated problem or oracle): ") + e.what());
    }
    if (!failures_.empty()) {
      ++stats_.failed_problems;
      std::string what;
      for (const auto& f : failures_) what += (what.empty() ? "" : "\n") + f;
      stats_.add_failure({index_, what, show_problem(p)});
    }
  }

 private:
  void fail(std::string what) { failures_.push_back(std::move(what)); }

  // The mode as failures name it: "forward_training", or "forward_training of layer_norm(axes=2)"
  // for the other ops.
  [[nodiscard]] std::string label(bn_mode m) const {
    std::string text(to_string(m));
    if (op_.kind != op_kind::batch_norm) text += " of " + describe(op_);
    return text;
  }

  // Whether the outputs of a call are to be judged; records faults, refusals and skips.
  bool accept(const call_result& r, const std::string& refusal, bn_mode m) {
    ++stats_.calls;
    const std::string mode = label(m);
    if (!r.run.ok() || !r.padding_written.empty()) {
      fail(mode + ": kernel fault: " + r.describe());
      return false;
    }
    if (r.status == BNK_UNSUPPORTED) {
      ++stats_.unsupported;
      return false;
    }
    if (!refusal.empty()) {
      if (r.status == BNK_REFUSED) {
        ++stats_.refusals_matched;
      } else if (r.status == BNK_OK) {
        fail(mode + ": accepted a problem the " + info_.convention +
             " convention rejects: " + refusal);
      } else {
        fail(mode + ": " + r.describe() + " where the convention requires a refusal (" + refusal +
             ")");
      }
      return false;
    }
    if (r.status != BNK_OK) {
      fail(mode + ": " + r.describe() + " on a valid problem");
      return false;
    }
    return true;
  }

  // Judges one output with judge_output, whose observer records the ratio of every element.
  void judge(row id, const exact_case& e, const std::string& shown, output_id out,
             const std::vector<float>& got) {
    const std::string mode = label(k_rows[id].mode);
    const reference& ref = e.ref();
    if (got.size() != static_cast<std::size_t>(ref.output_size(out))) {
      fail(mode + " " + shown + ": " + std::to_string(got.size()) + " elements, expected " +
           std::to_string(ref.output_size(out)));
      return;
    }
    row_stats& rs = stats_.rows[id];
    const std::int64_t judged0 = rs.judged, class0 = rs.class_judged, no_claim0 = rs.no_claim;
    double worst = 0;
    std::int64_t worst_at = -1;
    const output_result o = judge_output(
        shown, out, out, ref, e.model(), k_.level, 0.5,
        [&got](std::int64_t i) { return got[static_cast<std::size_t>(i)]; },
        [&](const element_event& ev) {
          switch (ev.kind) {
            case element_kind::unspecified:
              return;
            case element_kind::by_class:
              ++rs.class_judged;
              return;
            case element_kind::no_claim:
              ++rs.no_claim;
              return;
            case element_kind::measured:
              break;
          }
          const double ratio =
              std::isnan(ev.ratio) ? std::numeric_limits<double>::infinity() : ev.ratio;
          ++rs.judged;
          ++rs.histogram[bucket_of(ratio)];
          if (worst_at < 0 || ratio > worst) {
            worst = ratio;
            worst_at = ev.index;
          }
        });
    ++rs.problems;
    if (o.mistrusted) ++rs.mistrusted;
    if (worst_at >= 0 && (rs.max_index < 0 || worst > rs.max_ratio)) {
      rs.note_max(worst, index_, element_where(ref.map(), shown, worst_at, describe(out).extent));
    }
    if (verbose_ != nullptr) {
      *verbose_ << "  " << mode << ' ' << shown << ": " << (rs.judged - judged0) << " judged, "
                << (rs.class_judged - class0) << " by class, " << (rs.no_claim - no_claim0)
                << " without claim; max ratio " << format_ratio(worst, worst_at >= 0);
      if (worst_at >= 0) {
        const golden g = ref.round(out, worst_at);
        const float v = got[static_cast<std::size_t>(worst_at)];
        *verbose_ << " at " << element_where(ref.map(), shown, worst_at, describe(out).extent)
                  << " got=" << hex_float(v) << " exp=" << hex_float(g.value)
                  << " err=" << error_ulps(v, g) << " ulp";
      }
      *verbose_ << (o.mistrusted ? " (mistrusted)" : "") << '\n';
    }
    if (!o.passed[lvl_]) {
      std::ostringstream os;
      os << mode << ' ' << shown << ": ";
      if (!o.class_failure.empty()) {
        os << o.class_failure;
      } else {
        std::ostringstream qualifier;
        qualifier << " at " << to_string(k_.level) << ", ratio " << o.worst_ratio;
        os << worst_element_text(o, qualifier.str());
      }
      fail(os.str());
    }
  }

  // Whether the kernel provides mode m and the problem's op has it.
  [[nodiscard]] bool runs(bn_mode m) const { return info_.supports(m) && has_mode(op_, m); }

  void run_modes(const campaign_problem& p) {
    const property_case& pc = p.pc;
    op_ = pc.problem.op;
    std::vector<float> save_mean, save_stat;
    if (runs(bn_mode::forward_training)) {
      const bn_mode m = bn_mode::forward_training;
      // Batch norm and instance norm with track_running_stats keep running statistics.
      const bool track = info_.updates_running && op_.running_stats;
      const exact_case e(pc, m, track);
      const call_result r = invoke(*k_.kernel, request_of(pc, m, track), call_);
      if (accept(r, e.ref().refusal(), m)) {
        judge(fwd_dst, e, "dst", output_id::dst, r.dst);
        if (info_.saves != BNK_SAVES_NONE) {
          // RMS norm has no mean: what a kernel saves there is not judged.
          if (e.ref().has_output(output_id::mean)) {
            judge(fwd_save_mean, e, "save_mean", output_id::mean, r.save_mean);
          }
          const output_id stat =
              info_.saves == BNK_SAVES_MEAN_INVSTD ? output_id::invstd : output_id::var;
          judge(fwd_save_stat, e, "save_stat(" + std::string(to_string(stat)) + ")", stat,
                r.save_stat);
          save_mean = r.save_mean;
          save_stat = r.save_stat;
        }
        if (track) {
          judge(fwd_running_mean, e, "running_mean", output_id::running_mean, r.running_mean);
          judge(fwd_running_var, e, "running_var", output_id::running_var, r.running_var);
          if (r.num_batches_tracked != e.ref().num_batches_tracked()) {
            fail(label(m) + ": num_batches_tracked " + std::to_string(r.num_batches_tracked) +
                 ", expected " + std::to_string(e.ref().num_batches_tracked()));
          }
        }
      }
    }
    if (runs(bn_mode::backward_training)) {
      // With what the kernel's own forward training saved, as a framework calls it.
      const bn_mode m = bn_mode::backward_training;
      const exact_case e(pc, m, false);
      call_request q = request_of(pc, m, false);
      q.save_mean = save_mean;
      q.save_stat = save_stat;
      const call_result r = invoke(*k_.kernel, q, call_);
      if (accept(r, e.ref().refusal(), m)) {
        judge(bwd_diff_src, e, "diff_src", output_id::diff_src, r.diff_src);
        if (pc.affine) {
          judge(bwd_diff_gamma, e, "diff_gamma", output_id::diff_gamma, r.diff_gamma);
          judge(bwd_diff_beta, e, "diff_beta", output_id::diff_beta, r.diff_beta);
        }
      }
    }
    if (runs(bn_mode::forward_inference)) {
      const bn_mode m = bn_mode::forward_inference;
      const exact_case e(p.inference, m, false);
      const call_result r = invoke(*k_.kernel, request_of(p.inference, m, false), call_);
      if (accept(r, e.ref().refusal(), m)) judge(inf_dst, e, "dst", output_id::dst, r.dst);
    }
    if (runs(bn_mode::backward_inference)) {
      const bn_mode m = bn_mode::backward_inference;
      const exact_case e(pc, m, false);
      const call_result r = invoke(*k_.kernel, request_of(pc, m, false), call_);
      if (accept(r, e.ref().refusal(), m)) {
        judge(bwi_diff_src, e, "diff_src", output_id::diff_src, r.diff_src);
        if (pc.affine) {
          judge(bwi_diff_gamma, e, "diff_gamma", output_id::diff_gamma, r.diff_gamma);
          judge(bwi_diff_beta, e, "diff_beta", output_id::diff_beta, r.diff_beta);
        }
      }
    }
  }

  const kernel_run& k_;
  const kernel_info& info_;
  std::int64_t index_;
  kernel_stats& stats_;
  std::ostream* verbose_;
  call_options call_;
  std::size_t lvl_ = 0;
  op_desc op_;  // the problem's op
  std::vector<std::string> failures_;
};

void run_problem(const kernel_run& k, const settings& s, op_kind op, std::int64_t index,
                 kernel_stats& stats, std::ostream* verbose) {
  campaign_problem p;
  try {
    p = make_problem(k.kernel->info(), s, index, op);
  } catch (const std::exception& e) {
    ++stats.problems;
    ++stats.failed_problems;
    stats.add_failure(
        {index, std::string("internal error: generating the problem: ") + e.what(), ""});
    return;
  }
  if (verbose != nullptr) *verbose << "problem " << index << ":\n" << show_problem(p) << "\n";
  problem_runner(k, s, index, stats, verbose).run(p);
}

// ---- Workers ---------------------------------------------------------------------------------

// Problems first, first + step, ... of op's stream; `current` (if any) holds the index being run.
kernel_stats run_share(const kernel_run& k, const settings& s, op_kind op, std::int64_t first,
                       std::int64_t step, volatile std::int64_t* current) {
  kernel_stats st;
  for (std::int64_t i = first; i < problems_of(s, op); i += step) {
    if (current != nullptr) *current = i;
    run_problem(k, s, op, i, st, nullptr);
  }
  return st;
}

// Runs one op's stream of one kernel in s.jobs forked workers over interleaved indices, each
// handing its statistics back as JSON in a temporary file. A worker that dies (a kernel crash
// with --no-isolation) is a failure at the problem it was running.
kernel_stats run_workers(const kernel_run& k, const settings& s, op_kind op) {
  const auto jobs = static_cast<std::size_t>(s.jobs);
  void* shared = mmap(nullptr, jobs * sizeof(std::int64_t), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  auto* current = static_cast<volatile std::int64_t*>(shared);
  struct worker {
    pid_t pid = -1;
    std::FILE* out = nullptr;
  };
  std::vector<worker> workers;
  // Machinery failure part-way: stop the workers already started, then report.
  auto abandon = [&](const char* what) {
    const int err = errno;
    for (const worker& w : workers) {
      kill(w.pid, SIGKILL);
      while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      std::fclose(w.out);
    }
    munmap(shared, jobs * sizeof(std::int64_t));
    throw std::system_error(err, std::generic_category(), what);
  };
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  for (std::size_t j = 0; j < jobs; ++j) {
    current[j] = -1;
    worker w;
    w.out = std::tmpfile();
    if (w.out == nullptr) abandon("tmpfile");
    w.pid = fork();
    if (w.pid < 0) {
      std::fclose(w.out);
      abandon("fork");
    }
    if (w.pid == 0) {
      int rc = 0;
      try {
        // This shard's problems (i mod N = shard), dealt out to the jobs in turn.
        const auto first = s.shard_index + s.shard_count * static_cast<std::int64_t>(j);
        const auto step = s.shard_count * static_cast<std::int64_t>(jobs);
        const kernel_stats st = run_share(k, s, op, first, step, &current[j]);
        const std::string text = to_json(st).dump();
        if (std::fwrite(text.data(), 1, text.size(), w.out) != text.size()) rc = 4;
        if (std::fflush(w.out) != 0) rc = 4;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bnoracle_campaign: worker %zu: %s\n", j, e.what());
        rc = 4;
      }
      std::fflush(nullptr);
      _exit(rc);
    }
    workers.push_back(w);
  }
  kernel_stats merged;
  std::string internal;
  for (std::size_t j = 0; j < workers.size(); ++j) {
    int status = 0;
    pid_t got = -1;
    do {
      got = waitpid(workers[j].pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    const bool clean = got == workers[j].pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (clean) {
      std::rewind(workers[j].out);
      std::string text;
      char buf[65536];
      std::size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof buf, workers[j].out)) > 0) text.append(buf, n);
      try {
        merged.merge(kernel_from_json(nlohmann::json::parse(text)));
      } catch (const std::exception& e) {
        internal = std::string("a worker's result could not be read: ") + e.what();
      }
    } else if (got == workers[j].pid && WIFEXITED(status) && WEXITSTATUS(status) == 4) {
      internal = "worker " + std::to_string(j) + " failed (see above)";
    } else {
      // The worker died: with --no-isolation a kernel crash takes it down. Its share is lost.
      const std::int64_t at = current[j];
      std::string how = got != workers[j].pid ? "could not be waited for"
                        : WIFSIGNALED(status)
                            ? "was killed by " + signal_name(WTERMSIG(status))
                            : "exited with code " + std::to_string(WEXITSTATUS(status));
      ++merged.failed_problems;
      merged.add_failure({at,
                          "worker " + std::to_string(j) + " " + how + " while running problem " +
                              std::to_string(at) +
                              (s.isolate ? "" : " (a kernel fault without isolation?)") +
                              "; its remaining problems were not run",
                          ""});
    }
    std::fclose(workers[j].out);
  }
  munmap(shared, jobs * sizeof(std::int64_t));
  if (!internal.empty()) throw std::runtime_error(internal);
  return merged;
}

// ---- Output ----------------------------------------------------------------------------------

std::string repro_command(const kernel_run& k, const settings& s, op_kind op, std::int64_t index) {
  std::ostringstream os;
  os << s.program << " --kernel " << k.arg.path << ':' << to_string(k.level) << " --seed " << s.seed
     << " --op " << to_string(op) << " --only " << index;
  if (!s.types.empty()) os << " --types " << s.types;
  if (s.max_elements != settings{}.max_elements) os << " --max-elements " << s.max_elements;
  if (!s.isolate) os << " --no-isolation";
  return os.str();
}

void print_op(std::ostream& os, const kernel_run& k, const op_run& o, const settings& s) {
  const kernel_stats& st = o.stats;
  const row_stats t = st.total();
  const std::string name = k.name + " " + std::string(to_string(o.op));
  os << name << " at " << to_string(k.level) << " (" << k.level_source << "): " << st.problems
     << " problems, " << st.calls << " calls, " << t.judged << " elements judged, "
     << t.class_judged << " by class, " << st.refusals_matched << " refusals matched; max ratio "
     << format_ratio(t.max_ratio);
  if (t.max_index >= 0) os << " (problem " << t.max_index << ", " << t.max_where << ")";
  os << "; " << st.failed_problems << " failing problems\n";
  for (const failure& f : st.failures) {
    os << "\nFAIL " << name << " problem " << f.index << ":\n" << f.what << '\n';
    if (!f.problem.empty()) os << "problem: " << f.problem << '\n';
    if (f.index >= 0) os << "reproduce: " << repro_command(k, s, o.op, f.index) << '\n';
  }
  if (st.failed_problems > static_cast<std::int64_t>(st.failures.size())) {
    os << "... and " << st.failed_problems - static_cast<std::int64_t>(st.failures.size())
       << " more failing problems of " << name << " (not shown)\n";
  }
  if (!st.failures.empty()) os << '\n';
}

// Merges the JSON reports of the N shards of command `s` into `runs` (their statistics as one
// run would have them). Every report must come from this command with --shard K/N, and together
// they must hold every shard once: a missing, repeated or foreign shard is an error, never a
// smaller report.
void merge_shards(const settings& s, std::vector<kernel_run>& runs) {
  std::vector<nlohmann::json> reports;
  std::optional<std::int64_t> count;
  std::vector<bool> seen;
  for (const std::string& path : s.merge) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw usage_error("--merge: cannot read '" + path + "'");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
      throw usage_error("--merge: '" + path + "' is not JSON: " + e.what());
    }
    const auto field = [&](const char* name) -> const nlohmann::json& {
      if (!j.is_object() || !j.contains(name)) {
        throw usage_error("--merge: '" + path + "' is not a campaign report (no '" + name + "')");
      }
      return j.at(name);
    };
    const auto same = [&](const char* name, const nlohmann::json& want) {
      if (field(name) != want) {
        throw usage_error("--merge: '" + path + "' has " + name + " " + field(name).dump() +
                          ", this command " + want.dump() + ": a shard of another run");
      }
    };
    same("tool", "bnoracle_campaign");
    same("seed", s.seed);
    same("problems_per_kernel", s.problems);
    same("family_problems_per_kernel", problems_of(s, op_kind::layer_norm));
    same("max_elements", s.max_elements);
    same("isolation", s.isolate);
    same("types", s.types);
    const nlohmann::json& shard = field("shard");
    const auto n = shard.at("count").get<std::int64_t>();
    const auto k = shard.at("index").get<std::int64_t>();
    if (count && *count != n) {
      throw usage_error("--merge: '" + path + "' is shard " + std::to_string(k) + " of " +
                        std::to_string(n) + ", the others of " + std::to_string(*count));
    }
    count = n;
    seen.resize(static_cast<std::size_t>(n), false);
    if (k < 1 || k > n || seen[static_cast<std::size_t>(k - 1)]) {
      throw usage_error("--merge: shard " + std::to_string(k) + "/" + std::to_string(n) +
                        " given twice or out of range ('" + path + "')");
    }
    seen[static_cast<std::size_t>(k - 1)] = true;
    const nlohmann::json& kernels = field("kernels");
    if (!kernels.is_array() || kernels.size() != runs.size()) {
      throw usage_error("--merge: '" + path + "' has other kernels than this command");
    }
    for (std::size_t r = 0; r < runs.size(); ++r) {
      const nlohmann::json& kj = kernels[r];
      if (kj.at("name") != runs[r].name ||
          kj.at("level") != std::string(to_string(runs[r].level)) ||
          kj.at("ops").size() != runs[r].ops.size()) {
        throw usage_error("--merge: '" + path + "': kernel " + std::to_string(r + 1) + " is " +
                          kj.at("name").dump() + " at " + kj.at("level").dump() + ", not " +
                          runs[r].name + " at " + std::string(to_string(runs[r].level)));
      }
    }
    reports.push_back(std::move(j));
  }
  for (std::size_t k = 0; k < seen.size(); ++k) {
    if (!seen[k]) {
      throw usage_error("--merge: shard " + std::to_string(k + 1) + "/" +
                        std::to_string(seen.size()) + " is missing");
    }
  }
  for (std::size_t r = 0; r < runs.size(); ++r) {
    for (std::size_t o = 0; o < runs[r].ops.size(); ++o) {
      for (const nlohmann::json& j : reports) {
        const nlohmann::json& oj = j.at("kernels")[r].at("ops")[o];
        if (oj.at("op") != std::string(to_string(runs[r].ops[o].op))) {
          throw usage_error("--merge: the reports' ops differ from this command's");
        }
        runs[r].ops[o].stats.merge(kernel_from_json(oj));
      }
    }
  }
}

int run(const settings& s) {
  std::vector<kernel_run> runs;
  for (const kernel_arg& a : s.kernels) {
    kernel_run k;
    k.arg = a;
    try {
      k.kernel = load_plugin(a.path);
    } catch (const std::exception& e) {
      std::cerr << "bnoracle_campaign: cannot load kernel '" << a.path << "': " << e.what() << '\n';
      return k_exit_usage;
    }
    k.name = k.kernel->info().name;
    int same = 0;
    for (const auto& other : runs) same += other.kernel->info().name == k.name ? 1 : 0;
    if (same > 0) k.name += "#" + std::to_string(same + 1);
    choose_level(k, s);
    // Every op the kernel declares, in the report's order (or --op alone).
    for (const op_title& t : k_op_titles) {
      if (k.kernel->info().supports(t.op) && (!s.op || *s.op == t.op)) {
        op_run o;
        o.op = t.op;
        k.ops.push_back(std::move(o));
      }
    }
    if (k.ops.empty()) {
      std::cerr << "bnoracle_campaign: kernel '" << k.name << "' does not declare "
                << (s.op ? std::string(to_string(*s.op)) : std::string("any op")) << '\n';
      return k_exit_usage;
    }
    runs.push_back(std::move(k));
  }
  if (!s.merge.empty()) {
    try {
      merge_shards(s, runs);
    } catch (const usage_error& e) {
      std::cerr << "bnoracle_campaign: " << e.what() << '\n';
      return k_exit_usage;
    } catch (const std::exception& e) {
      std::cerr << "bnoracle_campaign: --merge: a report could not be read: " << e.what() << '\n';
      return k_exit_usage;
    }
    for (const kernel_run& k : runs) {
      for (const op_run& o : k.ops) print_op(std::cout, k, o, s);
    }
  } else if (s.only) {
    for (kernel_run& k : runs) {
      for (op_run& o : k.ops) {
        std::cout << "== " << k.name << ' ' << to_string(o.op) << " at " << to_string(k.level)
                  << '\n';
        run_problem(k, s, o.op, *s.only, o.stats, &std::cout);
        print_op(std::cout, k, o, s);
      }
    }
  } else {
    for (kernel_run& k : runs) {
      for (op_run& o : k.ops) {
        const auto t0 = std::chrono::steady_clock::now();
        o.stats = run_workers(k, s, o.op);
        o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        print_op(std::cout, k, o, s);
        std::cout.flush();
        std::fprintf(stderr, "%s %s: %lld problems in %.1f s: %.1f problems/s (%d job%s, %s)\n",
                     k.name.c_str(), std::string(to_string(o.op)).c_str(),
                     static_cast<long long>(o.stats.problems), o.seconds,
                     static_cast<double>(o.stats.problems) / std::max(o.seconds, 1e-9), s.jobs,
                     s.jobs == 1 ? "" : "s", s.isolate ? "isolated" : "no isolation");
      }
    }
  }
  std::int64_t failed = 0, problems = 0;
  for (const kernel_run& k : runs) {
    const kernel_stats all = k.total();
    failed += all.failed_problems;
    problems += all.problems;
  }
  if (!s.markdown.empty()) {
    std::ofstream f(s.markdown, std::ios::binary);
    write_markdown(f, s, runs);
    if (!f) {
      std::cerr << "bnoracle_campaign: cannot write " << s.markdown << '\n';
      return k_exit_usage;
    }
  }
  if (!s.json.empty()) {
    std::ofstream f(s.json, std::ios::binary);
    f << to_json_report(s, runs).dump(2) << '\n';
    if (!f) {
      std::cerr << "bnoracle_campaign: cannot write " << s.json << '\n';
      return k_exit_usage;
    }
  }
  std::cout << (failed == 0 ? "campaign: PASS, " : "campaign: FAIL, ") << failed
            << " failing problems of " << problems << '\n';
  return failed == 0 ? k_exit_ok : k_exit_failed;
}

}  // namespace
}  // namespace bnoracle::campaign

int main(int argc, char** argv) {
  using namespace bnoracle::campaign;
  settings s;
  try {
    s = parse_args(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "bnoracle_campaign: " << e.what() << "\n\n";
    print_usage(std::cerr);
    return k_exit_usage;
  }
  if (s.help) {
    print_usage(std::cout);
    return k_exit_ok;
  }
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::cerr << "bnoracle_campaign: internal error: " << e.what() << '\n';
    return k_exit_internal;
  }
}
