// The order in which a simulated atomic-add reduction adds its block partial sums, as the
// scheduler would pick it: it differs from process to process and from reduction to reduction,
// so that two calls of the same problem may round differently whether each call runs in a
// process of its own (bnoracle's isolation) or all run in one (in-process runs).
#pragma once

#include <unistd.h>  // getpid

#include <atomic>
#include <cstdint>

namespace bnoracle::kernels::mutants {

// 0, 1 or 2: the block that finishes first. A splitmix64 hash of the process id and a count of
// the reductions this process made.
inline int first_block_to_finish() {
  static std::atomic<std::uint64_t> reductions{0};
  std::uint64_t z = (static_cast<std::uint64_t>(getpid()) << 32U) + reductions.fetch_add(1);
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  z ^= z >> 31U;
  return static_cast<int>(z % 3U);
}

}  // namespace bnoracle::kernels::mutants
