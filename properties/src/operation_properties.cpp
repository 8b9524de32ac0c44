// The properties of batch norm's two operations besides the modes: folding into the preceding
// layer and the SyncBN statistic merge. Each draws the operation's inputs adversarially
// (generators.hpp: fold_data_of, syncbn_data_of), makes the same fixture `bnoracle check` makes
// of its catalog cases (exact outputs and their bounds, fixture.hpp), calls the kernel's
// operation and judges every output against that fixture, as `bnoracle verify` does.
#include "bnoracle/fixture_source.hpp"
#include "support.hpp"

#include <rapidcheck.h>

#include <sstream>
#include <string>

namespace bnoracle::property_support {
namespace {

// The seed fixtures are written with: it only appears in the fixture's header.
constexpr std::uint64_t k_fixture_seed = 0;

// Judges the outputs of one call against the fixture's expected outputs; fails the case with
// the worst element of the first output beyond its bound.
void judge_operation(const context& c, const std::string& fixture_text, const op_result& r,
                     const char* operation) {
  if (!r.run.ok()) {
    c.faulted = true;
    fail(std::string(operation) + ": kernel fault: " + r.describe());
  }
  if (r.status == BNK_UNSUPPORTED) discard(std::string(operation) + ": " + r.describe());
  if (r.status != BNK_OK)
    fail(std::string(operation) + ": " + r.describe() + " on a valid problem");
  const fixture f = parse_fixture(fixture_text, operation);
  const auto lvl = static_cast<std::size_t>(c.opt.level);
  for (const fixture_output& e : f.expected) {
    const auto it = r.outputs.find(e.name);
    if (it == r.outputs.end()) fail(std::string(operation) + ": output " + e.name + " is missing");
    if (it->second.size() != e.values.size()) {
      fail(std::string(operation) + ": " + e.name + " has " + std::to_string(it->second.size()) +
           " elements, expected " + std::to_string(e.values.size()));
    }
    const output_result o = judge_elements(e.name, fixture_source(e, it->second), c.opt.level, 1.0);
    if (!o.passed[lvl]) fail_output(c, operation, o);
  }
}

// Odd cases in the `any` domain, as reference_agreement draws them half of the time.
gen::data_domain domain_of_case() {
  return *rc::gen::inRange(0, 2) == 0 ? gen::data_domain::sound : gen::data_domain::any;
}

void prop_fold_agreement(const context& c) {
  const fold_data d = *gen::fold_data_of(domain_of_case());
  std::ostringstream shown;
  gen::show_fold_data(d, shown);
  c.last_case = shown.str();
  const fixture_file file = fold_fixture(k_fixture_seed, "property/fold_agreement", d);
  fold_request q;
  q.out_channels = d.out_channels;
  q.fan_in = d.fan_in;
  q.weight = d.weight;
  q.bias = d.bias;
  q.gamma = d.gamma;
  q.beta = d.beta;
  q.running_mean = d.running_mean;
  q.running_var = d.running_var;
  q.eps = d.eps;
  judge_operation(c, file.text, invoke_fold(c.kernel, q, c.call), "fold");
}

void prop_syncbn_merge_agreement(const context& c) {
  const convention* cv = find_convention(c.convention);
  if (cv == nullptr || !cv->running_stats) {
    discard("the convention " + c.convention + " keeps no running statistics: no merge");
  }
  const syncbn_data d = *gen::syncbn_data_of(c.convention, domain_of_case(),
                                             c.info.supports_cumulative && cv->cumulative);
  std::ostringstream shown;
  gen::show_syncbn_data(d, shown);
  c.last_case = shown.str();
  const fixture_file file = syncbn_fixture(k_fixture_seed, "property/syncbn_merge_agreement", d);
  syncbn_request q;
  q.channels = d.channels;
  q.counts = d.counts;
  q.shard_mean = d.shard_mean;
  q.shard_var = d.shard_var;
  q.eps = d.eps;
  q.momentum = d.momentum;
  q.track_running = true;
  q.running_mean = d.running_mean;
  q.running_var = d.running_var;
  q.num_batches_tracked = d.num_batches_tracked;
  const op_result r = invoke_syncbn_merge(c.kernel, q, c.call);
  judge_operation(c, file.text, r, "syncbn_merge");
  if (r.num_batches_tracked != d.num_batches_tracked + 1) {
    fail("syncbn_merge: num_batches_tracked " + std::to_string(r.num_batches_tracked) +
         ", expected " + std::to_string(d.num_batches_tracked + 1));
  }
}

constexpr property_entry k_entries[] = {
    {{"fold_agreement",
      "folding into the preceding layer agrees with the exact fold (variances below, near and "
      "far above eps, b - mean cancelling, NaN/Inf in a channel)",
      false, property_operation::fold},
     prop_fold_agreement},
    {{"syncbn_merge_agreement",
      "the SyncBN merge of shard statistics agrees with the exact merge (empty and one-element "
      "shards, near-constant shards, shard means far apart, eps near the shard variances)",
      false, property_operation::syncbn_merge},
     prop_syncbn_merge_agreement},
};

}  // namespace

std::span<const property_entry> operation_property_entries() {
  return k_entries;
}

}  // namespace bnoracle::property_support
