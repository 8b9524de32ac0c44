#include "bnoracle/problem.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace bnoracle {

namespace {

struct layout_name {
  layout value;
  std::string_view name;
  int rank;  // -1: any
};

constexpr std::array<layout_name, 7> k_layouts{{
    {layout::nc, "nc", 0},
    {layout::ncl, "ncl", 1},
    {layout::nchw, "nchw", 2},
    {layout::nhwc, "nhwc", 2},
    {layout::ncdhw, "ncdhw", 3},
    {layout::ndhwc, "ndhwc", 3},
    {layout::strided, "strided", -1},
}};

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > k_max_elements) {
    throw invalid_problem(std::string(what) + ": size exceeds the limit of 2^34 elements");
  }
  return r;
}

}  // namespace

std::string_view to_string(layout l) {
  for (const auto& e : k_layouts) {
    if (e.value == l) return e.name;
  }
  return "?";
}

std::optional<layout> parse_layout(std::string_view s) {
  for (const auto& e : k_layouts) {
    if (e.name == s) return e.value;
  }
  return std::nullopt;
}

layout dense_layout(std::size_t spatial_rank) {
  switch (spatial_rank) {
    case 0:
      return layout::nc;
    case 1:
      return layout::ncl;
    case 2:
      return layout::nchw;
    default:
      return layout::ncdhw;
  }
}

std::optional<int> spatial_rank(layout l) {
  for (const auto& e : k_layouts) {
    if (e.value == l && e.rank >= 0) return e.rank;
  }
  return std::nullopt;
}

geometry::geometry(const bn_problem& p) : n_(p.n), c_(p.c), spatial_(p.spatial) {
  if (p.n < 0) throw invalid_problem("n: must be >= 0, got " + std::to_string(p.n));
  if (p.c < 1) throw invalid_problem("c: must be >= 1, got " + std::to_string(p.c));
  if (p.spatial.size() > 3) {
    throw invalid_problem("spatial: at most 3 spatial dimensions, got " +
                          std::to_string(p.spatial.size()));
  }
  const auto rank = spatial_rank(p.mem_layout);
  if (rank && static_cast<std::size_t>(*rank) != p.spatial.size()) {
    throw invalid_problem("spatial: layout " + std::string(to_string(p.mem_layout)) + " needs " +
                          std::to_string(*rank) + " spatial dimensions, got " +
                          std::to_string(p.spatial.size()));
  }
  for (std::size_t i = 0; i < p.spatial.size(); ++i) {
    if (p.spatial[i] < 1) {
      throw invalid_problem("spatial[" + std::to_string(i) + "]: must be >= 1, got " +
                            std::to_string(p.spatial[i]));
    }
    spatial_size_ = checked_mul(spatial_size_, p.spatial[i], "spatial");
  }
  const std::int64_t per_channel = checked_mul(n_, spatial_size_, "n x spatial");
  (void)checked_mul(per_channel, c_, "n x c x spatial");
  if (!std::isfinite(p.eps) || p.eps < 0) {
    throw invalid_problem("eps: must be finite and >= 0, got " + std::to_string(p.eps));
  }
  if (p.momentum && (!std::isfinite(*p.momentum) || *p.momentum < 0 || *p.momentum > 1)) {
    throw invalid_problem("momentum: must lie in [0, 1], got " + std::to_string(*p.momentum));
  }

  const std::size_t rk = p.spatial.size();
  strides_.assign(rk + 2, 0);
  if (p.mem_layout == layout::strided) {
    if (p.strides.size() != rk + 2) {
      throw invalid_problem("strides: need " + std::to_string(rk + 2) + " strides (n, c, spatial" +
                            "...), got " + std::to_string(p.strides.size()));
    }
    strides_ = p.strides;
  } else {
    if (!p.strides.empty()) {
      throw invalid_problem("strides: only layout 'strided' takes explicit strides");
    }
    const bool channels_last = p.mem_layout == layout::nhwc || p.mem_layout == layout::ndhwc;
    if (channels_last) {
      // (n, spatial..., c) dense.
      std::int64_t s = 1;
      strides_[1] = s;
      s *= c_;
      for (std::size_t i = rk; i-- > 0;) {
        strides_[i + 2] = s;
        s *= p.spatial[i];
      }
      strides_[0] = s;
    } else {
      std::int64_t s = 1;
      for (std::size_t i = rk; i-- > 0;) {
        strides_[i + 2] = s;
        s *= p.spatial[i];
      }
      strides_[1] = s;
      strides_[0] = s * c_;
    }
  }
  for (std::size_t i = 0; i < rk; ++i) {
    ext_[3 - rk + i] = p.spatial[i];
    sp_stride_[3 - rk + i] = strides_[i + 2];
  }
  // The spatial offset is linear in the flat spatial index when every dimension of extent > 1
  // has the stride of the innermost such dimension times the extents inside it (dimensions of
  // extent 1 contribute nothing whatever their stride).
  sp_linear_ = true;
  std::int64_t place = 1;  // product of the extents inside dimension i
  for (int i = 2; i >= 0; --i) {
    if (ext_[i] > 1) {
      if (place == 1) sp_step_ = sp_stride_[i];  // the innermost dimension of extent > 1
      std::int64_t expected = 0;
      if (__builtin_mul_overflow(sp_step_, place, &expected) || sp_stride_[i] != expected) {
        sp_linear_ = false;
      }
    }
    place *= ext_[i];
  }
  // Memory extent, with overflow checks: |index · stride| summed over dimensions.
  if (elements() > 0) {
    std::int64_t lo = 0;
    std::int64_t hi = 0;
    const std::array<std::int64_t, 5> extents{n_, c_, ext_[0], ext_[1], ext_[2]};
    const std::array<std::int64_t, 5> strides{strides_[0], strides_[1], sp_stride_[0],
                                              sp_stride_[1], sp_stride_[2]};
    for (std::size_t i = 0; i < 5; ++i) {
      std::int64_t span = 0;
      if (__builtin_mul_overflow(extents[i] - 1, strides[i], &span) ||
          __builtin_add_overflow(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi)) {
        throw invalid_problem("strides: memory extent overflows int64");
      }
    }
    min_offset_ = lo;
    max_offset_ = hi;
  }
}

std::int64_t geometry::offset_by_dimension(std::int64_t n, std::int64_t c, std::int64_t s) const {
  std::int64_t off = n * strides_[0] + c * strides_[1];
  for (int i = 2; i >= 0; --i) {
    off += (s % ext_[i]) * sp_stride_[i];
    s /= ext_[i];
  }
  return off;
}

std::string describe(const bn_problem& p) {
  std::ostringstream os;
  os << to_string(p.mem_layout) << ' ' << p.n << 'x' << p.c;
  for (const auto s : p.spatial) os << 'x' << s;
  if (p.mem_layout == layout::strided) {
    os << " strides=";
    for (std::size_t i = 0; i < p.strides.size(); ++i) os << (i ? "," : "") << p.strides[i];
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%a", p.eps);
  os << " eps=" << buf;
  if (p.momentum) {
    std::snprintf(buf, sizeof buf, "%.17g", *p.momentum);
    os << " momentum=" << buf;
  } else {
    os << " momentum=none";
  }
  os << " convention=" << p.convention;
  // Batch norm in float32 is described as it always was, so that messages, reproduction commands
  // and reports of existing problems do not change.
  if (p.op != batch_norm_op()) os << " op=" << describe(p.op);
  if (!p.types.all_float32()) os << " types=" << describe(p.types);
  return os.str();
}

}  // namespace bnoracle
