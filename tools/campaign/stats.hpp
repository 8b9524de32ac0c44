// What the false-positive campaign records: per kernel, per mode and output, how many elements
// were judged and the distribution of |kernel − exact| / bound over them, plus every failure.
//
// Everything here merges deterministically (sums, and maxima with ties broken by the smaller
// problem index), so a campaign split over worker processes reports exactly what one process
// would, and the JSON form round-trips every field (workers hand their share to the parent in it).
#pragma once

#include "bnoracle/reference.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle::campaign {

// ---- Histogram of ratios ---------------------------------------------------------------------

// Buckets: exactly 0; (0, 2^-20); [2^k, 2^(k+1)) for k = -20 ... -1; and >= 1 (a failure).
inline constexpr int k_lowest_exponent = -20;
inline constexpr std::size_t k_buckets = 3 + static_cast<std::size_t>(-k_lowest_exponent);
inline constexpr std::size_t k_zero_bucket = 0;
inline constexpr std::size_t k_below_bucket = 1;
inline constexpr std::size_t k_fail_bucket = k_buckets - 1;

// The bucket of a ratio (NaN counts as a failure: it never is <= 1).
[[nodiscard]] inline std::size_t bucket_of(double ratio) {
  if (ratio == 0) return k_zero_bucket;
  if (!(ratio < 1)) return k_fail_bucket;
  int e = 0;
  (void)std::frexp(ratio, &e);  // ratio = m·2^e, 1/2 <= m < 1: ratio in [2^(e−1), 2^e)
  const int k = e - 1;
  if (k < k_lowest_exponent) return k_below_bucket;
  return static_cast<std::size_t>(k - k_lowest_exponent) + 2;
}

// Column label of a bucket: "0", "<2^-20", "2^-20" (meaning [2^-20, 2^-19)), ..., ">=1".
[[nodiscard]] inline std::string bucket_label(std::size_t b) {
  if (b == k_zero_bucket) return "0";
  if (b == k_below_bucket) return "<2^" + std::to_string(k_lowest_exponent);
  if (b == k_fail_bucket) return ">=1";
  return "2^" + std::to_string(static_cast<int>(b) - 2 + k_lowest_exponent);
}

// ---- The rows of a report --------------------------------------------------------------------

// One judged output of one mode.
struct row_info {
  bn_mode mode;
  std::string_view output;  // as the report shows it
  std::string_view golden;  // reference output name (save_stat: decided by what the kernel saves)
};

inline constexpr std::array<row_info, 12> k_rows = {{
    {bn_mode::forward_training, "dst", "dst"},
    {bn_mode::forward_training, "save_mean", "mean"},
    {bn_mode::forward_training, "save_stat", ""},
    {bn_mode::forward_training, "running_mean", "running_mean"},
    {bn_mode::forward_training, "running_var", "running_var"},
    {bn_mode::forward_inference, "dst", "dst"},
    {bn_mode::backward_training, "diff_src", "diff_src"},
    {bn_mode::backward_training, "diff_gamma", "diff_gamma"},
    {bn_mode::backward_training, "diff_beta", "diff_beta"},
    {bn_mode::backward_inference, "diff_src", "diff_src"},
    {bn_mode::backward_inference, "diff_gamma", "diff_gamma"},
    {bn_mode::backward_inference, "diff_beta", "diff_beta"},
}};

enum row : std::uint8_t {
  fwd_dst,
  fwd_save_mean,
  fwd_save_stat,
  fwd_running_mean,
  fwd_running_var,
  inf_dst,
  bwd_diff_src,
  bwd_diff_gamma,
  bwd_diff_beta,
  bwi_diff_src,
  bwi_diff_gamma,
  bwi_diff_beta,
};

// ---- Statistics ------------------------------------------------------------------------------

struct row_stats {
  std::int64_t problems = 0;      // problems in which this output was judged
  std::int64_t judged = 0;        // finite (or overflowing) exact values: a ratio is recorded
  std::int64_t class_judged = 0;  // NaN or ±Inf exact values, judged by class
  std::int64_t no_claim = 0;    // bound +Inf: the error model makes no claim (not in the histogram)
  std::int64_t mistrusted = 0;  // problems whose output judge_output calls mistrusted
  std::array<std::int64_t, k_buckets> histogram{};
  double max_ratio = 0;
  std::int64_t max_index = -1;  // problem index of the largest ratio (-1: none judged)
  std::string max_where;        // its element, e.g. "dst[n=1,c=2,s=7]"

  // Keeps the larger maximum; on a tie the smaller problem index.
  void note_max(double ratio, std::int64_t index, const std::string& where) {
    if (max_index < 0 || ratio > max_ratio || (ratio == max_ratio && index < max_index)) {
      max_ratio = ratio;
      max_index = index;
      max_where = where;
    }
  }
  void merge(const row_stats& o) {
    problems += o.problems;
    judged += o.judged;
    class_judged += o.class_judged;
    no_claim += o.no_claim;
    mistrusted += o.mistrusted;
    for (std::size_t b = 0; b < k_buckets; ++b) histogram[b] += o.histogram[b];
    if (o.max_index >= 0) note_max(o.max_ratio, o.max_index, o.max_where);
  }
};

struct failure {
  std::int64_t index = 0;  // problem index
  std::string what;        // "forward_training save_mean: ..." (one line)
  std::string problem;     // the problem, shown (generators.hpp showValue), hex floats
};

// Failures kept in full per kernel (all are counted); the rest are reproducible by index.
inline constexpr std::size_t k_failures_kept = 10;

struct kernel_stats {
  std::int64_t problems = 0;          // problems generated and run
  std::int64_t calls = 0;             // kernel calls
  std::int64_t refusals_matched = 0;  // calls refused where the convention requires a refusal
  std::int64_t unsupported = 0;       // calls the kernel declined as unsupported (skips)
  std::int64_t failed_problems = 0;   // problems with at least one failure
  std::array<row_stats, k_rows.size()> rows{};
  std::vector<failure> failures;  // the first k_failures_kept failing problems, by index

  void add_failure(failure f) {
    failures.push_back(std::move(f));
    std::stable_sort(failures.begin(), failures.end(),
                     [](const failure& a, const failure& b) { return a.index < b.index; });
    if (failures.size() > k_failures_kept) failures.resize(k_failures_kept);
  }
  void merge(const kernel_stats& o) {
    problems += o.problems;
    calls += o.calls;
    refusals_matched += o.refusals_matched;
    unsupported += o.unsupported;
    failed_problems += o.failed_problems;
    for (std::size_t r = 0; r < rows.size(); ++r) rows[r].merge(o.rows[r]);
    for (const failure& f : o.failures) add_failure(f);
  }
  // Totals over every row.
  [[nodiscard]] row_stats total() const {
    row_stats t;
    for (const row_stats& r : rows) t.merge(r);
    t.problems = problems;
    return t;
  }
};

// ---- JSON (the worker hand-over and --json) --------------------------------------------------

// JSON has no infinity or NaN: a non-finite ratio (a NaN result, an error where the bound is 0)
// is written as the string "inf" or "nan".
inline nlohmann::json ratio_to_json(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return "inf";
  return v;
}
inline double ratio_from_json(const nlohmann::json& j) {
  if (j.is_string()) {
    return j.get<std::string>() == "inf" ? std::numeric_limits<double>::infinity()
                                         : std::numeric_limits<double>::quiet_NaN();
  }
  return j.get<double>();
}

inline nlohmann::json to_json(const row_stats& r) {
  nlohmann::json j;
  j["problems"] = r.problems;
  j["judged"] = r.judged;
  j["class_judged"] = r.class_judged;
  j["no_claim"] = r.no_claim;
  j["mistrusted"] = r.mistrusted;
  j["histogram"] = r.histogram;
  j["max_ratio"] = ratio_to_json(r.max_ratio);
  j["max_index"] = r.max_index;
  j["max_where"] = r.max_where;
  return j;
}

inline row_stats row_from_json(const nlohmann::json& j) {
  row_stats r;
  r.problems = j.at("problems").get<std::int64_t>();
  r.judged = j.at("judged").get<std::int64_t>();
  r.class_judged = j.at("class_judged").get<std::int64_t>();
  r.no_claim = j.at("no_claim").get<std::int64_t>();
  r.mistrusted = j.at("mistrusted").get<std::int64_t>();
  r.histogram = j.at("histogram").get<std::array<std::int64_t, k_buckets>>();
  r.max_ratio = ratio_from_json(j.at("max_ratio"));
  r.max_index = j.at("max_index").get<std::int64_t>();
  r.max_where = j.at("max_where").get<std::string>();
  return r;
}

inline nlohmann::json to_json(const kernel_stats& k) {
  nlohmann::json j;
  j["problems"] = k.problems;
  j["calls"] = k.calls;
  j["refusals_matched"] = k.refusals_matched;
  j["unsupported"] = k.unsupported;
  j["failed_problems"] = k.failed_problems;
  nlohmann::json rows = nlohmann::json::array();
  for (const row_stats& r : k.rows) rows.push_back(to_json(r));
  j["rows"] = rows;
  nlohmann::json fs = nlohmann::json::array();
  for (const failure& f : k.failures) {
    fs.push_back({{"index", f.index}, {"what", f.what}, {"problem", f.problem}});
  }
  j["failures"] = fs;
  return j;
}

inline kernel_stats kernel_from_json(const nlohmann::json& j) {
  kernel_stats k;
  k.problems = j.at("problems").get<std::int64_t>();
  k.calls = j.at("calls").get<std::int64_t>();
  k.refusals_matched = j.at("refusals_matched").get<std::int64_t>();
  k.unsupported = j.at("unsupported").get<std::int64_t>();
  k.failed_problems = j.at("failed_problems").get<std::int64_t>();
  const auto& rows = j.at("rows");
  if (rows.size() != k.rows.size()) throw std::runtime_error("campaign: malformed worker result");
  for (std::size_t r = 0; r < k.rows.size(); ++r) k.rows[r] = row_from_json(rows[r]);
  for (const auto& f : j.at("failures")) {
    k.failures.push_back({f.at("index").get<std::int64_t>(), f.at("what").get<std::string>(),
                          f.at("problem").get<std::string>()});
  }
  return k;
}

}  // namespace bnoracle::campaign
