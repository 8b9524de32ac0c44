// The error of a whole output, drawn: what the HTML report plots for every judged output.
//
// judge_elements tells an observer the ratio |error|/bound at the requested level of every
// element it measured. A profile keeps, within a size fixed in advance whatever the tensor:
// - the largest ratio in each of at most k_profile_points runs of consecutive elements (in the
//   reference's logical order), so that a tail bug shows as a spike at the same offset of every
//   row and a layout mix-up as a periodic pattern;
// - the largest ratio per statistic group (a channel of batch norm, a row of layer norm), so that
//   a Bessel-factor or count slip shows as a level shared by every group;
// - a histogram of the ratios over powers of two, so that a bound that is needlessly loose shows
//   as mass far below 1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace bnoracle {

inline constexpr std::int64_t k_profile_points = 256;

// Histogram bins of |error|/bound: exactly 0, then below 2^-10, then [2^k, 2^(k+1)) for
// k = -10 … 2, then 8 and above (a class rule broken counts there too).
inline constexpr int k_histogram_lowest_exponent = -10;
inline constexpr int k_histogram_highest_exponent = 3;
inline constexpr std::size_t k_histogram_bins =
    2 + (k_histogram_highest_exponent - k_histogram_lowest_exponent) + 1;

// The label of histogram bin b ("0", "<2^-10", "2^-10", …, "2^2", ">=2^3").
[[nodiscard]] inline std::string histogram_label(std::size_t b) {
  if (b == 0) return "0";
  if (b == 1) return "<2^" + std::to_string(k_histogram_lowest_exponent);
  if (b + 1 == k_histogram_bins) return ">=2^" + std::to_string(k_histogram_highest_exponent);
  return "2^" + std::to_string(k_histogram_lowest_exponent + static_cast<int>(b) - 2);
}

[[nodiscard]] inline std::size_t histogram_bin(double ratio) {
  if (ratio == 0) return 0;
  if (!(ratio < std::ldexp(1.0, k_histogram_highest_exponent))) return k_histogram_bins - 1;
  if (ratio < std::ldexp(1.0, k_histogram_lowest_exponent)) return 1;
  const int e = std::ilogb(ratio);  // ratio in [2^e, 2^(e+1))
  return static_cast<std::size_t>(2 + e - k_histogram_lowest_exponent);
}

struct output_profile {
  std::int64_t count = 0;         // elements of the output
  std::int64_t bin = 1;           // consecutive elements per point of `elements`
  std::vector<float> elements;    // largest ratio per run of `bin` elements (NaN: none measured;
                                  // +Inf: a class rule broken there)
  std::int64_t groups_total = 0;  // statistic groups of the output's elements (0: not per element)
  std::vector<float> groups;      // largest ratio per group, the first k_profile_points groups
  std::array<std::int64_t, k_histogram_bins> histogram{};  // measured ratios and broken rules
};

// An observer for judge_elements (judge.hpp) that fills a profile. `group_of(i)` is the
// statistic group of element i of a per-element output, or empty for other outputs.
class profile_observer {
 public:
  profile_observer(output_profile& out, std::int64_t count, std::int64_t groups,
                   std::function<std::int64_t(std::int64_t)> group_of)
      : out_(out), group_of_(std::move(group_of)) {
    constexpr float none = std::numeric_limits<float>::quiet_NaN();
    out_.count = count;
    out_.bin = std::max<std::int64_t>(1, (count + k_profile_points - 1) / k_profile_points);
    out_.elements.assign(static_cast<std::size_t>((count + out_.bin - 1) / out_.bin), none);
    out_.groups_total = group_of_ ? groups : 0;
    out_.groups.assign(static_cast<std::size_t>(std::min(out_.groups_total, k_profile_points)),
                       none);
  }

  template <class Event>
  void operator()(const Event& e) const {
    double ratio = 0;
    if (e.kind == decltype(e.kind)::measured) {
      ratio = e.ratio;
    } else if (e.kind == decltype(e.kind)::by_class && !e.class_ok) {
      ratio = std::numeric_limits<double>::infinity();
    } else {
      return;
    }
    ++out_.histogram[histogram_bin(ratio)];
    const auto value = static_cast<float>(ratio);
    keep_max(out_.elements, e.index / out_.bin, value);
    if (group_of_) keep_max(out_.groups, group_of_(e.index), value);
  }

 private:
  static void keep_max(std::vector<float>& v, std::int64_t at, float value) {
    if (at < 0 || at >= static_cast<std::int64_t>(v.size())) return;
    float& slot = v[static_cast<std::size_t>(at)];
    if (std::isnan(slot) || value > slot) slot = value;
  }

  output_profile& out_;
  std::function<std::int64_t(std::int64_t)> group_of_;
};

}  // namespace bnoracle
