// What a normalization problem is: the op and data types, shape, memory layout, ε, momentum,
// convention.
//
// A tensor is always described logically as (N, C, spatial...) with 0 to 3 spatial extents.
// The layout only says where each logical element lives in memory: offset = Σ index_i·stride_i
// (in elements, relative to logical element 0). Named layouts give the usual dense strides;
// `strided` takes them from the caller (any signed strides, including 0 for broadcast inputs).
// The reference reads inputs through these strides and writes every golden tensor in the
// canonical logical order (n, c, spatial...) row-major, so results do not depend on layout.
#pragma once

#include "bnoracle/op.hpp"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

// Invalid input to the reference: a bad shape, negative ε, a negative running variance, an
// absurd size. The message names the field. (The CLI maps it to exit code 2.)
class invalid_problem : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class layout { nc, ncl, nchw, nhwc, ncdhw, ndhwc, strided };

[[nodiscard]] std::string_view to_string(layout l);
[[nodiscard]] std::optional<layout> parse_layout(std::string_view s);
// Number of spatial dimensions a named layout has (strided: any of 0..3).
[[nodiscard]] std::optional<int> spatial_rank(layout l);
// The dense channels-first layout with `spatial_rank` spatial dims: nc, ncl, nchw, ncdhw (3 and
// above: ncdhw).
[[nodiscard]] layout dense_layout(std::size_t spatial_rank);

// The largest problem the reference accepts, in elements. Goldens take 16 bytes per element, so
// this is 256 GiB of output: far past any machine this runs on, but small enough that every
// index and offset computation stays exact in int64. Callers may impose tighter limits.
inline constexpr std::int64_t k_max_elements = std::int64_t{1} << 34;

struct bn_problem {
  std::int64_t n = 1;
  std::int64_t c = 1;
  std::vector<std::int64_t> spatial;  // 0..3 extents: (L), (H, W) or (D, H, W)
  layout mem_layout = layout::nchw;
  std::vector<std::int64_t> strides;     // layout::strided only: one per (n, c, spatial...)
  double eps = 1e-5;                     // inside the square root; must be finite and >= 0
  std::optional<double> momentum = 0.1;  // the framework's own parameter; nullopt: cumulative
  std::string convention = "pytorch";    // name of a convention record (convention.hpp)
  op_desc op;                            // which normalization (op.hpp): batch norm by default
  data_types types;                      // per-role data types: float32 by default
};

// A validated problem's geometry.
class geometry {
 public:
  explicit geometry(const bn_problem& p);  // throws invalid_problem

  [[nodiscard]] std::int64_t n() const { return n_; }
  [[nodiscard]] std::int64_t c() const { return c_; }
  [[nodiscard]] const std::vector<std::int64_t>& spatial() const { return spatial_; }
  [[nodiscard]] std::int64_t spatial_size() const { return spatial_size_; }
  // Elements per channel, L = N · spatial size: the length of every reduction.
  [[nodiscard]] std::int64_t per_channel() const { return n_ * spatial_size_; }
  [[nodiscard]] std::int64_t elements() const { return per_channel() * c_; }
  [[nodiscard]] const std::vector<std::int64_t>& strides() const { return strides_; }
  // Smallest and largest memory offset touched (0 and -1 for an empty tensor).
  [[nodiscard]] std::int64_t min_offset() const { return min_offset_; }
  [[nodiscard]] std::int64_t max_offset() const { return max_offset_; }

  // The (n, c, s) of a canonical logical index, s being the linear spatial index in row-major
  // order.
  struct coordinates {
    std::int64_t n, c, s;
  };
  [[nodiscard]] coordinates coordinates_of(std::int64_t logical) const {
    const std::int64_t t = logical / spatial_size_;
    return {t / c_, t % c_, logical % spatial_size_};
  }

  // Memory offset and canonical logical index of element (n, c, s).
  [[nodiscard]] std::int64_t offset(std::int64_t n, std::int64_t c, std::int64_t s) const {
    if (sp_linear_) return n * strides_[0] + c * strides_[1] + s * sp_step_;
    return offset_by_dimension(n, c, s);
  }
  [[nodiscard]] std::int64_t logical_index(std::int64_t n, std::int64_t c, std::int64_t s) const {
    return (n * c_ + c) * spatial_size_ + s;
  }

  // Calls f(offset, logical_index) for every element, channel by channel.
  template <class F>
  void for_each_element(F&& f) const {
    for (std::int64_t c = 0; c < c_; ++c) for_each_in_channel(c, f);
  }

  // Calls f(offset, logical_index) for every element of channel c, n-major then spatial.
  template <class F>
  void for_each_in_channel(std::int64_t c, F&& f) const {
    const std::int64_t e0 = ext_[0], e1 = ext_[1], e2 = ext_[2];
    const std::int64_t s0 = sp_stride_[0], s1 = sp_stride_[1], s2 = sp_stride_[2];
    for (std::int64_t in = 0; in < n_; ++in) {
      const std::int64_t base = in * strides_[0] + c * strides_[1];
      std::int64_t li = logical_index(in, c, 0);
      for (std::int64_t i0 = 0; i0 < e0; ++i0) {
        for (std::int64_t i1 = 0; i1 < e1; ++i1) {
          std::int64_t off = base + i0 * s0 + i1 * s1;
          for (std::int64_t i2 = 0; i2 < e2; ++i2, off += s2, ++li) f(off, li);
        }
      }
    }
  }

 private:
  [[nodiscard]] std::int64_t offset_by_dimension(std::int64_t n, std::int64_t c,
                                                 std::int64_t s) const;

  std::int64_t n_ = 0, c_ = 0, spatial_size_ = 1;
  std::vector<std::int64_t> spatial_;
  std::vector<std::int64_t> strides_;
  std::int64_t ext_[3] = {1, 1, 1};        // spatial extents padded to 3
  std::int64_t sp_stride_[3] = {0, 0, 0};  // spatial strides padded to 3
  // Where the spatial offset of flat spatial index s is s·sp_step_ (dense spatial dimensions, in
  // any layout): offset() then needs no division per dimension.
  bool sp_linear_ = false;
  std::int64_t sp_step_ = 0;
  std::int64_t min_offset_ = 0, max_offset_ = -1;
};

// Describes a problem in one line, e.g. "nchw 4x3x2x2 eps=0x1.4f8b588e368f1p-17 momentum=0.1
// convention=pytorch", for messages and reproduction commands.
[[nodiscard]] std::string describe(const bn_problem& p);

}  // namespace bnoracle
