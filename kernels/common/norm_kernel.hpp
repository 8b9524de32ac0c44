// The normalization algorithm shared by the bundled kernels, written once over the op (which
// elements share a statistic, whether the mean is subtracted, where γ/β live), the storage type
// of the data, and a reduction policy. Each kernel (kernels/correct/*.cpp) supplies only how a
// statistic group's values are summed, and optionally how its mean and M2 = Σ(x − μ)² are
// formed; everything else — the ABI glue (version 2), validation, the four modes and the PyTorch
// running-statistics convention — lives here.
//
// A policy P provides
//   static float P::sum(const group_view& g, const Term& term);
//     Σ term(e) over every element e of the group, in float32, in the policy's own order;
// and may provide
//   static moments P::moments(const group_view& g, const X& x);
//     the group's mean and M2 by the policy's own algorithm, reading x[e] (default: two passes
//     of P::sum, mean = Σx/L, then M2 = Σ(x − mean)²).
// A group's elements are `element`s: the memory offset, and the position in the group's logical
// order (which selects a γ/β entry where those are per normalized element).
//
// Every computed value is float32: accumulators, statistics, ε (rounded once to float) and
// 1/sqrt. No double is used in any computation, because the oracle must judge real float32
// numerics. Data of another storage type (`storage<T>`) is widened to float when read and rounded
// once when written.
//
// Which ops and types a table declares is its own choice (make_table): the group layouts below
// cover every op of the family, but a kernel declares only what bnoracle can judge of it.
#pragma once

#include "bnoracle/kernel_abi.h"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <vector>

// The one symbol a plugin exports; the build hides everything else.
#if defined(__GNUC__)
#define BNK_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define BNK_EXPORT extern "C"
#endif

namespace bnoracle::kernels {

// Every layout bit: the kernels honour the strides generically (see `make_geometry`).
inline constexpr std::uint32_t k_all_layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCL | BNK_LAYOUT_NCHW |
                                               BNK_LAYOUT_NHWC | BNK_LAYOUT_NCDHW |
                                               BNK_LAYOUT_NDHWC | BNK_LAYOUT_STRIDED;

// One element of a statistic group: where it is in memory, and its position in the group's
// logical order (0 to L − 1).
struct element {
  std::int64_t offset;
  std::int64_t index;
  // Code that only addresses memory takes an element as its offset.
  constexpr operator std::int64_t() const { return offset; }  // NOLINT(google-explicit-constructor)
};

// The elements of one statistic group in logical order, read through the problem's strides: up
// to five axes (extent, stride) iterated row-major from `base`. Every policy sees the same order,
// whatever the layout, so the same logical tensor gives the same bits in every layout.
//   batch norm     the channel's (n, spatial...)
//   instance norm  the (n, c) instance's spatial...
//   group norm     the group's (channels of the group, spatial...)
//   layer/RMS norm the row's last k axes of (c, spatial...)
class group_view {
 public:
  static constexpr int k_axes = 5;

  group_view(std::int64_t base, const std::int64_t* ext, const std::int64_t* stride, int axes,
             std::int64_t size)
      : base_(base), size_(size) {
    for (int k = 0; k < axes && k < k_axes; ++k) {
      ext_[k] = ext[k];
      stride_[k] = stride[k];
    }
  }
  // N and three spatial axes (a batch-norm channel).
  group_view(std::int64_t base, const std::int64_t (&ext)[4], const std::int64_t (&stride)[4],
             std::int64_t size)
      : group_view(base, ext, stride, 4, size) {}

  // L, the number of elements.
  [[nodiscard]] std::int64_t size() const { return size_; }

  // Calls f(element) for the elements lo, lo + 1, ..., hi − 1 of the group, in order.
  template <class F>
  void for_range(std::int64_t lo, std::int64_t hi, F&& f) const {
    if (lo >= hi) return;
    std::int64_t idx[k_axes];
    std::int64_t rest = lo;
    for (int k = k_axes - 1; k >= 0; --k) {
      idx[k] = rest % ext_[k];
      rest /= ext_[k];
    }
    std::int64_t off = base_;
    for (int k = 0; k < k_axes; ++k) off += idx[k] * stride_[k];
    for (std::int64_t j = lo; j < hi; ++j) {
      f(element{off, j});
      for (int k = k_axes - 1; k >= 0; --k) {  // the next index, with carries
        off += stride_[k];
        if (++idx[k] < ext_[k]) break;
        off -= ext_[k] * stride_[k];
        idx[k] = 0;
      }
    }
  }

 private:
  std::int64_t base_;
  std::int64_t ext_[k_axes] = {1, 1, 1, 1, 1};     // padded with 1
  std::int64_t stride_[k_axes] = {0, 0, 0, 0, 0};  // padded with 0
  std::int64_t size_;
};

// The name the batch-norm code (and the mutation catalog) uses for a channel's group.
using channel_view = group_view;

// ---- Storage types ----------------------------------------------------------------------------

// How a value of storage type T is read as float and a float result stored as T (rounded once).
// float32 is the identity; a half-precision type specializes this with its conversions.
template <class T>
struct storage;

template <>
struct storage<float> {
  static float load(float v) { return v; }
  static float store(float v) { return v; }
  static constexpr bnk_dtype dtype = BNK_DTYPE_F32;
};

// The bits of an IEEE binary16 value and of a bfloat16 value (the upper half of a float32).
struct float16_bits {
  std::uint16_t bits;
};
struct bfloat16_bits {
  std::uint16_t bits;
};

inline std::uint32_t bits_of(float v) {
  std::uint32_t u = 0;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline float float_of(std::uint32_t u) {
  float v = 0;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// float32 → binary16, rounded to nearest even, by integer arithmetic on the float's bits.
inline std::uint16_t to_binary16(float v) {
  const std::uint32_t u = bits_of(v);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000U);
  const std::uint32_t mag = u & 0x7fffffffU;
  if (mag > 0x7f800000U) return static_cast<std::uint16_t>(sign | 0x7e00U);   // NaN
  if (mag >= 0x47800000U) return static_cast<std::uint16_t>(sign | 0x7c00U);  // >= 2^16: Inf
  const auto round_shift = [](std::uint32_t m, unsigned shift) {
    std::uint32_t q = m >> shift;
    const std::uint32_t rest = m & ((1U << shift) - 1);
    const std::uint32_t half = 1U << (shift - 1);
    if (rest > half || (rest == half && (q & 1U) != 0)) ++q;  // a carry moves up a binade
    return q;
  };
  if (mag < 0x38800000U) {
    // Below 2^-14: a multiple of 2^-24; 2^-25 and below round to zero.
    if (mag <= 0x33000000U) return sign;
    const int e = static_cast<int>(mag >> 23) - 127;  // -25..-15
    const std::uint32_t m = (mag & 0x7fffffU) | 0x800000U;
    return static_cast<std::uint16_t>(sign | round_shift(m, static_cast<unsigned>(-e - 1)));
  }
  // Rebias the exponent (127 → 15) and keep 10 of the 23 fraction bits.
  return static_cast<std::uint16_t>(sign | round_shift(mag - (112U << 23), 13));
}

inline float from_binary16(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000U) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fU;
  const std::uint32_t f = h & 0x3ffU;
  if (e == 0x1fU) return float_of(sign | 0x7f800000U | (f << 13));
  if (e == 0) {
    const float v = static_cast<float>(f) * 0x1p-24F;  // exact: f < 2^10
    return sign != 0 ? -v : v;
  }
  return float_of(sign | ((e + 112U) << 23) | (f << 13));
}

// float32 → bfloat16, rounded to nearest even: the upper half after adding the rounding bias.
inline std::uint16_t to_bfloat16(float v) {
  const std::uint32_t u = bits_of(v);
  if ((u & 0x7fffffffU) > 0x7f800000U) return static_cast<std::uint16_t>((u >> 16) | 0x40U);
  return static_cast<std::uint16_t>((u + 0x7fffU + ((u >> 16) & 1U)) >> 16);
}

inline float from_bfloat16(std::uint16_t b) {
  return float_of(static_cast<std::uint32_t>(b) << 16);
}

template <>
struct storage<float16_bits> {
  static float load(float16_bits v) { return from_binary16(v.bits); }
  static float16_bits store(float v) { return {to_binary16(v)}; }
  static constexpr bnk_dtype dtype = BNK_DTYPE_F16;
};

template <>
struct storage<bfloat16_bits> {
  static float load(bfloat16_bits v) { return from_bfloat16(v.bits); }
  static bfloat16_bits store(float v) { return {to_bfloat16(v)}; }
  static constexpr bnk_dtype dtype = BNK_DTYPE_BF16;
};

// Widens a vector of `count` values of ABI type `dtype` to float, and rounds floats back.
inline std::vector<float> widen(const void* p, std::int32_t dtype, std::int64_t count) {
  std::vector<float> out(
      static_cast<std::size_t>(p == nullptr ? 0 : std::max<std::int64_t>(count, 0)));
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (dtype == BNK_DTYPE_F32) {
      out[i] = static_cast<const float*>(p)[i];
    } else {
      const std::uint16_t b = static_cast<const std::uint16_t*>(p)[i];
      out[i] = dtype == BNK_DTYPE_F16 ? from_binary16(b) : from_bfloat16(b);
    }
  }
  return out;
}
inline void narrow(const std::vector<float>& v, void* p, std::int32_t dtype) {
  if (p == nullptr) return;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (dtype == BNK_DTYPE_F32) {
      static_cast<float*>(p)[i] = v[i];
    } else {
      static_cast<std::uint16_t*>(p)[i] =
          dtype == BNK_DTYPE_F16 ? to_binary16(v[i]) : to_bfloat16(v[i]);
    }
  }
}

// A tensor of storage type T read as floats: x[e] is the element at e's offset, widened.
template <class T>
struct tensor_in {
  const T* p;
  [[nodiscard]] float operator[](element e) const { return storage<T>::load(p[e.offset]); }
  [[nodiscard]] float operator[](std::int64_t i) const { return storage<T>::load(p[i]); }
};

// A group's statistics: mean and M2 = Σ(x − mean)².
struct moments {
  float mean;
  float m2;
};

// Σ term over elements [lo, hi) of the group, left to right in one float accumulator.
template <class Term>
float sequential_sum(const group_view& g, std::int64_t lo, std::int64_t hi, const Term& term) {
  float s = 0.0F;
  g.for_range(lo, hi, [&](element e) { s += term(e); });
  return s;
}

template <class P>
concept has_moments = requires(const group_view& g, const tensor_in<float>& x) {
  { P::moments(g, x) } -> std::same_as<moments>;
};

template <class P, class X>
moments group_moments(const group_view& g, const X& x) {
  if constexpr (has_moments<P>) {
    return P::moments(g, x);
  } else {
    const float mean = P::sum(g, [&x](element e) { return x[e]; }) / static_cast<float>(g.size());
    const float m2 = P::sum(g, [&x, mean](element e) {
      const float d = x[e] - mean;
      return d * d;
    });
    return {mean, m2};
  }
}

// ---- Validation -----------------------------------------------------------------------------

// A problem (or a buffer set) the kernel rejects; `status` says how. (No std::string: its
// to_string tables would be exported as unique symbols that keep the plugin from unloading.)
struct rejection {
  bnk_status status = BNK_OK;
  char why[200] = {};
};

[[gnu::format(printf, 3, 4)]] inline bool reject(rejection& r, bnk_status status,
                                                 const char* format, ...) {
  r.status = status;
  va_list args;
  va_start(args, format);
  std::vsnprintf(r.why, sizeof r.why, format, args);
  va_end(args);
  return false;
}

// A batch-norm problem's channels (the version-1 view, which the mutation catalog works on).
struct geometry {
  std::int64_t c = 0;  // channels
  std::int64_t L = 0;  // elements per channel: N · spatial size
  std::int64_t channel_stride = 0;
  std::int64_t ext[4] = {1, 1, 1, 1};  // N, spatial extents
  std::int64_t stride[4] = {0, 0, 0, 0};

  [[nodiscard]] channel_view channel(std::int64_t ch) const {
    return {ch * channel_stride, ext, stride, L};
  }
  [[nodiscard]] bool empty() const { return L == 0 || c == 0; }
};

inline bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

inline bool add_ok(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

// Reads and checks a shape. Supported: ranks 2 to 5 under any layout bit in `layouts`, with any
// strides under which distinct elements have distinct addresses (outputs share the strides of
// the inputs, so a zero or overlapping stride would make two outputs collide); other strides are
// BNK_UNSUPPORTED. Fills the batch-norm view `g`.
inline bool check_shape(const bnk_shape& s, std::uint32_t layouts, geometry& g, rejection& r) {
  if (s.rank < 2 || s.rank > 5) {
    return reject(r, BNK_FAILED, "shape.rank %d is outside 2..5", static_cast<int>(s.rank));
  }
  const std::uint32_t lay = s.layout;
  if (lay == 0 || (lay & (lay - 1U)) != 0 || (lay & layouts) == 0) {
    return reject(r, BNK_UNSUPPORTED, "layout 0x%x is not supported by this kernel",
                  static_cast<unsigned>(lay));
  }
  for (int d = 0; d < s.rank; ++d) {
    if (s.dims[d] < 0) return reject(r, BNK_FAILED, "shape.dims[%d] is negative", d);
  }
  g.c = s.dims[1];
  g.channel_stride = s.strides[1];
  g.ext[0] = s.dims[0];
  g.stride[0] = s.strides[0];
  for (int d = 2; d < s.rank; ++d) {
    g.ext[d - 1] = s.dims[d];
    g.stride[d - 1] = s.strides[d];
  }
  std::int64_t L = 1;
  std::int64_t total = 0;
  for (const std::int64_t e : g.ext) {
    if (!mul_ok(L, e, L)) L = -1;
    if (L < 0) break;
  }
  if (L < 0 || !mul_ok(L, g.c, total)) {
    return reject(r, BNK_UNSUPPORTED, "the shape has more elements than int64 can count");
  }
  g.L = L;
  if (total == 0) return true;
  // Distinct elements at distinct addresses: sorted by |stride|, each stride of an extent > 1
  // must exceed the span of all smaller ones (then every offset has one decomposition).
  struct dim {
    std::int64_t ext, stride;
  };
  dim dims[5] = {{g.c, g.channel_stride}};
  int nd = 1;
  for (int k = 0; k < 4; ++k) dims[nd++] = {g.ext[k], g.stride[k]};
  for (dim& d : dims) {
    if (d.stride == std::numeric_limits<std::int64_t>::min()) {
      return reject(r, BNK_UNSUPPORTED, "a stride is out of range");
    }
    d.stride = d.stride < 0 ? -d.stride : d.stride;
  }
  std::sort(dims, dims + nd, [](const dim& a, const dim& b) { return a.stride < b.stride; });
  std::int64_t span = 0;  // Σ (ext − 1)·|stride| over the dims so far
  for (const dim& d : dims) {
    if (d.ext <= 1) continue;
    std::int64_t reach = 0;
    if (d.stride <= span || !mul_ok(d.ext - 1, d.stride, reach) || !add_ok(span, reach, span)) {
      return reject(r, BNK_UNSUPPORTED,
                    "strides under which two elements share an address are not supported: "
                    "outputs have the strides of the inputs and would collide");
    }
  }
  return true;
}

// check_shape for a version-1 problem.
inline bool make_geometry(const bnk_problem& p, std::uint32_t layouts, geometry& g, rejection& r) {
  if (p.struct_size < sizeof(bnk_problem)) {
    return reject(r, BNK_FAILED, "bnk_problem.struct_size %u is smaller than ABI version 1's %zu",
                  static_cast<unsigned>(p.struct_size), sizeof(bnk_problem));
  }
  return check_shape(p.shape, layouts, g, r);
}

// The statistic groups of a version-2 problem (see group_view): how many, L, and where each
// one's elements and γ/β entries are.
struct group_layout {
  bnk_op_desc op{};
  geometry bn;              // the shape as channels (every op has them)
  std::int64_t groups = 0;  // statistic groups
  std::int64_t L = 0;       // elements per group
  std::int64_t params = 0;  // γ/β entries (0: none)
  // Axes a group iterates (row-major) and the leading axes whose coordinates number the groups.
  int axes = 0;
  std::int64_t ext[group_view::k_axes] = {};
  std::int64_t stride[group_view::k_axes] = {};
  int lead = 0;
  std::int64_t lead_ext[group_view::k_axes] = {};
  std::int64_t lead_stride[group_view::k_axes] = {};
  std::int64_t channels_per_group = 1;  // group norm: C/G (the channel of position k is
                                        // first + k / (L / channels_per_group))

  [[nodiscard]] group_view group(std::int64_t g) const {
    std::int64_t base = 0;
    for (int k = lead - 1; k >= 0; --k) {
      base += (g % lead_ext[k]) * lead_stride[k];
      g /= lead_ext[k];
    }
    return {base, ext, stride, axes, L};
  }
  // The channel of group g's element at position k.
  [[nodiscard]] std::int64_t channel(std::int64_t g, std::int64_t k) const {
    switch (op.kind) {
      case BNK_OP_BATCH_NORM:
        return g;
      case BNK_OP_INSTANCE_NORM:
        return bn.c > 0 ? g % bn.c : 0;
      case BNK_OP_GROUP_NORM: {
        // The elements of one channel (none when C = 0).
        const std::int64_t spatial = channels_per_group > 0 ? L / channels_per_group : 0;
        return (g % op.groups) * channels_per_group + (spatial > 0 ? k / spatial : 0);
      }
      default:  // layer and RMS norm: the channel axis is normalized or leading
        return -1;
    }
  }
  // The γ/β entry of group g's element at position k.
  [[nodiscard]] std::int64_t param(std::int64_t g, std::int64_t k) const {
    return op.params == BNK_PARAMS_PER_ELEMENT ? k : channel(g, k);
  }
  // Every element of γ/β entry j of an op whose entries span several groups (layer, RMS, group
  // and instance norm), in logical order: group by group, and inside a group in its own order.
  [[nodiscard]] group_view entry(std::int64_t j) const {
    if (op.kind == BNK_OP_LAYER_NORM || op.kind == BNK_OP_RMS_NORM) {
      // Position j of every row: the row's offset of j, over the leading axes.
      std::int64_t base = 0;
      std::int64_t rest = j;
      for (int k = axes - 1; k >= 0; --k) {
        base += (rest % ext[k]) * stride[k];
        rest /= ext[k];
      }
      return {base, lead_ext, lead_stride, lead, groups};
    }
    return bn.channel(j);  // instance and group norm: channel j over (n, spatial...)
  }
  // The statistic group of the element at position i of entry(j).
  [[nodiscard]] std::int64_t entry_group(std::int64_t j, std::int64_t i) const {
    switch (op.kind) {
      case BNK_OP_INSTANCE_NORM:
        return (i / L) * bn.c + j;
      case BNK_OP_GROUP_NORM:
        return (i / (L / channels_per_group)) * op.groups + j / channels_per_group;
      default:
        return i;
    }
  }
  // True when every element of a group shares one γ/β entry (or there are none).
  [[nodiscard]] bool uniform_params() const {
    return op.params == BNK_PARAMS_NONE || op.kind == BNK_OP_BATCH_NORM ||
           op.kind == BNK_OP_INSTANCE_NORM ||
           (op.kind == BNK_OP_GROUP_NORM && channels_per_group == 1);
  }
};

// Reads and checks a version-2 problem's op and shape into a group_layout.
inline bool make_layout(const bnk_problem_v2& p, std::uint32_t layouts, group_layout& out,
                        rejection& r) {
  if (p.struct_size < sizeof(bnk_problem_v2)) {
    return reject(r, BNK_FAILED, "bnk_problem_v2.struct_size %u is smaller than %zu",
                  static_cast<unsigned>(p.struct_size), sizeof(bnk_problem_v2));
  }
  if (!check_shape(p.shape, layouts, out.bn, r)) return false;
  out.op = p.op;
  const bnk_shape& s = p.shape;
  const int rank = s.rank;
  auto push = [](std::int64_t* e, std::int64_t* st, int& n, std::int64_t extent,
                 std::int64_t stride) {
    e[n] = extent;
    st[n] = stride;
    ++n;
  };
  const std::int64_t C = s.dims[1];
  switch (p.op.kind) {
    case BNK_OP_BATCH_NORM:
      push(out.lead_ext, out.lead_stride, out.lead, C, s.strides[1]);
      for (int d = 0; d < rank; ++d) {
        if (d != 1) push(out.ext, out.stride, out.axes, s.dims[d], s.strides[d]);
      }
      break;
    case BNK_OP_INSTANCE_NORM:
      push(out.lead_ext, out.lead_stride, out.lead, s.dims[0], s.strides[0]);
      push(out.lead_ext, out.lead_stride, out.lead, C, s.strides[1]);
      for (int d = 2; d < rank; ++d) push(out.ext, out.stride, out.axes, s.dims[d], s.strides[d]);
      break;
    case BNK_OP_GROUP_NORM: {
      const std::int64_t G = p.op.groups;
      if (G < 1 || C % G != 0) {
        return reject(r, BNK_FAILED, "groups %lld do not divide C = %lld",
                      static_cast<long long>(G), static_cast<long long>(C));
      }
      out.channels_per_group = C / G;
      push(out.lead_ext, out.lead_stride, out.lead, s.dims[0], s.strides[0]);
      push(out.lead_ext, out.lead_stride, out.lead, G, out.channels_per_group * s.strides[1]);
      push(out.ext, out.stride, out.axes, out.channels_per_group, s.strides[1]);
      for (int d = 2; d < rank; ++d) push(out.ext, out.stride, out.axes, s.dims[d], s.strides[d]);
      break;
    }
    case BNK_OP_LAYER_NORM:
    case BNK_OP_RMS_NORM: {
      const int k = p.op.normalized_axes;
      if (k < 1 || k > rank - 1) {
        return reject(r, BNK_FAILED, "normalized_axes %d is outside 1..%d", k, rank - 1);
      }
      for (int d = 0; d < rank - k; ++d) {
        push(out.lead_ext, out.lead_stride, out.lead, s.dims[d], s.strides[d]);
      }
      for (int d = rank - k; d < rank; ++d) {
        push(out.ext, out.stride, out.axes, s.dims[d], s.strides[d]);
      }
      break;
    }
    default:
      return reject(r, BNK_UNSUPPORTED, "op %d is not supported by this kernel",
                    static_cast<int>(p.op.kind));
  }
  // check_shape bounded N·C·spatial, so these products fit.
  out.groups = 1;
  for (int k = 0; k < out.lead; ++k) out.groups *= out.lead_ext[k];
  out.L = 1;
  for (int k = 0; k < out.axes; ++k) out.L *= out.ext[k];
  switch (p.op.params) {
    case BNK_PARAMS_NONE:
      out.params = 0;
      break;
    case BNK_PARAMS_PER_CHANNEL:
      out.params = C;
      break;
    case BNK_PARAMS_PER_ELEMENT:
      out.params = out.L;
      break;
    default:
      return reject(r, BNK_FAILED, "op.params %d is not a bnk_params value",
                    static_cast<int>(p.op.params));
  }
  if (p.op.params == BNK_PARAMS_PER_CHANNEL &&
      (p.op.kind == BNK_OP_LAYER_NORM || p.op.kind == BNK_OP_RMS_NORM)) {
    return reject(r, BNK_UNSUPPORTED, "per-channel γ/β with a normalized channel axis");
  }
  return true;
}

inline bool missing(const void* ptr, const char* name, rejection& r) {
  if (ptr != nullptr) return false;
  reject(r, BNK_FAILED, "buffers->%s is NULL but this mode needs it", name);
  return true;
}

// The buffers backward training needs: src, diff_dst and diff_src where there are elements; γ
// and both gradients where there are γ/β entries, even without groups (N = 0: the entries' sums
// are empty, and dγ = dβ = 0 are still written). True, with `r` set, when one is NULL.
inline bool backward_buffers_missing(const bnk_buffers_v2& raw, const group_layout& g, bool affine,
                                     rejection& r) {
  if (g.groups > 0 && g.L > 0 &&
      (missing(raw.src, "src", r) || missing(raw.diff_dst, "diff_dst", r) ||
       missing(raw.diff_src, "diff_src", r))) {
    return true;
  }
  return affine && (missing(raw.gamma, "gamma", r) || missing(raw.diff_gamma, "diff_gamma", r) ||
                    missing(raw.diff_beta, "diff_beta", r));
}

// ---- The algorithm --------------------------------------------------------------------------

inline const char* const k_single_spatial_refusal =
    "pytorch: expected more than 1 spatial element when training";
inline const char* const k_single_value_refusal =
    "pytorch: expected more than 1 value per channel when training";

inline float nan_f() {
  return std::numeric_limits<float>::quiet_NaN();
}

// 1/sqrt(v + ε) in float32: three roundings (sum, sqrt, division).
inline float inv_std(float v, float eps) {
  return 1.0F / std::sqrt(v + eps);
}

// The four modes of every op, for a reduction policy P and data stored as Data (γ/β and the
// statistics in float32). Batch norm refuses one value per channel in training and keeps
// PyTorch's running statistics; the other ops keep none here.
template <class P, class Data = float>
struct norm {
  using D = storage<Data>;

  struct buffers {
    tensor_in<Data> x, dy;
    Data* y;
    Data* dx;
    const float* gamma;
    const float* beta;
    float* running_mean;
    float* running_var;
    std::int64_t* nbt;
    float* save_mean;
    float* save_stat;
    float* dgamma;
    float* dbeta;
  };

  static buffers view(const bnk_buffers_v2& b) {
    return {{static_cast<const Data*>(b.src)},
            {static_cast<const Data*>(b.diff_dst)},
            static_cast<Data*>(b.dst),
            static_cast<Data*>(b.diff_src),
            static_cast<const float*>(b.gamma),
            static_cast<const float*>(b.beta),
            static_cast<float*>(b.running_mean),
            static_cast<float*>(b.running_var),
            b.num_batches_tracked,
            static_cast<float*>(b.save_mean),
            static_cast<float*>(b.save_stat),
            static_cast<float*>(b.diff_gamma),
            static_cast<float*>(b.diff_beta)};
  }

  // γ_eff of entry j (1 + w with the weight offset) and β of entry j; 1 and 0 without γ/β.
  static float gamma_of(const bnk_problem_v2& p, const buffers& b, std::int64_t j) {
    if (p.op.params == BNK_PARAMS_NONE) return 1.0F;
    return p.op.weight_offset != 0 ? 1.0F + b.gamma[j] : b.gamma[j];
  }
  static float beta_of(const bnk_problem_v2& p, const buffers& b, std::int64_t j) {
    return p.op.params == BNK_PARAMS_NONE ? 0.0F : b.beta[j];
  }

  // The group's mean and M2 = Σ(x − mean)²; without centring (RMS norm) a mean of 0 and the
  // mean square itself as Σ x·(x/L), whose terms stay finite wherever the mean square does
  // (Σx² overflows for |x| near sqrt(FLT_MAX)).
  static moments stats_of(const bnk_problem_v2& p, const group_view& v, const tensor_in<Data>& x) {
    if (p.op.centred != 0) return group_moments<P>(v, x);
    const float Lf = static_cast<float>(v.size());
    return {0.0F, P::sum(v, [&x, Lf](element e) {
              const float xv = x[e];
              return xv * (xv / Lf);
            })};
  }
  // σ² (the mean square without centring) from stats_of's moments.
  static float variance_of(const bnk_problem_v2& p, const moments& m, std::int64_t L) {
    return p.op.centred != 0 ? m.m2 / static_cast<float>(L) : m.m2;
  }

  static bool has_params(const bnk_problem_v2& p) { return p.op.params != BNK_PARAMS_NONE; }

  // y = (x − μ)·(γ·r) + β with r = 1/sqrt(σ² + ε); saves μ and r; updates the running
  // statistics under PyTorch's convention.
  static bnk_status forward_training(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                     const group_layout& g, rejection& r) {
    const buffers b = view(raw);
    const bool bn = p.op.kind == BNK_OP_BATCH_NORM;
    const bool in = p.op.kind == BNK_OP_INSTANCE_NORM;
    const bool track = (bn || in) && p.track_running != 0;
    if (p.track_running != 0 && !bn && !in) {
      reject(r, BNK_UNSUPPORTED, "running statistics are kept for batch and instance norm only");
      return r.status;
    }
    // Instance norm (PyTorch): every instance (n, c) updates its own copy of channel c's running
    // statistics; the copies are then averaged over n. The sums of the copies live here.
    const std::int64_t channels = in ? p.running_size : 0;
    std::vector<float> copies_mean(static_cast<std::size_t>(track ? channels : 0), 0.0F);
    std::vector<float> copies_var(copies_mean.size(), 0.0F);
    if (g.groups > 0) {
      if (g.L > 0 && (missing(raw.src, "src", r) || missing(raw.dst, "dst", r))) return r.status;
      if (has_params(p) && g.params > 0 &&
          (missing(raw.gamma, "gamma", r) || missing(raw.beta, "beta", r))) {
        return r.status;
      }
      if (track && (missing(raw.running_mean, "running_mean", r) ||
                    missing(raw.running_var, "running_var", r))) {
        return r.status;
      }
    }
    if (track && missing(raw.num_batches_tracked, "num_batches_tracked", r)) return r.status;
    if (bn && g.L == 1) {
      reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
      return r.status;
    }
    if (in && g.L == 1 && g.groups > 0) {
      reject(r, BNK_REFUSED, "%s", k_single_spatial_refusal);
      return r.status;
    }
    if (track && (*b.nbt < 0 || *b.nbt == std::numeric_limits<std::int64_t>::max())) {
      reject(r, BNK_FAILED, "num_batches_tracked is out of range");
      return r.status;
    }
    if (track && in && p.cumulative != 0) {
      reject(r, BNK_UNSUPPORTED, "instance norm has no cumulative average (momentum=None)");
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    const std::int64_t t = track ? *b.nbt + 1 : 0;  // after the increment
    // The weight of the new batch statistic: m, or 1/t for the cumulative average.
    const float f = !track              ? 0.0F
                    : p.cumulative != 0 ? 1.0F / static_cast<float>(t)
                                        : static_cast<float>(p.momentum);
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      if (g.L == 0) {
        // Empty batch: no statistics exist (0/0); PyTorch leaves the running statistics as they
        // are and still counts the batch.
        if (b.save_mean != nullptr) b.save_mean[grp] = nan_f();
        if (b.save_stat != nullptr) b.save_stat[grp] = nan_f();
        continue;
      }
      const group_view v = g.group(grp);
      const moments m = stats_of(p, v, b.x);
      const float var = variance_of(p, m, g.L);
      const float rstd = inv_std(var, eps);
      if (b.save_mean != nullptr) b.save_mean[grp] = m.mean;
      if (b.save_stat != nullptr) b.save_stat[grp] = rstd;
      const float mean = m.mean;
      if (g.uniform_params()) {
        const std::int64_t j = g.param(grp, 0);
        const float scale = gamma_of(p, b, j) * rstd;
        const float beta = beta_of(p, b, j);
        v.for_range(0, g.L,
                    [&](element e) { b.y[e.offset] = D::store((b.x[e] - mean) * scale + beta); });
      } else {
        v.for_range(0, g.L, [&](element e) {
          const std::int64_t j = g.param(grp, e.index);
          b.y[e.offset] = D::store((b.x[e] - mean) * (gamma_of(p, b, j) * rstd) + beta_of(p, b, j));
        });
      }
      if (track) {
        // PyTorch: running = (1 − f)·running + f·batch, with the unbiased variance M2/(L − 1).
        const float unbiased = m.m2 / static_cast<float>(g.L - 1);
        if (bn) {
          b.running_mean[grp] = (1.0F - f) * b.running_mean[grp] + f * m.mean;
          b.running_var[grp] = (1.0F - f) * b.running_var[grp] + f * unbiased;
        } else {
          const auto c = static_cast<std::size_t>(grp % channels);
          copies_mean[c] += (1.0F - f) * b.running_mean[c] + f * m.mean;
          copies_var[c] += (1.0F - f) * b.running_var[c] + f * unbiased;
        }
      }
    }
    if (track && in && g.groups > 0 && g.L > 0) {
      const auto copies = static_cast<float>(g.groups / channels);
      for (std::size_t c = 0; c < copies_mean.size(); ++c) {
        b.running_mean[c] = copies_mean[c] / copies;
        b.running_var[c] = copies_var[c] / copies;
      }
    }
    // PyTorch's InstanceNorm never advances num_batches_tracked: only batch norm counts steps.
    if (track && bn) *b.nbt = t;
    return BNK_OK;
  }

  // Batch norm: y = (x − μ_run)·(γ·r) + β with r = 1/sqrt(var_run + ε), element-wise. The ops
  // without running statistics normalize with the batch's own, as in training.
  static bnk_status forward_inference(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                      const group_layout& g, rejection& r) {
    if (!uses_running(p)) return forward_training(p, raw, g, r);
    const buffers b = view(raw);
    if (g.bn.empty()) return BNK_OK;
    if (missing(raw.src, "src", r) || missing(raw.dst, "dst", r) ||
        missing(raw.running_mean, "running_mean", r) ||
        missing(raw.running_var, "running_var", r)) {
      return r.status;
    }
    if (has_params(p) && (missing(raw.gamma, "gamma", r) || missing(raw.beta, "beta", r))) {
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const std::int64_t c = g.channel(grp, 0);  // the running entry and the γ/β entry
      const float scale = gamma_of(p, b, c) * inv_std(b.running_var[c], eps);
      const float beta = beta_of(p, b, c);
      const float mean = b.running_mean[c];
      g.group(grp).for_range(
          0, g.L, [&](element e) { b.y[e.offset] = D::store((b.x[e] - mean) * scale + beta); });
    }
    return BNK_OK;
  }

  // With g_i = γ_i·dy_i and x̂ = (x − μ)·r:  dx = r·(g − mean(g) − x̂·mean(g·x̂)),
  // dγ_j = Σ dy·x̂ and dβ_j = Σ dy over the elements of entry j; μ and r from
  // save_mean/save_stat when given, else recomputed from src. Without centring (RMS norm) the
  // mean(g) term is absent. Where γ is uniform over a group (batch and instance norm) this is
  // dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)).
  static bnk_status backward_training(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                      const group_layout& g, rejection& r) {
    const buffers b = view(raw);
    const bool affine = has_params(p) && g.params > 0;
    const bool bn = p.op.kind == BNK_OP_BATCH_NORM;
    if (backward_buffers_missing(raw, g, affine, r)) return r.status;
    if (bn && g.L == 1) {
      reject(r, BNK_REFUSED, "%s", k_single_value_refusal);
      return r.status;
    }
    if (p.op.kind == BNK_OP_INSTANCE_NORM && g.L == 1 && g.groups > 0) {
      reject(r, BNK_REFUSED, "%s", k_single_spatial_refusal);
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    const bool saved = b.save_mean != nullptr && b.save_stat != nullptr;
    const float Lf = static_cast<float>(g.L);
    // The ops whose entries span several groups reduce dγ and dβ per entry after the groups,
    // with each group's statistics.
    const bool per_entry = affine && !bn;
    std::vector<float> means(per_entry ? static_cast<std::size_t>(g.groups) : 0);
    std::vector<float> rstds(means.size());
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      if (g.L == 0) {  // empty sums
        if (affine && bn) b.dgamma[grp] = b.dbeta[grp] = 0.0F;
        continue;
      }
      const group_view v = g.group(grp);
      const tensor_in<Data> x = b.x;
      const tensor_in<Data> dy = b.dy;
      float mean = 0.0F;
      float rstd = 0.0F;
      if (saved) {
        mean = b.save_mean[grp];
        rstd = b.save_stat[grp];
      } else {
        const moments m = stats_of(p, v, x);
        mean = m.mean;
        rstd = inv_std(variance_of(p, m, g.L), eps);
      }
      if (per_entry) {
        means[static_cast<std::size_t>(grp)] = mean;
        rstds[static_cast<std::size_t>(grp)] = rstd;
      }
      const bool centred = p.op.centred != 0;
      if (g.uniform_params()) {
        const std::int64_t j = g.param(grp, 0);
        const float sum_dy = P::sum(v, [&dy](element e) { return dy[e]; });
        const float sum_dy_xc =
            P::sum(v, [&x, &dy, mean](element e) { return dy[e] * (x[e] - mean); });
        const float dgamma = sum_dy_xc * rstd;  // Σ dy·x̂
        if (affine && bn) {
          b.dgamma[j] = dgamma;
          b.dbeta[j] = sum_dy;
        }
        const float scale = gamma_of(p, b, j) * rstd;
        const float mean_dy = centred ? sum_dy / Lf : 0.0F;
        const float mean_dy_xhat = dgamma / Lf;
        v.for_range(0, g.L, [&](element e) {
          const float xhat = (x[e] - mean) * rstd;
          b.dx[e.offset] = D::store(scale * ((dy[e] - mean_dy) - xhat * mean_dy_xhat));
        });
      } else {
        const float sum_g =
            P::sum(v, [&](element e) { return gamma_of(p, b, g.param(grp, e.index)) * dy[e]; });
        const float sum_g_xhat = P::sum(v, [&](element e) {
          return gamma_of(p, b, g.param(grp, e.index)) * dy[e] * ((x[e] - mean) * rstd);
        });
        const float mean_g = centred ? sum_g / Lf : 0.0F;
        const float mean_g_xhat = sum_g_xhat / Lf;
        v.for_range(0, g.L, [&](element e) {
          const std::int64_t j = g.param(grp, e.index);
          const float xhat = (x[e] - mean) * rstd;
          const float gi = gamma_of(p, b, j) * dy[e];
          b.dx[e.offset] = D::store(rstd * ((gi - mean_g) - xhat * mean_g_xhat));
        });
      }
    }
    if (per_entry) {
      // dγ_j = Σ dy·x̂ and dβ_j = Σ dy over every element of entry j, each one reduction of the
      // policy's over all the groups that hold j: a policy's accuracy claim covers these sums
      // as it covers a group's.
      const tensor_in<Data> x = b.x;
      const tensor_in<Data> dy = b.dy;
      for (std::int64_t j = 0; j < g.params; ++j) {
        const group_view ev = g.entry(j);
        if (ev.size() == 0) {
          b.dgamma[j] = b.dbeta[j] = 0.0F;
          continue;
        }
        b.dbeta[j] = P::sum(ev, [&dy](element e) { return dy[e]; });
        b.dgamma[j] = P::sum(ev, [&](element e) {
          const auto k = static_cast<std::size_t>(g.entry_group(j, e.index));
          return dy[e] * ((x[e] - means[k]) * rstds[k]);
        });
      }
    }
    return BNK_OK;
  }

  // Batch norm: the running statistics are constants: dx = γ·r·dy, dγ = r·Σdy·(x − μ_run),
  // dβ = Σdy. The ops without running statistics differentiate through the batch's own.
  static bnk_status backward_inference(const bnk_problem_v2& p, const bnk_buffers_v2& raw,
                                       const group_layout& g, rejection& r) {
    if (!uses_running(p)) return backward_training(p, raw, g, r);
    const buffers b = view(raw);
    const bool affine = has_params(p);
    if (g.groups == 0) return BNK_OK;
    if (missing(raw.running_mean, "running_mean", r) ||
        missing(raw.running_var, "running_var", r)) {
      return r.status;
    }
    if (g.L > 0 && (missing(raw.src, "src", r) || missing(raw.diff_dst, "diff_dst", r) ||
                    missing(raw.diff_src, "diff_src", r))) {
      return r.status;
    }
    if (affine && (missing(raw.gamma, "gamma", r) || missing(raw.diff_gamma, "diff_gamma", r) ||
                   missing(raw.diff_beta, "diff_beta", r))) {
      return r.status;
    }
    const float eps = static_cast<float>(p.eps);
    const bool bn = p.op.kind == BNK_OP_BATCH_NORM;
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const std::int64_t c = g.channel(grp, 0);  // the running entry and the γ/β entry
      const float rstd = inv_std(b.running_var[c], eps);
      const float scale = gamma_of(p, b, c) * rstd;
      g.group(grp).for_range(0, g.L,
                             [&](element e) { b.dx[e.offset] = D::store(scale * b.dy[e]); });
    }
    if (!affine) return BNK_OK;
    // dγ_c = r·Σdy·(x − μ_run) and dβ_c = Σdy over channel c's elements: batch norm's channel
    // is its group; instance norm's spans the N instances of c, one reduction over them all.
    const std::int64_t entries = bn ? g.groups : g.params;
    for (std::int64_t c = 0; c < entries; ++c) {
      const group_view v = bn ? g.group(c) : g.entry(c);
      const tensor_in<Data> x = b.x;
      const tensor_in<Data> dy = b.dy;
      const float mean = b.running_mean[c];
      const float rstd = inv_std(b.running_var[c], eps);
      b.dbeta[c] = P::sum(v, [&dy](element e) { return dy[e]; });
      b.dgamma[c] = P::sum(v, [&x, &dy, mean](element e) { return dy[e] * (x[e] - mean); }) * rstd;
    }
    return BNK_OK;
  }

  // Batch norm, and instance norm with running statistics, normalize with those in inference.
  static bool uses_running(const bnk_problem_v2& p) {
    return p.op.kind == BNK_OP_BATCH_NORM ||
           (p.op.kind == BNK_OP_INSTANCE_NORM && p.op.running_stats != 0);
  }
};

// The version-1 modes: float32 batch norm, the same algorithm through the version-2 view. The
// mutation catalog specializes this for its own policies. (as_v2 mirrors bnoracle's to_v2 in
// adapters/src/abi.cpp: a kernel includes the ABI header only and links nothing of bnoracle.)
template <class P>
struct bn {
  static bnk_problem_v2 as_v2(const bnk_problem& p, const geometry& g) {
    bnk_problem_v2 q{};
    q.struct_size = sizeof q;
    q.op.kind = BNK_OP_BATCH_NORM;
    q.op.centred = 1;
    q.op.params = p.affine != 0 ? BNK_PARAMS_PER_CHANNEL : BNK_PARAMS_NONE;
    q.op.running_stats = 1;
    q.shape = p.shape;
    q.statistic_groups = g.c;
    q.group_size = g.L;
    q.parameters = p.affine != 0 ? g.c : 0;
    q.running_size = g.c;
    q.eps = p.eps;
    q.momentum = p.momentum;
    q.cumulative = p.cumulative;
    q.track_running = p.track_running;
    return q;
  }
  static bnk_buffers_v2 as_v2(const bnk_buffers& b) {
    return {b.src,
            b.diff_dst,
            b.gamma,
            b.beta,
            b.running_mean,
            b.running_var,
            b.num_batches_tracked,
            b.save_mean,
            b.save_stat,
            b.dst,
            b.diff_src,
            b.diff_gamma,
            b.diff_beta};
  }
  template <bnk_status (*Mode)(const bnk_problem_v2&, const bnk_buffers_v2&, const group_layout&,
                               rejection&)>
  static bnk_status run(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                        rejection& r) {
    const bnk_problem_v2 q = as_v2(p, g);
    group_layout layout;
    if (!make_layout(q, k_all_layouts, layout, r)) return r.status;
    return Mode(q, as_v2(b), layout, r);
  }
  static bnk_status forward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                     rejection& r) {
    return run<&norm<P>::forward_training>(p, b, g, r);
  }
  static bnk_status forward_inference(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    return run<&norm<P>::forward_inference>(p, b, g, r);
  }
  static bnk_status backward_training(const bnk_problem& p, const bnk_buffers& b, const geometry& g,
                                      rejection& r) {
    return run<&norm<P>::backward_training>(p, b, g, r);
  }
  static bnk_status backward_inference(const bnk_problem& p, const bnk_buffers& b,
                                       const geometry& g, rejection& r) {
    return run<&norm<P>::backward_inference>(p, b, g, r);
  }
};

// ---- SyncBN merge and folding (policy-independent) ------------------------------------------

// Merges K shards' (count, mean, biased variance) per channel in float32:
//   n = Σ nₖ,  mean = Σ nₖ·mₖ / n,  M2 = Σ (nₖ·vₖ + nₖ·(mₖ − mean)²),  var = M2 / n,
// then invstd and the PyTorch running update over the total count (unbiased M2/(n − 1)).
inline bnk_status syncbn_merge(const bnk_syncbn_problem& p, const bnk_syncbn_buffers& b,
                               rejection& r) {
  if (p.struct_size < sizeof(bnk_syncbn_problem)) {
    reject(r, BNK_FAILED, "bnk_syncbn_problem.struct_size %u is too small",
           static_cast<unsigned>(p.struct_size));
    return r.status;
  }
  if (p.shards < 1 || p.channels < 0) {
    reject(r, BNK_FAILED, "needs at least one shard and C >= 0");
    return r.status;
  }
  const bool track = p.track_running != 0;
  if (missing(b.count, "count", r)) return r.status;
  if (p.channels > 0 &&
      (missing(b.shard_mean, "shard_mean", r) || missing(b.shard_var, "shard_var", r) ||
       missing(b.mean, "mean", r) || missing(b.var, "var", r) || missing(b.invstd, "invstd", r))) {
    return r.status;
  }
  if (track && (missing(b.num_batches_tracked, "num_batches_tracked", r) ||
                (p.channels > 0 && (missing(b.running_mean, "running_mean", r) ||
                                    missing(b.running_var, "running_var", r))))) {
    return r.status;
  }
  std::int64_t total = 0;
  for (std::int64_t k = 0; k < p.shards; ++k) {
    if (b.count[k] < 0 || !add_ok(total, b.count[k], total)) {
      reject(r, BNK_FAILED, "count[%lld] is negative or the total overflows",
             static_cast<long long>(k));
      return r.status;
    }
  }
  const float eps = static_cast<float>(p.eps);
  const std::int64_t t = track ? *b.num_batches_tracked + 1 : 0;
  const float f = !track              ? 0.0F
                  : p.cumulative != 0 ? 1.0F / static_cast<float>(t)
                                      : static_cast<float>(p.momentum);
  const auto n = static_cast<float>(total);
  for (std::int64_t c = 0; c < p.channels; ++c) {
    if (total == 0) {
      b.mean[c] = b.var[c] = b.invstd[c] = nan_f();
      continue;  // no statistics: the running ones stay (as for an empty batch)
    }
    float sum = 0.0F;
    for (std::int64_t k = 0; k < p.shards; ++k) {
      sum += static_cast<float>(b.count[k]) * b.shard_mean[k * p.channels + c];
    }
    const float mean = sum / n;
    float m2 = 0.0F;
    for (std::int64_t k = 0; k < p.shards; ++k) {
      if (b.count[k] == 0) continue;
      const float nk = static_cast<float>(b.count[k]);
      const float d = b.shard_mean[k * p.channels + c] - mean;
      m2 += nk * b.shard_var[k * p.channels + c] + nk * (d * d);
    }
    const float var = m2 / n;
    b.mean[c] = mean;
    b.var[c] = var;
    b.invstd[c] = inv_std(var, eps);
    if (track) {
      const float unbiased = m2 / static_cast<float>(total - 1);
      b.running_mean[c] = (1.0F - f) * b.running_mean[c] + f * mean;
      b.running_var[c] = (1.0F - f) * b.running_var[c] + f * unbiased;
    }
  }
  if (track) *b.num_batches_tracked = t;
  return BNK_OK;
}

// Checks a fold call: false when it ends here, with r.status the answer (an error, or BNK_OK
// for O = 0, where there is nothing to compute); true when the outputs are to be computed.
inline bool fold_ready(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  if (p.struct_size < sizeof(bnk_fold_problem)) {
    return reject(r, BNK_FAILED, "bnk_fold_problem.struct_size %u is too small",
                  static_cast<unsigned>(p.struct_size));
  }
  if (p.out_channels < 0 || p.fan_in < 0) return reject(r, BNK_FAILED, "negative extents");
  if (p.out_channels == 0) return false;  // r.status is BNK_OK
  return !((p.fan_in > 0 &&
            (missing(b.weight, "weight", r) || missing(b.weight_out, "weight_out", r))) ||
           missing(b.gamma, "gamma", r) || missing(b.beta, "beta", r) ||
           missing(b.running_mean, "running_mean", r) || missing(b.running_var, "running_var", r) ||
           missing(b.bias_out, "bias_out", r) || (p.has_bias != 0 && missing(b.bias, "bias", r)));
}

// W'[o, k] = W[o, k]·s[o] and b'[o] = (b[o] − μ[o])·s[o] + β[o] with s = γ·rsqrt(var + ε).
inline bnk_status fold(const bnk_fold_problem& p, const bnk_fold_buffers& b, rejection& r) {
  if (!fold_ready(p, b, r)) return r.status;
  const float eps = static_cast<float>(p.eps);
  for (std::int64_t o = 0; o < p.out_channels; ++o) {
    const float s = b.gamma[o] * inv_std(b.running_var[o], eps);
    for (std::int64_t k = 0; k < p.fan_in; ++k) {
      b.weight_out[o * p.fan_in + k] = b.weight[o * p.fan_in + k] * s;
    }
    const float bias = p.has_bias != 0 ? b.bias[o] : 0.0F;
    b.bias_out[o] = (bias - b.running_mean[o]) * s + b.beta[o];
  }
  return BNK_OK;
}

// ---- ABI glue -------------------------------------------------------------------------------

inline int report(char* message, std::size_t message_size, int status, const char* text) {
  if (message != nullptr && message_size > 0) std::snprintf(message, message_size, "%s", text);
  return status;
}

// Runs `body(rejection&)` with the checks and exception handling every entry point shares.
template <class Body>
int guarded_entry(const void* problem, const void* buffers, char* message, std::size_t message_size,
                  const Body& body) noexcept {
  if (problem == nullptr || buffers == nullptr) {
    return report(message, message_size, BNK_FAILED, "problem or buffers is NULL");
  }
  try {
    rejection r;
    const bnk_status s = body(r);
    return s == BNK_OK ? BNK_OK : report(message, message_size, s, r.why);
  } catch (const std::exception& e) {
    return report(message, message_size, BNK_FAILED, e.what());
  } catch (...) {
    return report(message, message_size, BNK_FAILED, "unknown exception");
  }
}

// A version-1 entry point (float32 batch norm) of policy P's mode M.
template <class P, bnk_mode M>
int entry(const bnk_problem* problem, const bnk_buffers* buffers, char* message,
          std::size_t message_size) noexcept {
  return guarded_entry(problem, buffers, message, message_size, [&](rejection& r) {
    geometry g;
    if (!make_geometry(*problem, k_all_layouts, g, r)) return r.status;
    switch (M) {
      case BNK_FORWARD_TRAINING:
        return bn<P>::forward_training(*problem, *buffers, g, r);
      case BNK_FORWARD_INFERENCE:
        return bn<P>::forward_inference(*problem, *buffers, g, r);
      case BNK_BACKWARD_TRAINING:
        return bn<P>::backward_training(*problem, *buffers, g, r);
      case BNK_BACKWARD_INFERENCE:
        return bn<P>::backward_inference(*problem, *buffers, g, r);
    }
    return BNK_FAILED;
  });
}

// Mode M of kernel N (a struct with the four modes' static functions over float32 γ/β and
// statistics): parameters and statistics of another type are widened into float copies first,
// and the outputs among them rounded back once (so the pipeline stays float32 and each output is
// rounded once to its own type). The bundled kernels and the mutation catalog's family parent
// run through it.
template <class N, bnk_mode M>
bnk_status run_widened(const bnk_problem_v2& p, const bnk_buffers_v2& raw, const group_layout& g,
                       rejection& r) {
  const auto call = [&](const bnk_buffers_v2& b) {
    switch (M) {
      case BNK_FORWARD_TRAINING:
        return N::forward_training(p, b, g, r);
      case BNK_FORWARD_INFERENCE:
        return N::forward_inference(p, b, g, r);
      case BNK_BACKWARD_TRAINING:
        return N::backward_training(p, b, g, r);
      case BNK_BACKWARD_INFERENCE:
        return N::backward_inference(p, b, g, r);
    }
    return BNK_FAILED;
  };
  if (p.types.parameters == BNK_DTYPE_F32 && p.types.statistics == BNK_DTYPE_F32) return call(raw);
  const std::int32_t pt = p.types.parameters;
  const std::int32_t st = p.types.statistics;
  std::vector<float> gamma = widen(raw.gamma, pt, p.parameters);
  std::vector<float> beta = widen(raw.beta, pt, p.parameters);
  std::vector<float> dgamma = widen(raw.diff_gamma, pt, p.parameters);
  std::vector<float> dbeta = widen(raw.diff_beta, pt, p.parameters);
  std::vector<float> rmean = widen(raw.running_mean, st, p.running_size);
  std::vector<float> rvar = widen(raw.running_var, st, p.running_size);
  std::vector<float> smean = widen(raw.save_mean, st, p.statistic_groups);
  std::vector<float> sstat = widen(raw.save_stat, st, p.statistic_groups);
  const auto at = [](std::vector<float>& v, const void* original) -> float* {
    return original == nullptr ? nullptr : v.data();
  };
  bnk_buffers_v2 b = raw;
  b.gamma = at(gamma, raw.gamma);
  b.beta = at(beta, raw.beta);
  b.diff_gamma = at(dgamma, raw.diff_gamma);
  b.diff_beta = at(dbeta, raw.diff_beta);
  b.running_mean = at(rmean, raw.running_mean);
  b.running_var = at(rvar, raw.running_var);
  b.save_mean = at(smean, raw.save_mean);
  b.save_stat = at(sstat, raw.save_stat);
  const bnk_status status = call(b);
  if (status != BNK_OK) return status;
  // Only outputs are written back: inputs may be read-only memory.
  if (M == BNK_FORWARD_TRAINING) {
    narrow(smean, raw.save_mean, st);
    narrow(sstat, raw.save_stat, st);
    if (p.track_running != 0) {
      narrow(rmean, raw.running_mean, st);
      narrow(rvar, raw.running_var, st);
    }
  }
  if (M == BNK_BACKWARD_TRAINING || M == BNK_BACKWARD_INFERENCE) {
    narrow(dgamma, raw.diff_gamma, pt);
    narrow(dbeta, raw.diff_beta, pt);
  }
  return status;
}

// Rejects data types this header does not know (a newer bnoracle's).
inline bool known_types(const bnk_problem_v2& p, rejection& r) {
  const auto known = [](std::int32_t t) { return t >= BNK_DTYPE_F32 && t <= BNK_DTYPE_BF16; };
  if (known(p.types.data) && known(p.types.parameters) && known(p.types.statistics)) return true;
  reject(r, BNK_UNSUPPORTED, "data types %d/%d/%d are not supported by this kernel",
         static_cast<int>(p.types.data), static_cast<int>(p.types.parameters),
         static_cast<int>(p.types.statistics));
  return false;
}

// Every data type, as BNK_DTYPE_BIT bits.
inline constexpr std::uint32_t k_all_types =
    BNK_DTYPE_BIT(BNK_DTYPE_F32) | BNK_DTYPE_BIT(BNK_DTYPE_F16) | BNK_DTYPE_BIT(BNK_DTYPE_BF16);

// A version-2 entry point of policy P's mode M, for the ops in `Ops` (BNK_OP_BIT set) and data,
// parameters and statistics of any type: the data is read and written in its own type, the
// arithmetic is float32.
template <class P, bnk_mode M, std::uint32_t Ops>
int entry_v2(const bnk_problem_v2* problem, const bnk_buffers_v2* buffers, char* message,
             std::size_t message_size) noexcept {
  return guarded_entry(problem, buffers, message, message_size, [&](rejection& r) {
    const bnk_problem_v2& p = *problem;
    if (p.struct_size < sizeof(bnk_problem_v2)) {
      reject(r, BNK_FAILED, "bnk_problem_v2.struct_size %u is too small",
             static_cast<unsigned>(p.struct_size));
      return r.status;
    }
    if (p.op.kind < 0 || p.op.kind > 31 || (Ops & BNK_OP_BIT(p.op.kind)) == 0) {
      reject(r, BNK_UNSUPPORTED, "op %d is not supported by this kernel",
             static_cast<int>(p.op.kind));
      return r.status;
    }
    if (!known_types(p, r)) return r.status;
    group_layout g;
    if (!make_layout(p, k_all_layouts, g, r)) return r.status;
    switch (p.types.data) {
      case BNK_DTYPE_F16:
        return run_widened<norm<P, float16_bits>, M>(p, *buffers, g, r);
      case BNK_DTYPE_BF16:
        return run_widened<norm<P, bfloat16_bits>, M>(p, *buffers, g, r);
      default:
        return run_widened<norm<P, float>, M>(p, *buffers, g, r);
    }
  });
}

// The entry points of the merge and the fold: the same glue as `entry` for the modes.
template <class Problem, class Buffers,
          bnk_status (*Op)(const Problem&, const Buffers&, rejection&)>
int op_entry(const Problem* problem, const Buffers* buffers, char* message,
             std::size_t message_size) noexcept {
  return guarded_entry(problem, buffers, message, message_size,
                       [&](rejection& r) { return Op(*problem, *buffers, r); });
}

// The version-1 table of a kernel: PyTorch convention, every layout, all four modes, saves mean
// and invstd, updates the running statistics, supports momentum = None, merges SyncBN statistics
// and folds.
template <class P>
constexpr bnk_kernel make_table(const char* name) {
  return bnk_kernel{
      .abi_version = BNK_ABI_VERSION,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel)),
      .name = name,
      .version = "1.0",
      .convention = "pytorch",
      .layouts = k_all_layouts,
      .updates_running = 1,
      .supports_cumulative = 1,
      .saves = BNK_SAVES_MEAN_INVSTD,
      .forward_training = &entry<P, BNK_FORWARD_TRAINING>,
      .forward_inference = &entry<P, BNK_FORWARD_INFERENCE>,
      .backward_training = &entry<P, BNK_BACKWARD_TRAINING>,
      .backward_inference = &entry<P, BNK_BACKWARD_INFERENCE>,
      .syncbn_merge = &op_entry<bnk_syncbn_problem, bnk_syncbn_buffers, &syncbn_merge>,
      .fold = &op_entry<bnk_fold_problem, bnk_fold_buffers, &fold>,
  };
}

// Every op of the family.
inline constexpr std::uint32_t k_all_ops =
    BNK_OP_BIT(BNK_OP_BATCH_NORM) | BNK_OP_BIT(BNK_OP_LAYER_NORM) | BNK_OP_BIT(BNK_OP_RMS_NORM) |
    BNK_OP_BIT(BNK_OP_GROUP_NORM) | BNK_OP_BIT(BNK_OP_INSTANCE_NORM);

// The version-2 table of a bundled kernel: as make_table, for the ops in `Ops` and every data type
// of every role. The bundled kernels declare what bnoracle can judge of them.
template <class P, std::uint32_t Ops = BNK_OP_BIT(BNK_OP_BATCH_NORM)>
constexpr bnk_kernel_v2 make_table_v2(const char* name) {
  return bnk_kernel_v2{
      .abi_version = BNK_ABI_VERSION_2,
      .struct_size = static_cast<std::uint32_t>(sizeof(bnk_kernel_v2)),
      .name = name,
      .version = "1.0",
      .convention = "pytorch",
      .ops = Ops,
      .layouts = k_all_layouts,
      .data_types = k_all_types,
      .parameter_types = k_all_types,
      .statistic_types = k_all_types,
      .updates_running = 1,
      .supports_cumulative = 1,
      .saves = BNK_SAVES_MEAN_INVSTD,
      .forward_training = &entry_v2<P, BNK_FORWARD_TRAINING, Ops>,
      .forward_inference = &entry_v2<P, BNK_FORWARD_INFERENCE, Ops>,
      .backward_training = &entry_v2<P, BNK_BACKWARD_TRAINING, Ops>,
      .backward_inference = &entry_v2<P, BNK_BACKWARD_INFERENCE, Ops>,
      .syncbn_merge = &op_entry<bnk_syncbn_problem, bnk_syncbn_buffers, &syncbn_merge>,
      .fold = &op_entry<bnk_fold_problem, bnk_fold_buffers, &fold>,
  };
}

}  // namespace bnoracle::kernels
