// The reduction map: which elements share a statistic, derived from an op descriptor and a
// problem's geometry. It is the one place that decomposes an element's index: the reference, the
// error model, the judge's messages and the generators all ask it where an element lives — its
// statistic group, its γ/β index and its memory offset.
//
// Elements are numbered in canonical logical order (n, c, spatial...) row-major, as every golden
// per-element output is. Statistic groups are numbered so that, for every op but batch norm, group
// g is the contiguous logical range [g·L, (g+1)·L):
//   batch norm     G = C,          group = c,                 L = N·S
//   instance norm  G = N·C,        group = n·C + c,           L = S
//   group norm     G = N·groups,   group = n·groups + c/(C/groups), L = (C/groups)·S
//   layer, RMS     G = N·C·S / L,  group = index / L,         L = product of the last k extents
//                                                             of (c, spatial...)
// with S the spatial size.
#pragma once

#include "bnoracle/op.hpp"
#include "bnoracle/problem.hpp"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <vector>

namespace bnoracle {

class reduction_map {
 public:
  // Throws invalid_problem when the op does not fit the shape (axes beyond the rank, groups that
  // do not divide C).
  reduction_map(const op_desc& op, const geometry& geom);

  [[nodiscard]] const op_desc& op() const { return op_; }
  [[nodiscard]] const geometry& geom() const { return geom_; }
  // The number of statistic groups, and L: how many elements each one reduces over.
  [[nodiscard]] std::int64_t groups() const { return groups_; }
  [[nodiscard]] std::int64_t group_size() const { return group_size_; }
  // The number of γ (and of β) entries; 0 when the op has none.
  [[nodiscard]] std::int64_t params() const { return params_; }
  // The number of running-statistic entries (C when the op keeps running statistics, else 0) and
  // the entry that statistic group g updates and, in inference, normalizes with: its channel.
  [[nodiscard]] std::int64_t running_size() const { return op_.running_stats ? geom_.c() : 0; }
  [[nodiscard]] std::int64_t running_entry(std::int64_t group) const {
    return op_.kind == op_kind::batch_norm ? group : group % geom_.c();
  }
  // Whether every element of a statistic group has the same γ/β entry (batch and instance norm,
  // and every op without γ/β).
  [[nodiscard]] bool uniform_params() const {
    return op_.params == param_placement::none || op_.kind == op_kind::batch_norm ||
           op_.kind == op_kind::instance_norm;
  }

  struct position {
    std::int64_t group;   // statistic group
    std::int64_t param;   // γ/β index (-1 when the op has none)
    std::int64_t offset;  // memory offset, in elements, from logical element 0
  };

  // Where the element with this canonical logical index lives.
  [[nodiscard]] position locate(std::int64_t logical) const {
    const geometry::coordinates at = geom_.coordinates_of(logical);
    position p{};
    p.offset = geom_.offset(at.n, at.c, at.s);
    p.group = op_.kind == op_kind::batch_norm ? at.c : logical / group_size_;
    switch (op_.params) {
      case param_placement::per_channel:
        p.param = at.c;
        break;
      case param_placement::per_normalized_element:
        p.param = logical % group_size_;
        break;
      case param_placement::none:
        p.param = -1;
        break;
    }
    return p;
  }

  // The positions of consecutive logical indices from `first` (< elements()), one step at a
  // time: the coordinates advance like an odometer, with no division per element (the judge,
  // the error model and the reference walk whole outputs and groups in index order).
  class cursor {
   public:
    cursor(const reduction_map& m, std::int64_t first);
    [[nodiscard]] const position& operator*() const { return p_; }
    [[nodiscard]] const position* operator->() const { return &p_; }
    void next() {
      const geometry& g = m_->geom_;
      if (++s_ == g.spatial_size()) {
        s_ = 0;
        if (++c_ == g.c()) {
          c_ = 0;
          ++n_;
        }
      }
      const bool batch_norm = m_->op_.kind == op_kind::batch_norm;
      if (++k_ == m_->group_size_) {
        k_ = 0;
        if (!batch_norm) ++p_.group;
      }
      if (batch_norm) p_.group = c_;
      p_.offset = g.offset(n_, c_, s_);
      if (p_.param >= 0) p_.param = m_->op_.params == param_placement::per_channel ? c_ : k_;
    }

   private:
    const reduction_map* m_;
    std::int64_t n_ = 0, c_ = 0, s_ = 0;
    std::int64_t k_ = 0;  // index inside the statistic group (every op but batch norm)
    position p_{};
  };

  // The γ/β index of the element with this canonical logical index (-1 when the op has none).
  [[nodiscard]] std::int64_t param_of(std::int64_t logical) const {
    switch (op_.params) {
      case param_placement::per_channel:
        return logical / geom_.spatial_size() % geom_.c();
      case param_placement::per_normalized_element:
        return logical % group_size_;
      case param_placement::none:
        break;
    }
    return -1;
  }

  // Calls f(offset, logical_index) for every element whose γ/β index is `param`, in logical
  // order (so the elements of one statistic group come together).
  template <class F>
  void for_each_of_param(std::int64_t param, F&& f) const {
    if (op_.params == param_placement::per_channel) {
      geom_.for_each_in_channel(param, f);
      return;
    }
    if (group_size_ == 0) return;
    for (std::int64_t li = param; li < geom_.elements(); li += group_size_) {
      const geometry::coordinates at = geom_.coordinates_of(li);
      f(geom_.offset(at.n, at.c, at.s), li);
    }
  }

  // The logical index of the k-th element (0 <= k < L, in logical order) of a statistic group:
  // the inverse of locate's group for code that walks or permutes a group's elements.
  [[nodiscard]] std::int64_t member(std::int64_t group, std::int64_t k) const {
    if (op_.kind == op_kind::batch_norm) {
      const std::int64_t S = geom_.spatial_size();
      return geom_.logical_index(k / S, group, k % S);
    }
    return group * group_size_ + k;
  }

  // Calls f(offset, logical_index) for every element of a statistic group, in logical order.
  template <class F>
  void for_each_in_group(std::int64_t group, F&& f) const {
    if (op_.kind == op_kind::batch_norm) {
      geom_.for_each_in_channel(group, f);
      return;
    }
    if (group_size_ == 0) return;
    const std::int64_t first = group * group_size_;
    cursor at(*this, first);
    for (std::int64_t li = first; li < first + group_size_; ++li, at.next()) f(at->offset, li);
  }

  // For messages: "n=1,c=2,s=3" for an element; "c=2" for a batch-norm group, "n=1,c=2" for an
  // instance-norm group, "n=1,g=0" for a group-norm group, "row=5" for a layer or RMS norm
  // group.
  [[nodiscard]] std::string element_name(std::int64_t logical) const;
  [[nodiscard]] std::string group_name(std::int64_t group) const;
  // "c=2" for a per-channel γ/β entry, "j=5" for a per-normalized-element one.
  [[nodiscard]] std::string param_name(std::int64_t param) const;

 private:
  op_desc op_;
  geometry geom_;
  std::int64_t groups_ = 0;
  std::int64_t group_size_ = 0;
  std::int64_t params_ = 0;
};

// Calls f(g) for every statistic group, spread over the cores when there are several groups and
// enough elements (4096) to pay for the threads; the first exception is rethrown. Results do not
// depend on the number of threads: groups are independent and each is computed exactly.
template <class F>
inline void for_each_group_in_parallel(const reduction_map& map, std::int64_t elements, F&& f) {
  const auto threads = static_cast<std::int64_t>(std::max(1U, std::thread::hardware_concurrency()));
  if (threads == 1 || map.groups() <= 1 || elements < 4096) {
    for (std::int64_t g = 0; g < map.groups(); ++g) f(g);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  {
    std::vector<std::jthread> pool;
    for (std::int64_t t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        try {
          for (std::int64_t g = t; g < map.groups(); g += threads) f(g);
        } catch (...) {
          errors[static_cast<std::size_t>(t)] = std::current_exception();
        }
      });
    }
  }
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace bnoracle
