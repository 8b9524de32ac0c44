// blocked_threads: every reduction of a channel is split into two halves, elements [0, L/2) and
// [L/2, L), each summed sequentially in float32 on its own std::thread; the two partial sums are
// then added. The variance is two-pass over the halves: the mean from the combined partial sums
// of x, then M2 from the combined partial sums of (x − μ)². The split changes the summation order
// (two chains of L/2 instead of one of L), and the result does not depend on thread timing.
// A group smaller than k_min_threaded_size sums its two halves on the calling thread: the same
// two chains, bit for bit, without two thread creations per sum (a per-entry dγ of layer or RMS
// norm is one sum per column, thousands per call, and each creation costs tens of microseconds,
// far more under the sanitizers).
#include "common/norm_kernel.hpp"

#include <thread>

namespace {

using bnoracle::kernels::channel_view;
using bnoracle::kernels::sequential_sum;

struct blocked_threads {
  static constexpr std::int64_t k_min_threaded_size = 4096;

  template <class Term>
  static float sum(const channel_view& ch, const Term& term) {
    const std::int64_t half = ch.size() / 2;
    float low = 0.0F;
    float high = 0.0F;
    if (ch.size() < k_min_threaded_size) {
      low = sequential_sum(ch, 0, half, term);
      high = sequential_sum(ch, half, ch.size(), term);
    } else {
      // jthread joins on destruction, also when the second constructor throws.
      const std::jthread a([&] { low = sequential_sum(ch, 0, half, term); });
      const std::jthread b([&] { high = sequential_sum(ch, half, ch.size(), term); });
    }
    return low + high;
  }
};

constexpr bnk_kernel_v2 k_table =
    bnoracle::kernels::make_table_v2<blocked_threads, bnoracle::kernels::k_all_ops>(
        "blocked_threads");

}  // namespace

BNK_EXPORT const bnk_kernel_v2* bnoracle_kernel_v2(void) {
  return &k_table;
}
