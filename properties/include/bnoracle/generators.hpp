// bnoracle's own RapidCheck generators for batch-norm problems.
//
// RapidCheck's float generators draw from a narrow range with no NaN, Inf, subnormals or wide
// exponents, which is where batch-norm kernels break. These draw float32 by bit pattern with
// weighted exponents, shapes with odd and degenerate sizes, channels with offsets 10^k, nearly
// constant channels, ε near the variance, γ, β and running statistics away from 1, 0, 0, 1 and
// momenta away from 0, 1/2 and 1. Everything shrinks towards small shapes and plain values.
//
// Two data domains:
// - `sound`: finite data on which a numerically sound float32 kernel is expected to meet the
//   error model (docs/properties.md "Domain"): |x| below 2^52, deviations whose squares sum
//   far below FLT_MAX, variances far above the subnormal range unless a channel is constant.
// - `any`: adds ±Inf, NaN, subnormals and ±0 to some channels, and a NaN or infinite running
//   mean or a NaN running variance to some, where the reference's class rules decide (NaN
//   confinement, undefined statistics). Element-wise (inference) properties also draw any
//   float32 at all, up to FLT_MAX.
#pragma once

#include "bnoracle/fixture.hpp"
#include "bnoracle/problem.hpp"

#include <rapidcheck.h>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace bnoracle {

// One generated problem with its data, tensors in canonical logical order (n, c, spatial...).
// For the ops other than batch norm γ/β have one entry per parameter (reduction_map::params) and
// the running statistics one per channel where the op keeps them.
struct property_case {
  bn_problem problem;  // convention: set from the kernel's claim when the case runs
  bool affine = true;
  std::vector<float> src;
  std::vector<float> diff_dst;
  std::vector<float> gamma, beta;                // C each (all ones/zeros when not affine)
  std::vector<float> running_mean, running_var;  // C each: the state before the step (or none)
  std::int64_t num_batches_tracked = 0;
};

// Shape, layout and strides, human-readable ("nhwc 3x2x5x1", "strided(...)"), then every
// tensor in hex floats: what a failing property prints as its counterexample.
void showValue(const property_case& c, std::ostream& os);

namespace gen {

enum class data_domain : std::uint8_t { sound, any };

// What the shape generator may produce.
struct shape_options {
  std::uint32_t layouts = ~0U;       // kernel ABI layout bits allowed (BNK_LAYOUT_*)
  std::int64_t min_per_channel = 2;  // L = N·spatial at least this (0 allows empty batches)
  std::int64_t min_channels = 1;     // C at least this
  std::int64_t max_elements = 4096;  // N·C·spatial at most this (scaled down by RapidCheck size)
  bool strided_negative = true;      // strided views may have negative strides
};

// A float32 by bit pattern: sign, an exponent uniform in [min_exp, max_exp] (unbiased, as in
// 2^e), a uniformly random mantissa. With `specials`, also ±0, subnormals, ±FLT_MAX-scale values.
[[nodiscard]] rc::Gen<float> float32(int min_exp, int max_exp, bool specials = false);
// Any float32 bit pattern class: normal over the whole range, subnormal, ±0, ±Inf, NaN.
[[nodiscard]] rc::Gen<float> any_float32();
// NaN, ±Inf, a subnormal or ±0: what `any`-domain batches get (a value near FLT_MAX would
// overflow the intermediates of every float32 reduction, outside the error model's domain).
[[nodiscard]] rc::Gen<float> special_float32();

// Shapes with odd and degenerate sizes (N or spatial extents of 1, C of 1, primes) in every
// layout allowed, including strided views with padding, and reversed axes when allowed.
[[nodiscard]] rc::Gen<bn_problem> problem(const shape_options& shape = {});

// A momentum away from 0, 1/2 and 1, or (with `cumulative`) sometimes nullopt.
[[nodiscard]] rc::Gen<std::optional<double>> momentum(bool cumulative);

// A whole case: problem, channel data of varied kinds, dy, γ, β, running statistics, ε (often
// near the variance of a channel), in the given domain.
struct case_options {
  shape_options shape;
  data_domain domain = data_domain::sound;
  bool cumulative = false;  // momentum=None may be drawn
  // Every src value is an integer multiple of a per-channel power of two with at most
  // `grid_bits` significant bits (0: unrestricted). Properties that shift data by a constant
  // use this so that the shifted input is exact in float32.
  int grid_bits = 0;
  // The ops to draw from (layer_norm, rms_norm, group_norm, instance_norm); empty: batch norm.
  // Layer and RMS norm get 1 to rank + 1 normalized axes and RMS norm sometimes the weight
  // offset; group norm a G dividing C (1 and C included); instance norm running statistics
  // half of the time. Data, dy and the ε choice are drawn per statistic group, γ and β per
  // parameter entry.
  std::vector<op_kind> ops{};
  // The data types of the case (float32: as drawn). Otherwise every value is rounded to its
  // role's format (a finite value beyond the format's range saturating to its largest finite
  // value), and a few elements of src and diff_dst are replaced by values of the data format
  // drawn by bit pattern: its subnormals, its largest finite value, values whose squares
  // overflow float16 but not float32, and values one ulp apart.
  data_types types{};
};
[[nodiscard]] rc::Gen<property_case> property_case_of(const case_options& options);
// A value of format `f` drawn by bit pattern from the kinds above.
[[nodiscard]] rc::Gen<float> narrow_special(const float_format& f);

// The fold's data: 1 to 8 output channels of 1 to 27 weights, with or without the layer's bias
// (near the running mean half of the time, so that b − μ cancels), running means at 10^k,
// running variances of every kind relative to ε (0, below, near, far above, subnormal), ε of
// 0, 2^-20, 10^-5, 10^-3 or ½; in the `any` domain one input of one channel NaN or infinite.
[[nodiscard]] rc::Gen<fold_data> fold_data_of(data_domain domain);
// The SyncBN merge's data under `convention`: 1 to 8 shards of 0, 1 or more elements (two in
// all at least), per channel shard means near each other or far apart around an offset,
// variances of every kind relative to ε (near-constant shards), momentum None some of the time
// when `cumulative`; in the `any` domain one shard or running statistic NaN or infinite.
[[nodiscard]] rc::Gen<syncbn_data> syncbn_data_of(const std::string& convention, data_domain domain,
                                                  bool cumulative);
// The data of a fold or a merge in hex floats, as a failing property shows it.
void show_fold_data(const fold_data& d, std::ostream& os);
void show_syncbn_data(const syncbn_data& d, std::ostream& os);

}  // namespace gen
}  // namespace bnoracle

namespace rc {

// Default generators: sound-domain cases in any layout, and problems.
template <>
struct Arbitrary<bnoracle::property_case> {
  static Gen<bnoracle::property_case> arbitrary() { return bnoracle::gen::property_case_of({}); }
};
template <>
struct Arbitrary<bnoracle::bn_problem> {
  static Gen<bnoracle::bn_problem> arbitrary() { return bnoracle::gen::problem(); }
};

}  // namespace rc
