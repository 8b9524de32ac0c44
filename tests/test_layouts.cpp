// Memory layout must not change any result.
//
// The reference reads inputs through strides and writes goldens in the canonical logical order,
// so the same logical tensor stored in any layout — named, transposed, padded, reversed with
// negative strides, or broadcast with a zero stride — must give identical goldens, bit for bit,
// in every mode. The strides used to scatter the logical tensor into memory are computed here
// from the permutation each layout stands for, not taken from the library's geometry.
#include "bnoracle/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using bnoracle::bn_mode;
using bnoracle::golden;
using bnoracle::layout;

constexpr bn_mode k_modes[] = {bn_mode::forward_training, bn_mode::forward_inference,
                               bn_mode::backward_training, bn_mode::backward_inference};

std::string seed_text(std::uint32_t seed) {
  return "std::mt19937 seed " + std::to_string(seed);
}

// A logical tensor (n, c, spatial...) in canonical row-major order, with every input of every
// mode.
struct logical_case {
  std::vector<std::int64_t> extents;  // n, c, spatial...
  std::vector<float> x, dy, gamma, beta, run_mean, run_var;

  [[nodiscard]] std::size_t rank() const { return extents.size() - 2; }
  [[nodiscard]] std::size_t size() const {
    std::size_t s = 1;
    for (const auto e : extents) s *= static_cast<std::size_t>(e);
    return s;
  }
  // The multi-index (n, c, spatial...) of canonical index li.
  [[nodiscard]] std::vector<std::int64_t> index_of(std::size_t li) const {
    std::vector<std::int64_t> idx(extents.size());
    auto rest = static_cast<std::int64_t>(li);
    for (std::size_t d = extents.size(); d-- > 0;) {
      idx[d] = rest % extents[d];
      rest /= extents[d];
    }
    return idx;
  }
};

logical_case random_case(std::mt19937& rng, std::vector<std::int64_t> extents) {
  logical_case t;
  t.extents = std::move(extents);
  const auto C = static_cast<std::size_t>(t.extents[1]);
  std::uniform_real_distribution<float> unit(-1.0F, 1.0F);
  std::uniform_real_distribution<float> positive(0.25F, 2.0F);
  // Per-channel offsets and scales, so that a channel mix-up changes the statistics.
  std::vector<float> offset(C);
  std::vector<float> scale(C);
  for (std::size_t c = 0; c < C; ++c) {
    offset[c] = 3.0F * unit(rng) + static_cast<float>(c);
    scale[c] = positive(rng);
    t.gamma.push_back(positive(rng) * (c % 2 == 0 ? 1.0F : -1.0F));
    t.beta.push_back(unit(rng));
    t.run_mean.push_back(offset[c] + 0.1F * unit(rng));
    t.run_var.push_back(scale[c] * scale[c] * positive(rng));
  }
  for (std::size_t li = 0; li < t.size(); ++li) {
    const auto c = static_cast<std::size_t>(t.index_of(li)[1]);
    t.x.push_back(offset[c] + scale[c] * unit(rng));
    t.dy.push_back(unit(rng));
  }
  return t;
}

// The same case with every batch entry a copy of entry 0: what a stride-0 batch dimension shows.
logical_case broadcast_of_first(const logical_case& t) {
  logical_case b = t;
  const std::size_t per_entry = t.size() / static_cast<std::size_t>(t.extents[0]);
  for (std::size_t li = per_entry; li < t.size(); ++li) {
    b.x[li] = t.x[li % per_entry];
    b.dy[li] = t.dy[li % per_entry];
  }
  return b;
}

// Dense strides for the dimensions stored in `order` (outermost first), each dimension's stride
// the span of the dimensions inside it plus `pad` unused elements (a padded buffer: rows, planes
// and so on each followed by a gap). Returned per logical dimension.
std::vector<std::int64_t> strides_for(const std::vector<std::int64_t>& extents,
                                      const std::vector<std::size_t>& order, std::int64_t pad = 0) {
  std::vector<std::int64_t> strides(extents.size(), 0);
  std::int64_t s = 1;
  for (std::size_t k = order.size(); k-- > 0;) {
    strides[order[k]] = s;
    s = s * extents[order[k]] + pad;
  }
  return strides;
}

std::vector<std::size_t> identity_order(std::size_t dims) {
  std::vector<std::size_t> order(dims);
  for (std::size_t d = 0; d < dims; ++d) order[d] = d;
  return order;
}

// n, spatial..., c: the channels-last order of nhwc and ndhwc.
std::vector<std::size_t> channels_last_order(std::size_t dims) {
  std::vector<std::size_t> order = {0};
  for (std::size_t d = 2; d < dims; ++d) order.push_back(d);
  order.push_back(1);
  return order;
}

// c, n, then the spatial dimensions reversed: a transposed view.
std::vector<std::size_t> transposed_order(std::size_t dims) {
  std::vector<std::size_t> order = {1, 0};
  for (std::size_t d = dims; d-- > 2;) order.push_back(d);
  return order;
}

// The logical tensor written into a fresh buffer at the offsets the strides give. Memory that no
// logical element maps to holds NaN, so a reference reading outside the view poisons a channel
// and shows. `origin` is the buffer index of logical element 0.
struct stored {
  std::vector<float> src, diff_dst;
  std::size_t origin = 0;
};

stored scatter(const logical_case& t, const std::vector<std::int64_t>& strides) {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  for (std::size_t d = 0; d < strides.size(); ++d) {
    const std::int64_t span = (t.extents[d] - 1) * strides[d];
    (span < 0 ? lo : hi) += span;
  }
  stored m;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  m.src.assign(static_cast<std::size_t>(hi - lo + 1), nan);
  m.diff_dst.assign(m.src.size(), nan);
  m.origin = static_cast<std::size_t>(-lo);
  std::vector<bool> written(m.src.size(), false);
  for (std::size_t li = 0; li < t.size(); ++li) {
    const auto idx = t.index_of(li);
    std::int64_t off = -lo;
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
    const auto at = static_cast<std::size_t>(off);
    // Aliased elements (stride 0) must carry equal values, or the view cannot represent t.
    if (written[at]) {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(m.src[at]), std::bit_cast<std::uint32_t>(t.x[li]));
      EXPECT_EQ(std::bit_cast<std::uint32_t>(m.diff_dst[at]),
                std::bit_cast<std::uint32_t>(t.dy[li]));
    }
    m.src[at] = t.x[li];
    m.diff_dst[at] = t.dy[li];
    written[at] = true;
  }
  return m;
}

// A memory layout of the logical case: a named layout, or `strided` with explicit strides.
struct view {
  std::string name;
  layout mem_layout = layout::strided;
  std::vector<std::int64_t> strides;  // what we scatter with (and pass, for `strided`)
};

view canonical_view(const logical_case& t) {
  const std::size_t dims = t.extents.size();
  return {std::string(bnoracle::to_string(bnoracle::dense_layout(t.rank()))),
          bnoracle::dense_layout(t.rank()), strides_for(t.extents, identity_order(dims))};
}

std::vector<bnoracle::reference> run_all_modes(const logical_case& t, const view& v,
                                               const stored& m) {
  bnoracle::bn_problem p;
  p.n = t.extents[0];
  p.c = t.extents[1];
  p.spatial.assign(t.extents.begin() + 2, t.extents.end());
  p.mem_layout = v.mem_layout;
  if (v.mem_layout == layout::strided) p.strides = v.strides;
  p.eps = 1e-3;
  p.convention = "pytorch";
  std::vector<bnoracle::reference> refs;
  for (const bn_mode mode : k_modes) {
    bnoracle::bn_inputs in;
    in.src = m.src.data() + m.origin;
    in.diff_dst = m.diff_dst.data() + m.origin;
    in.gamma = t.gamma;
    in.beta = t.beta;
    // Training gets running statistics too, so that running_mean and running_var are compared.
    in.running_mean = t.run_mean;
    in.running_var = t.run_var;
    in.num_batches_tracked = 2;
    refs.emplace_back(p, mode, in);
  }
  return refs;
}

// Every output of every mode equal, bit for bit: value encoding, class, ulp exponent and
// residual. The residual is a function of the exact value alone, which the layout cannot change.
void expect_same_goldens(const std::vector<bnoracle::reference>& want,
                         const std::vector<bnoracle::reference>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    SCOPED_TRACE(std::string(bnoracle::to_string(want[k].mode())));
    const auto names = want[k].output_names();
    ASSERT_EQ(names, got[k].output_names());
    for (const auto name : names) {
      const std::vector<golden> a = want[k].goldens(name);
      const std::vector<golden> b = got[k].goldens(name);
      ASSERT_EQ(a.size(), b.size()) << name;
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < a.size(); ++i) {
        const bool same =
            std::bit_cast<std::uint32_t>(a[i].value) == std::bit_cast<std::uint32_t>(b[i].value) &&
            a[i].cls == b[i].cls && a[i].ulp_exp == b[i].ulp_exp &&
            std::bit_cast<std::uint64_t>(a[i].residual) ==
                std::bit_cast<std::uint64_t>(b[i].residual);
        if (!same && ++mismatches <= 5) {
          ADD_FAILURE() << name << "[" << i << "]: want " << a[i].value << " (class "
                        << static_cast<int>(a[i].cls) << "), got " << b[i].value << " (class "
                        << static_cast<int>(b[i].cls) << ")";
        }
      }
      EXPECT_EQ(mismatches, 0U) << name;
    }
  }
}

// The goldens of `t` stored in `v` against those of `t` stored densely in canonical order.
void expect_view_matches_canonical(const logical_case& t, const view& v) {
  std::string shape;
  for (const auto e : t.extents) shape += (shape.empty() ? "" : "x") + std::to_string(e);
  std::string strides;
  for (const auto e : v.strides) strides += (strides.empty() ? "" : ",") + std::to_string(e);
  SCOPED_TRACE("view " + v.name + ", shape " + shape + ", strides " + strides);
  const view c = canonical_view(t);
  // The references read their inputs again when goldens are asked for: keep the buffers alive.
  const stored dense = scatter(t, c.strides);
  const auto want = run_all_modes(t, c, dense);
  const stored m = scatter(t, v.strides);
  const auto got = run_all_modes(t, v, m);
  expect_same_goldens(want, got);
}

// One shape per spatial rank, 50 to 360 elements each: several channels, uneven extents so that
// a swapped pair of dimensions changes the offsets.
std::vector<std::vector<std::int64_t>> shapes() {
  return {{17, 3}, {4, 5, 7}, {3, 4, 5, 6}, {2, 3, 3, 4, 5}};
}

TEST(Layouts, NamedLayoutsGiveTheSameGoldensAsTheCanonicalOrder) {
  constexpr std::uint32_t seed = 7001;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    const logical_case t = random_case(rng, ext);
    const std::size_t dims = ext.size();
    expect_view_matches_canonical(t, canonical_view(t));
    if (t.rank() == 2) {
      expect_view_matches_canonical(
          t, {"nhwc", layout::nhwc, strides_for(t.extents, channels_last_order(dims))});
    }
    if (t.rank() == 3) {
      expect_view_matches_canonical(
          t, {"ndhwc", layout::ndhwc, strides_for(t.extents, channels_last_order(dims))});
    }
    // The canonical and channels-last strides given explicitly: `strided` is the general path.
    expect_view_matches_canonical(
        t, {"strided canonical", layout::strided, strides_for(t.extents, identity_order(dims))});
    expect_view_matches_canonical(t, {"strided channels-last", layout::strided,
                                      strides_for(t.extents, channels_last_order(dims))});
  }
}

TEST(Layouts, TransposedStridesGiveTheSameGoldensAsTheDenseTensor) {
  constexpr std::uint32_t seed = 7002;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    const logical_case t = random_case(rng, ext);
    expect_view_matches_canonical(
        t, {"transposed", layout::strided, strides_for(t.extents, transposed_order(ext.size()))});
  }
}

// Padding between rows is never read: it holds NaN, which would poison the channel that read it.
TEST(Layouts, PaddedRowsGiveTheSameGoldensAsTheDenseTensor) {
  constexpr std::uint32_t seed = 7003;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    const logical_case t = random_case(rng, ext);
    const std::size_t dims = ext.size();
    expect_view_matches_canonical(
        t, {"padded canonical", layout::strided, strides_for(t.extents, identity_order(dims), 3)});
    expect_view_matches_canonical(t, {"padded channels-last", layout::strided,
                                      strides_for(t.extents, channels_last_order(dims), 2)});
  }
}

// Reversed memory read with negative strides from its last element.
TEST(Layouts, NegativeStridesOverReversedMemoryGiveTheSameGoldensAsTheDenseTensor) {
  constexpr std::uint32_t seed = 7004;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    const logical_case t = random_case(rng, ext);
    auto strides = strides_for(t.extents, identity_order(ext.size()));
    for (auto& s : strides) s = -s;
    const stored m = scatter(t, strides);
    // The buffer is the canonical buffer reversed, which makes the view what its name says.
    std::vector<float> reversed_x(t.x.rbegin(), t.x.rend());
    ASSERT_EQ(m.src.size(), t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(m.src[i]),
                std::bit_cast<std::uint32_t>(reversed_x[i]));
    }
    expect_view_matches_canonical(t, {"reversed", layout::strided, strides});
    // Only the spatial dimensions reversed, the batch and channels forward.
    auto mixed = strides_for(t.extents, identity_order(ext.size()));
    for (std::size_t d = 2; d < mixed.size(); ++d) mixed[d] = -mixed[d];
    expect_view_matches_canonical(t, {"spatially reversed", layout::strided, mixed});
  }
}

// A batch dimension of stride 0 repeats entry 0: the goldens are those of the dense tensor whose
// entries are all copies of entry 0, in every mode (batch statistics then weigh each copy).
TEST(Layouts, StrideZeroBroadcastGivesTheSameGoldensAsTheReplicatedTensor) {
  constexpr std::uint32_t seed = 7005;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    const logical_case t = broadcast_of_first(random_case(rng, ext));
    auto strides = strides_for(t.extents, identity_order(ext.size()));
    strides[0] = 0;
    expect_view_matches_canonical(t, {"broadcast batch", layout::strided, strides});
    auto last = strides_for(t.extents, channels_last_order(ext.size()));
    last[0] = 0;
    expect_view_matches_canonical(t, {"broadcast batch, channels-last", layout::strided, last});
  }
}

// Non-finite inputs poison their own channel (training) or element (inference) wherever they sit
// in memory: the poisoned positions must be the same logical ones in every layout.
TEST(Layouts, NonFiniteInputsPoisonTheSameLogicalPositionsInEveryLayout) {
  constexpr std::uint32_t seed = 7006;
  SCOPED_TRACE(seed_text(seed));
  std::mt19937 rng(seed);
  for (const auto& ext : shapes()) {
    logical_case t = random_case(rng, ext);
    const std::size_t dims = ext.size();
    // An infinity in channel 1 of x, and a NaN in channel 2 of dy when there is one.
    const auto per_channel_block = t.size() / static_cast<std::size_t>(ext[0] * ext[1]);
    t.x[per_channel_block + 1] = std::numeric_limits<float>::infinity();
    if (ext[1] > 2) t.dy[2 * per_channel_block] = std::numeric_limits<float>::quiet_NaN();
    expect_view_matches_canonical(
        t, {"transposed", layout::strided, strides_for(t.extents, transposed_order(dims))});
    expect_view_matches_canonical(
        t, {"padded", layout::strided, strides_for(t.extents, identity_order(dims), 1)});
    auto rev = strides_for(t.extents, identity_order(dims));
    for (auto& s : rev) s = -s;
    expect_view_matches_canonical(t, {"reversed", layout::strided, rev});
    if (t.rank() >= 2) {
      const layout named = t.rank() == 2 ? layout::nhwc : layout::ndhwc;
      expect_view_matches_canonical(t, {std::string(bnoracle::to_string(named)), named,
                                        strides_for(t.extents, channels_last_order(dims))});
    }
  }
}

}  // namespace

// geometry::offset, which the error model and the judge use to find an element's inputs, is the
// sum of index times stride over the dimensions, in every kind of view, including the dense
// spatial dimensions it takes in one product and spatial dimensions of extent 1 with any stride.
TEST(Layouts, GeometryOffsetIsTheSumOfIndexTimesStrideInEveryView) {
  const std::vector<std::vector<std::int64_t>> extents_list = {
      {17, 3},      {4, 5, 7},       {3, 4, 5, 6},    {2, 3, 3, 4, 5},
      {3, 2, 1, 5}, {2, 3, 4, 1, 1}, {2, 2, 1, 3, 1}, {2, 3, 1, 1, 1}};
  for (const auto& ext : extents_list) {
    const std::size_t dims = ext.size();
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> views = {
        {"canonical", strides_for(ext, identity_order(dims))},
        {"channels-last", strides_for(ext, channels_last_order(dims))},
        {"transposed", strides_for(ext, transposed_order(dims))},
        {"padded", strides_for(ext, identity_order(dims), 3)},
    };
    auto reversed = strides_for(ext, identity_order(dims));
    for (std::size_t d = 2; d < dims; ++d) reversed[d] = -reversed[d];
    views.emplace_back("spatially reversed", reversed);
    auto broadcast = strides_for(ext, identity_order(dims));
    broadcast[0] = 0;
    views.emplace_back("broadcast batch", broadcast);
    if (dims > 2) {
      auto spatial_broadcast = strides_for(ext, identity_order(dims));
      spatial_broadcast[dims - 1] = 0;
      views.emplace_back("broadcast innermost", spatial_broadcast);
      auto odd_unit = strides_for(ext, identity_order(dims));
      for (std::size_t d = 2; d < dims; ++d) {
        if (ext[d] == 1) odd_unit[d] = 1000;  // never multiplied by anything but 0
      }
      views.emplace_back("unit dimensions with odd strides", odd_unit);
    }
    for (const auto& [name, strides] : views) {
      bnoracle::bn_problem p;
      p.n = ext[0];
      p.c = ext[1];
      p.spatial.assign(ext.begin() + 2, ext.end());
      p.mem_layout = layout::strided;
      p.strides = strides;
      const bnoracle::geometry g(p);
      logical_case t;
      t.extents = ext;
      std::int64_t mismatches = 0;
      for (std::size_t li = 0; li < t.size(); ++li) {
        const auto idx = t.index_of(li);
        std::int64_t want = 0;
        for (std::size_t d = 0; d < dims; ++d) want += idx[d] * strides[d];
        const auto s = static_cast<std::int64_t>(li) % g.spatial_size();
        if (g.offset(idx[0], idx[1], s) != want && ++mismatches <= 3) {
          ADD_FAILURE() << name << ", element " << li << ": offset " << g.offset(idx[0], idx[1], s)
                        << ", want " << want;
        }
      }
      EXPECT_EQ(mismatches, 0) << name;
    }
  }
}
