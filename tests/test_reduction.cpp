// The reduction map against the definitions of each normalization, stated over coordinates.
//
// The expectations do not use the map's formulas: elements are enumerated by nested loops over
// (n, c, spatial...) with their own logical index and memory offset, and two elements must share
// a statistic group exactly when the op's definition says they do (same channel for batch norm,
// same example and channel for instance norm, same example and channel group for group norm,
// the same leading coordinates for layer and RMS norm), and a γ/β entry exactly when they agree
// on the parameter's axes.
#include "bnoracle/error_model.hpp"
#include "bnoracle/reduction.hpp"
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace bnoracle {
namespace {

// An element by its coordinates: axes[0] = n, axes[1] = c, axes[2...] = spatial.
struct element {
  std::vector<std::int64_t> axes;
  std::int64_t logical;
  std::int64_t offset;
};

std::vector<element> enumerate(const bn_problem& p) {
  const geometry g(p);
  std::vector<std::int64_t> extents{p.n, p.c};
  extents.insert(extents.end(), p.spatial.begin(), p.spatial.end());
  std::vector<element> out;
  std::vector<std::int64_t> idx(extents.size(), 0);
  std::int64_t logical = 0;
  if (g.elements() == 0) return out;
  for (;;) {
    std::int64_t off = 0;
    for (std::size_t k = 0; k < idx.size(); ++k) off += idx[k] * g.strides()[k];
    out.push_back({idx, logical++, off});
    std::size_t k = idx.size();
    while (k > 0 && ++idx[k - 1] == extents[k - 1]) idx[--k] = 0;
    if (k == 0) break;
  }
  return out;
}

// The coordinates that single out an element's statistic group, by the op's definition.
std::vector<std::int64_t> group_key(const op_desc& op, const element& e, std::int64_t channels) {
  const std::vector<std::int64_t>& a = e.axes;
  switch (op.kind) {
    case op_kind::batch_norm:
      return {a[1]};
    case op_kind::instance_norm:
      return {a[0], a[1]};
    case op_kind::group_norm:
      return {a[0], a[1] / (channels / op.groups)};
    case op_kind::layer_norm:
    case op_kind::rms_norm:
      // The leading axes: all but the last k.
      return {a.begin(), a.end() - op.normalized_axes};
  }
  return {};
}

std::vector<std::int64_t> param_key(const op_desc& op, const element& e) {
  const std::vector<std::int64_t>& a = e.axes;
  switch (op.params) {
    case param_placement::per_channel:
      return {a[1]};
    case param_placement::per_normalized_element:
      return {a.end() - op.normalized_axes, a.end()};
    case param_placement::none:
      break;
  }
  return {};
}

struct map_case {
  std::string name;
  op_desc op;
  bn_problem problem;
};

// A shape in the dense channels-first layout unless another is named; explicit strides make it
// `strided`.
bn_problem shape(std::int64_t n, std::int64_t c, std::vector<std::int64_t> spatial,
                 std::optional<layout> l = std::nullopt, std::vector<std::int64_t> strides = {}) {
  bn_problem p;
  p.n = n;
  p.c = c;
  p.spatial = std::move(spatial);
  p.mem_layout = strides.empty() ? l.value_or(dense_layout(p.spatial.size())) : layout::strided;
  p.strides = std::move(strides);
  return p;
}

std::vector<map_case> cases() {
  return {
      {"batch_nchw", batch_norm_op(), shape(2, 3, {2, 2})},
      {"batch_nhwc", batch_norm_op(), shape(3, 2, {1, 3}, layout::nhwc)},
      {"batch_strided", batch_norm_op(), shape(2, 2, {3}, std::nullopt, {-1, 8, 2})},
      {"batch_nc", batch_norm_op(), shape(5, 4, {})},
      // Spatial dimensions stored transposed: the offset is not linear in the spatial index.
      {"batch_spatial_transposed", batch_norm_op(),
       shape(2, 2, {2, 3}, std::nullopt, {12, 6, 1, 2})},
      {"layer_spatial_transposed", layer_norm_op(2),
       shape(2, 2, {2, 3}, std::nullopt, {12, 6, 1, 2})},
      {"instance", instance_norm_op(), shape(2, 3, {2, 2})},
      {"instance_ndhwc", instance_norm_op(true), shape(2, 2, {2, 1, 3}, layout::ndhwc)},
      {"group_2", group_norm_op(2), shape(2, 4, {3})},
      {"group_1", group_norm_op(1), shape(3, 3, {2, 2})},
      {"group_per_channel", group_norm_op(4), shape(2, 4, {2, 1}, layout::nhwc)},
      {"layer_last_axis", layer_norm_op(1), shape(2, 3, {4})},
      {"layer_two_axes", layer_norm_op(2), shape(2, 3, {2, 2})},
      {"layer_all_axes", layer_norm_op(3), shape(2, 3, {2, 2}, layout::nhwc)},
      {"layer_channels", layer_norm_op(1), shape(4, 5, {})},
      {"rms_last_axis", rms_norm_op(1), shape(3, 2, {4}, std::nullopt, {1, 3, 6})},
      {"rms_no_params",
       [] {
         op_desc o = rms_norm_op(2);
         o.params = param_placement::none;
         return o;
       }(),
       shape(2, 2, {3})},
  };
}

TEST(ReductionMap, GroupsParametersAndOffsetsFollowTheDefinitions) {
  for (const map_case& mc : cases()) {
    SCOPED_TRACE(mc.name);
    const geometry g(mc.problem);
    const reduction_map m(mc.op, g);
    const std::vector<element> all = enumerate(mc.problem);
    ASSERT_EQ(static_cast<std::int64_t>(all.size()), g.elements());

    // Number the groups and parameters the definitions induce, in order of first appearance.
    std::map<std::vector<std::int64_t>, std::int64_t> groups;
    std::map<std::vector<std::int64_t>, std::int64_t> params;
    std::map<std::int64_t, std::int64_t> group_of_map;  // map's group -> definition's
    std::map<std::int64_t, std::int64_t> param_of_map;
    std::map<std::int64_t, std::int64_t> members;
    for (const element& e : all) {
      const reduction_map::position at = m.locate(e.logical);
      EXPECT_EQ(at.offset, e.offset) << "logical " << e.logical;
      const auto key = group_key(mc.op, e, mc.problem.c);
      const auto [it, fresh] = groups.emplace(key, static_cast<std::int64_t>(groups.size()));
      // The map's group and the definition's must be the same partition: a bijection.
      const auto [mit, mfresh] = group_of_map.emplace(at.group, it->second);
      EXPECT_EQ(mit->second, it->second) << "logical " << e.logical;
      EXPECT_EQ(fresh, mfresh) << "logical " << e.logical;
      EXPECT_GE(at.group, 0);
      EXPECT_LT(at.group, m.groups());
      ++members[at.group];
      if (mc.op.params == param_placement::none) {
        EXPECT_EQ(at.param, -1);
      } else {
        const auto pkey = param_key(mc.op, e);
        const auto [pit, pfresh] = params.emplace(pkey, static_cast<std::int64_t>(params.size()));
        const auto [qit, qfresh] = param_of_map.emplace(at.param, pit->second);
        EXPECT_EQ(qit->second, pit->second) << "logical " << e.logical;
        EXPECT_EQ(pfresh, qfresh) << "logical " << e.logical;
        EXPECT_GE(at.param, 0);
        EXPECT_LT(at.param, m.params());
      }
    }
    EXPECT_EQ(m.groups(), static_cast<std::int64_t>(groups.size()));
    EXPECT_EQ(m.params(), static_cast<std::int64_t>(params.size()));
    for (const auto& [grp, count] : members) EXPECT_EQ(count, m.group_size()) << "group " << grp;

    // for_each_in_group visits exactly the group's members, each once, with their offsets.
    std::int64_t visited = 0;
    for (std::int64_t grp = 0; grp < m.groups(); ++grp) {
      std::set<std::int64_t> seen;
      m.for_each_in_group(grp, [&](std::int64_t off, std::int64_t li) {
        const reduction_map::position at = m.locate(li);
        EXPECT_EQ(at.group, grp);
        EXPECT_EQ(at.offset, off);
        EXPECT_TRUE(seen.insert(li).second) << "logical " << li << " visited twice";
        ++visited;
      });
      EXPECT_EQ(static_cast<std::int64_t>(seen.size()), m.group_size());
      // member(grp, k) is the k-th element of the group in the order for_each_in_group visits.
      std::int64_t k = 0;
      m.for_each_in_group(grp, [&](std::int64_t, std::int64_t li) {
        EXPECT_EQ(m.member(grp, k++), li) << "group " << grp;
      });
    }
    EXPECT_EQ(visited, g.elements());
  }
}

// The cursor gives, element after element from any start, the position locate gives (which the
// test above checks against the definitions): group, γ/β index and offset.
TEST(ReductionMap, CursorWalksEveryElementToTheSamePositionAsLocate) {
  for (const map_case& mc : cases()) {
    SCOPED_TRACE(mc.name);
    const geometry g(mc.problem);
    const reduction_map m(mc.op, g);
    for (std::int64_t first = 0; first < g.elements(); ++first) {
      reduction_map::cursor at(m, first);
      for (std::int64_t li = first; li < g.elements(); ++li, at.next()) {
        const reduction_map::position want = m.locate(li);
        ASSERT_EQ(at->group, want.group) << "from " << first << ", logical " << li;
        ASSERT_EQ(at->param, want.param) << "from " << first << ", logical " << li;
        ASSERT_EQ(at->offset, want.offset) << "from " << first << ", logical " << li;
      }
    }
  }
}

TEST(ReductionMap, EmptyBatchHasChannelsButNoElements) {
  const reduction_map m(batch_norm_op(), geometry(shape(0, 3, {2})));
  EXPECT_EQ(m.groups(), 3);
  EXPECT_EQ(m.group_size(), 0);
  int calls = 0;
  m.for_each_in_group(1, [&](std::int64_t, std::int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  const reduction_map l(layer_norm_op(1), geometry(shape(0, 3, {2})));
  EXPECT_EQ(l.groups(), 0);
}

TEST(ReductionMap, RejectsOpsThatDoNotFitTheShape) {
  EXPECT_THROW(reduction_map(group_norm_op(3), geometry(shape(2, 4, {2}))), invalid_problem);
  EXPECT_THROW(reduction_map(layer_norm_op(3), geometry(shape(2, 4, {2}))), invalid_problem);
  EXPECT_NO_THROW(reduction_map(layer_norm_op(2), geometry(shape(2, 4, {2}))));
}

TEST(OpDescriptor, ValidatesItsOwnFields) {
  EXPECT_NO_THROW(validate(batch_norm_op()));
  EXPECT_NO_THROW(validate(layer_norm_op(2)));
  EXPECT_NO_THROW(validate(rms_norm_op(1)));
  EXPECT_NO_THROW(validate(group_norm_op(8)));
  EXPECT_NO_THROW(validate(instance_norm_op(true)));
  EXPECT_THROW(validate(layer_norm_op(0)), invalid_problem);
  EXPECT_THROW(validate(group_norm_op(0)), invalid_problem);
  op_desc o = batch_norm_op();
  o.params = param_placement::per_normalized_element;
  EXPECT_THROW(validate(o), invalid_problem);
  o = rms_norm_op(1);
  o.centred = true;
  EXPECT_THROW(validate(o), invalid_problem);
  o = layer_norm_op(1);
  o.running_stats = true;
  EXPECT_THROW(validate(o), invalid_problem);
  o = batch_norm_op();
  o.params = param_placement::none;
  o.weight_offset = true;
  EXPECT_THROW(validate(o), invalid_problem);
}

TEST(OpDescriptor, DescribesWhatDiffersFromTheUsualOptions) {
  EXPECT_EQ(describe(batch_norm_op()), "batch_norm");
  EXPECT_EQ(describe(layer_norm_op(2)), "layer_norm(axes=2)");
  EXPECT_EQ(describe(group_norm_op(4)), "group_norm(groups=4)");
  EXPECT_EQ(describe(instance_norm_op(true)), "instance_norm(running_stats)");
  op_desc o = rms_norm_op(1);
  o.weight_offset = true;
  EXPECT_EQ(describe(o), "rms_norm(axes=1,weight_offset)");
  for (const op_kind k : {op_kind::batch_norm, op_kind::layer_norm, op_kind::rms_norm,
                          op_kind::group_norm, op_kind::instance_norm}) {
    EXPECT_EQ(parse_op_kind(to_string(k)), k);
  }
  EXPECT_FALSE(parse_op_kind("batchnorm").has_value());
}

TEST(DataTypes, OneTypePerRole) {
  data_types t;
  EXPECT_TRUE(t.all_float32());
  EXPECT_EQ(describe(t), "float32");
  t.data = format_id::bfloat16;
  EXPECT_FALSE(t.all_float32());
  EXPECT_EQ(t.of(format_role::data), format_id::bfloat16);
  EXPECT_EQ(t.of(format_role::statistics), format_id::float32);
  EXPECT_EQ(describe(t), "data=bfloat16,parameters=float32,statistics=float32");
}

TEST(ReductionMap, ReferenceTakesValuesOfTheTypesAndRefusesInferenceWithoutRunningStatistics) {
  // Other data types are computed from the values as given (which must be values of their
  // formats: Semantics.InputsMustBeValuesOfTheirFormats) and rounded to them; the inference
  // modes of an op that keeps no running statistics are refused.
  bn_problem p = shape(2, 2, {2});
  std::vector<float> x(8, 1.0F);
  bn_inputs in;
  in.src = x.data();
  in.diff_dst = x.data();
  p.types.data = format_id::float16;
  EXPECT_NO_THROW(reference(p, bn_mode::forward_training, in));
  p.types = data_types{};
  p.op = layer_norm_op(1);
  EXPECT_NO_THROW(reference(p, bn_mode::forward_training, in));
  EXPECT_NO_THROW(reference(p, bn_mode::backward_training, in));
  EXPECT_THROW(reference(p, bn_mode::forward_inference, in), invalid_problem);
  EXPECT_THROW(reference(p, bn_mode::backward_inference, in), invalid_problem);
  p.op = instance_norm_op(true);
  const std::vector<float> rm(2, 0.0F);
  const std::vector<float> rv(2, 1.0F);
  in.running_mean = rm;
  in.running_var = rv;
  EXPECT_NO_THROW(reference(p, bn_mode::forward_inference, in));
  EXPECT_EQ(reference(p, bn_mode::forward_training, in).output_size(output_id::running_mean), 2);
  p.op = instance_norm_op(false);
  EXPECT_THROW(reference(p, bn_mode::forward_training, in), invalid_problem);
}

// β without γ (PyTorch's layer_norm(x, shape, weight=None, bias=b)) is γ = 1: the same exact
// values, so the same goldens, for ops whose γ/β vary inside a statistic group — β indexed per
// element, not per group — and shapes with fewer γ/β entries than channels (L < C). The error
// model's bounds of the per-element outputs are finite and no larger than with γ = 1 given
// explicitly (which adds the rounding of γ·dy).
TEST(ReductionMap, BetaWithoutGammaGivesTheGoldensOfGammaOne) {
  struct op_case {
    std::string name;
    op_desc op;
    bn_problem problem;
  };
  const std::vector<op_case> ops = {
      {"layer_norm", layer_norm_op(1), shape(2, 8, {3})},
      {"rms_norm", rms_norm_op(1), shape(2, 8, {3})},
      {"layer_two_axes", layer_norm_op(2), shape(3, 2, {2, 3})},
      {"group_norm", group_norm_op(2), shape(2, 4, {3})},
  };
  for (const op_case& oc : ops) {
    SCOPED_TRACE(oc.name);
    bn_problem p = oc.problem;
    p.op = oc.op;
    p.eps = 1e-3;
    const geometry g(p);
    const reduction_map m(p.op, g);
    std::vector<float> x(static_cast<std::size_t>(g.elements()));
    std::vector<float> dy(x.size());
    std::vector<float> beta(static_cast<std::size_t>(m.params()));
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = static_cast<float>((i * 7 + 3) % 11) * 0.25F - 1.0F;
      dy[i] = static_cast<float>((i * 5 + 1) % 13) * 0.125F - 0.75F;
    }
    for (std::size_t j = 0; j < beta.size(); ++j) beta[j] = 0.5F + static_cast<float>(j);
    const std::vector<float> ones(beta.size(), 1.0F);
    for (const bn_mode mode : {bn_mode::forward_training, bn_mode::backward_training}) {
      SCOPED_TRACE(std::string(to_string(mode)));
      bn_inputs only_beta;
      only_beta.src = x.data();
      only_beta.diff_dst = dy.data();
      only_beta.beta = beta;
      bn_inputs both = only_beta;
      both.gamma = ones;
      const reference a(p, mode, only_beta);
      const reference b(p, mode, both);
      const error_model ea(a, only_beta, data_tier::general);
      const error_model eb(b, both, data_tier::general);
      for (const output_id id : a.outputs()) {
        if (!b.has_output(id)) continue;
        SCOPED_TRACE(std::string(to_string(id)));
        const std::vector<golden> ga = a.goldens(id);
        const std::vector<golden> gb = b.goldens(id);
        ASSERT_EQ(ga.size(), gb.size());
        for (std::size_t i = 0; i < ga.size(); ++i) {
          ASSERT_EQ(ga[i].cls, gb[i].cls) << "element " << i;
          ASSERT_EQ(ga[i].value, gb[i].value) << "element " << i;
        }
        if (!per_element(id)) continue;
        for (std::int64_t i = 0; i < a.output_size(id); ++i) {
          for (const accuracy_level l :
               {accuracy_level::strict, accuracy_level::standard, accuracy_level::lenient}) {
            const double bound_a = ea.bound(id, i, l);
            ASSERT_TRUE(std::isfinite(bound_a)) << "element " << i;
            ASSERT_LE(bound_a, eb.bound(id, i, l)) << "element " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace bnoracle
