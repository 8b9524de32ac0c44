// The C++ face of the kernel ABI: an interface for in-process kernels and the loader of plugins.
#pragma once

#include "bnoracle/kernel_abi.h"
#include "bnoracle/output.hpp"
#include "bnoracle/problem.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace bnoracle {

// A plugin that cannot be used: missing file, missing symbol, wrong ABI version, malformed table.
class plugin_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A kernel that misbehaved before it could be judged: a library that crashed, exited or hung
// while being loaded, or a kernel process that died or hung before its handshake.
class plugin_fault : public plugin_error {
 public:
  using plugin_error::plugin_error;
};

struct kernel_info {
  std::string name;
  std::string version;
  std::string convention;
  std::uint32_t layouts = 0;
  bool updates_running = false;
  bool supports_cumulative = false;
  bnk_saved saves = BNK_SAVES_NONE;
  bool modes[4] = {false, false, false, false};  // indexed by bn_mode
  bool syncbn_merge = false;                     // the SyncBN statistic merge is provided
  bool fold = false;                             // folding into a preceding layer is provided

  [[nodiscard]] bool supports(bn_mode m) const { return modes[static_cast<int>(m)]; }
  [[nodiscard]] bool supports(layout l) const;
};

// Checks the convention a kernel claims (a name or fields, convention.hpp) and rewrites it in its
// canonical spelling, so that claims compare by name. Returns why the claim is not acceptable
// (unknown, invalid fields, or "none" by a kernel that updates running statistics), "" when it
// is.
[[nodiscard]] std::string settle_convention_claim(kernel_info& info);

// A kernel under test. Implementations must be callable again after any return.
class bn_kernel {
 public:
  virtual ~bn_kernel() = default;
  [[nodiscard]] virtual const kernel_info& info() const = 0;
  // Runs one mode. `message` receives the kernel's text on anything but BNK_OK.
  virtual bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                         std::string& message) = 0;
  // The operations beside the four modes (kernel_abi.h). A kernel that does not provide one
  // keeps these defaults, which answer BNK_UNSUPPORTED.
  virtual bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem,
                                      const bnk_syncbn_buffers& buffers, std::string& message);
  virtual bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                              std::string& message);
};

// The same kernel described by other info: calls are forwarded to `kernel`, which must outlive
// the result. The runner judges a kernel under a convention without running statistics this way
// (updates_running off), whatever its own table says.
[[nodiscard]] std::unique_ptr<bn_kernel> with_info(bn_kernel& kernel, kernel_info info);

// Wraps a C table (from a plugin or linked in). Validates it; throws plugin_error.
[[nodiscard]] std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel* table,
                                                    std::shared_ptr<void> owner = nullptr);
struct load_options {
  // First load the library, call its entry function and read its table in a forked child (with
  // `timeout`): a library that crashes, exits or hangs doing so is reported (plugin_fault) before
  // anything of it runs in this process. Off only for debugging in-process.
  bool probe = true;
  std::chrono::milliseconds timeout{20000};
};

// dlopen()s a shared library and wraps its `bnoracle_kernel_v1` table. Throws plugin_fault when
// the probe saw the library crash, exit or hang, plugin_error when it cannot be used.
[[nodiscard]] std::unique_ptr<bn_kernel> load_plugin(const std::string& path,
                                                     const load_options& options = {});

// The ABI bit of a layout.
[[nodiscard]] std::uint32_t layout_bit(layout l);
// The ABI problem for a validated bnoracle problem.
[[nodiscard]] bnk_problem to_abi(const bn_problem& p, const geometry& g, bool affine,
                                 bool track_running);

}  // namespace bnoracle
