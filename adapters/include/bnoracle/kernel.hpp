// The C++ face of the kernel ABI: an interface for in-process kernels and the loader of plugins.
#pragma once

#include "bnoracle/kernel_abi.h"
#include "bnoracle/op.hpp"
#include "bnoracle/output.hpp"
#include "bnoracle/problem.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
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
  // ABI version 2's sets (kernel_abi.h): BNK_OP_BIT of every op, BNK_DTYPE_BIT of every data type
  // of each role the kernel supports. A version-1 kernel is float32 batch norm.
  std::uint32_t ops = BNK_OP_BIT(BNK_OP_BATCH_NORM);
  std::uint32_t data_type_bits = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  std::uint32_t parameter_type_bits = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  std::uint32_t statistic_type_bits = BNK_DTYPE_BIT(BNK_DTYPE_F32);
  // The ABI (plugins) or protocol (subprocess kernels) version the kernel was loaded with; a
  // C++ kernel may set it. bnoracle calls every kernel through run_v2 whatever it says.
  int abi_version = 1;

  [[nodiscard]] bool supports(bn_mode m) const { return modes[static_cast<int>(m)]; }
  [[nodiscard]] bool supports(layout l) const;
  [[nodiscard]] bool supports(op_kind k) const;
  [[nodiscard]] bool supports(const data_types& t) const;
};

// Checks the convention a kernel claims (a name or fields, convention.hpp) and rewrites it in its
// canonical spelling, so that claims compare by name. Returns why the claim is not acceptable
// (unknown, invalid fields, or "none" by a kernel that updates running statistics), "" when it
// is.
[[nodiscard]] std::string settle_convention_claim(kernel_info& info);

// A kernel under test. Implementations must be callable again after any return.
//
// bnoracle calls every mode through run_v2 (ABI version 2: any op, any data types). A kernel of
// float32 batch norm may implement run (version 1) instead: run_v2's default passes it every
// float32 batch-norm problem, translated (to_v1), and answers BNK_UNSUPPORTED for any other.
class bn_kernel {
 public:
  virtual ~bn_kernel() = default;
  [[nodiscard]] virtual const kernel_info& info() const = 0;
  // Runs one mode of a version-2 problem. `message` receives the kernel's text on anything but
  // BNK_OK.
  virtual bnk_status run_v2(bn_mode mode, const bnk_problem_v2& problem,
                            const bnk_buffers_v2& buffers, std::string& message);
  // Runs one mode of a float32 batch-norm problem (version 1). The default answers
  // BNK_UNSUPPORTED: a kernel implements run_v2, run, or both.
  virtual bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                         std::string& message);
  // The operations beside the four modes (kernel_abi.h). A kernel that does not provide one
  // keeps these defaults, which answer BNK_UNSUPPORTED.
  virtual bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem,
                                      const bnk_syncbn_buffers& buffers, std::string& message);
  virtual bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                              std::string& message);

  // True when run_v2 behaves the same in any process forked after this object was constructed:
  // its behaviour depends only on what the object held then (a C table in a loaded library),
  // never on state the caller changes later. Isolated calls of such a kernel then reuse one
  // persistent worker process (isolation.hpp) instead of forking for every call. The default is
  // false: a kernel written in C++ may keep state its caller changes between calls.
  [[nodiscard]] virtual bool runs_in_worker() const { return false; }
  // Different for every kernel object this process constructs, so that a worker forked for one
  // object is never taken for another constructed later at the same address.
  [[nodiscard]] std::uint64_t instance() const noexcept { return instance_; }

 private:
  std::uint64_t instance_ = next_instance();
  static std::uint64_t next_instance() noexcept;
};

// The same kernel described by other info: calls are forwarded to `kernel`, which must outlive
// the result. The runner judges a kernel under a convention without running statistics this way
// (updates_running off), whatever its own table says.
[[nodiscard]] std::unique_ptr<bn_kernel> with_info(bn_kernel& kernel, kernel_info info);

// Wraps a C table of version 1 or 2 (from a plugin or linked in). Validates it; throws
// plugin_error.
[[nodiscard]] std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel* table,
                                                    std::shared_ptr<void> owner = nullptr);
[[nodiscard]] std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel_v2* table,
                                                    std::shared_ptr<void> owner = nullptr);
struct load_options {
  // First load the library, call its entry function and read its table in a forked child (with
  // `timeout`): a library that crashes, exits or hangs doing so is reported (plugin_fault) before
  // anything of it runs in this process. Off only for debugging in-process.
  bool probe = true;
  std::chrono::milliseconds timeout{20000};
};

// dlopen()s a shared library and wraps its `bnoracle_kernel_v2` table, or its
// `bnoracle_kernel_v1` table when it exports no version-2 one. Throws plugin_fault when
// the probe saw the library crash, exit or hang, plugin_error when it cannot be used.
[[nodiscard]] std::unique_ptr<bn_kernel> load_plugin(const std::string& path,
                                                     const load_options& options = {});

// The ABI bit of a layout.
[[nodiscard]] std::uint32_t layout_bit(layout l);
// The version-1 ABI problem for a validated float32 batch-norm problem.
[[nodiscard]] bnk_problem to_abi(const bn_problem& p, const geometry& g, bool affine,
                                 bool track_running);
// The version-2 ABI problem for a validated problem of any op and data types (without `affine`
// its γ/β placement is none). Throws invalid_problem when the op does not fit the shape.
[[nodiscard]] bnk_problem_v2 to_abi_v2(const bn_problem& p, const geometry& g, bool affine,
                                       bool track_running);
// A version-2 problem as version 1 sees it: nullopt unless it is batch norm (centred, γ/β per
// channel or none, no weight offset) with every role in float32.
[[nodiscard]] std::optional<bnk_problem> to_v1(const bnk_problem_v2& p);
// The version-1 view of float32 buffers.
[[nodiscard]] bnk_buffers to_v1(const bnk_buffers_v2& b);
// A version-1 problem and its buffers as version 2 sees them (float32 batch norm).
[[nodiscard]] bnk_problem_v2 to_v2(const bnk_problem& p);
[[nodiscard]] bnk_buffers_v2 to_v2(const bnk_buffers& b);

// ABI codes of the op descriptor and the data types, and back (nullopt: not a valid code).
[[nodiscard]] bnk_op_desc to_abi(const op_desc& op);
[[nodiscard]] std::optional<op_desc> from_abi(const bnk_op_desc& op);
[[nodiscard]] bnk_dtype to_abi(format_id f);
[[nodiscard]] std::optional<format_id> dtype_from_abi(std::int32_t code);
[[nodiscard]] std::uint32_t op_bit(op_kind k);
[[nodiscard]] std::uint32_t dtype_bit(format_id f);

}  // namespace bnoracle
