#include "bnoracle/kernel.hpp"

#include "bnoracle/convention.hpp"
#include "bnoracle/isolation.hpp"
#include "bnoracle/text.hpp"

#include <dlfcn.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <new>
#include <optional>
#include <system_error>

namespace bnoracle {

namespace {

// Longest name, version or convention a table may hold (bytes, without the NUL). Reading stops
// one byte past it, so an unterminated string is refused instead of read to the end of memory.
constexpr std::size_t k_max_table_string = 255;

// A string of the table: nullopt when it is longer than k_max_table_string (or unterminated).
std::optional<std::string> table_string(const char* p) {
  const std::size_t n = strnlen(p, k_max_table_string + 1);
  if (n > k_max_table_string) return std::nullopt;
  return std::string(p, n);
}

// The version checks of each table: what is wrong with its version and size, "" when fine.
std::string version_problem(const bnk_kernel* table) {
  if (table->abi_version != BNK_ABI_VERSION) {
    return "ABI version " + std::to_string(table->abi_version) + " in a " + BNK_ENTRY_SYMBOL +
           " table is not supported (that symbol returns version " +
           std::to_string(BNK_ABI_VERSION) + " tables; version " +
           std::to_string(BNK_ABI_VERSION_2) + " is exported as " + BNK_ENTRY_SYMBOL_V2 + ")";
  }
  if (table->struct_size < BNK_KERNEL_V1_BASE_SIZE) {
    return "the kernel table is smaller (" + std::to_string(table->struct_size) +
           " bytes) than ABI version 1 requires (" + std::to_string(BNK_KERNEL_V1_BASE_SIZE) + ")";
  }
  return "";
}

std::string version_problem(const bnk_kernel_v2* table) {
  if (table->abi_version != BNK_ABI_VERSION_2) {
    return "ABI version " + std::to_string(table->abi_version) + " in a " + BNK_ENTRY_SYMBOL_V2 +
           " table is not supported (that symbol returns version " +
           std::to_string(BNK_ABI_VERSION_2) + " tables)";
  }
  if (table->struct_size < sizeof(bnk_kernel_v2)) {
    return "the kernel table is smaller (" + std::to_string(table->struct_size) +
           " bytes) than ABI version 2 requires (" + std::to_string(sizeof(bnk_kernel_v2)) + ")";
  }
  constexpr std::uint32_t all_ops = (1U << (BNK_OP_INSTANCE_NORM + 1)) - 1U;
  constexpr std::uint32_t all_types = (1U << (BNK_DTYPE_BF16 + 1)) - 1U;
  if (table->ops == 0 || (table->ops & ~all_ops) != 0) {
    return "the kernel table's 'ops' (" + std::to_string(table->ops) +
           ") must be a non-empty set of BNK_OP_BIT values";
  }
  const std::pair<const char*, std::uint32_t> sets[] = {
      {"data_types", table->data_types},
      {"parameter_types", table->parameter_types},
      {"statistic_types", table->statistic_types}};
  for (const auto& [field, bits] : sets) {
    if (bits == 0 || (bits & ~all_types) != 0) {
      return std::string("the kernel table's '") + field + "' (" + std::to_string(bits) +
             ") must be a non-empty set of BNK_DTYPE_BIT values";
    }
  }
  return "";
}

// What is wrong with a kernel table, as plugin_error's text; "" when it is usable. Reads every
// string field with a bound.
template <class Table>
std::string table_problem(const Table* table) {
  if (table == nullptr) return "the entry function returned a null table";
  if (std::string why = version_problem(table); !why.empty()) return why;
  const std::optional<std::string> name =
      table->name != nullptr ? table_string(table->name) : std::nullopt;
  if (table->name == nullptr || (name && name->empty())) return "the kernel table has no name";
  if (!name) {
    return "the kernel table's name is longer than " + std::to_string(k_max_table_string) +
           " bytes or not terminated";
  }
  if (table->version != nullptr && !table_string(table->version)) {
    return "the kernel table's version is longer than " + std::to_string(k_max_table_string) +
           " bytes or not terminated";
  }
  const std::optional<std::string> convention =
      table->convention != nullptr ? table_string(table->convention) : std::nullopt;
  if (!convention) {
    return "kernel '" + valid_utf8(*name) + "' claims an unknown convention '" +
           (table->convention == nullptr ? std::string("(null)") : std::string("(unterminated)")) +
           "' (see: bnoracle conventions)";
  }
  kernel_info claim;
  claim.name = valid_utf8(*name);
  claim.convention = valid_utf8(*convention);
  claim.updates_running = table->updates_running != 0;
  if (std::string why = settle_convention_claim(claim); !why.empty()) return why;
  if (table->saves < BNK_SAVES_NONE || table->saves > BNK_SAVES_MEAN_VAR) {
    return "the kernel table has an invalid 'saves' value " + std::to_string(table->saves);
  }
  return "";
}

// The fields version 1 and 2 tables share, validated by table_problem.
template <class Table>
kernel_info common_info(const Table* table) {
  kernel_info info;
  // Validated by table_problem: bounded and terminated. Reports need valid UTF-8.
  info.name = valid_utf8(*table_string(table->name));
  info.version = table->version != nullptr ? valid_utf8(*table_string(table->version)) : "";
  info.convention = *table_string(table->convention);
  info.layouts = table->layouts;
  info.updates_running = table->updates_running != 0;
  (void)settle_convention_claim(info);  // accepted by table_problem: only canonicalizes
  info.supports_cumulative = table->supports_cumulative != 0;
  info.saves = static_cast<bnk_saved>(table->saves);
  info.modes[0] = table->forward_training != nullptr;
  info.modes[1] = table->forward_inference != nullptr;
  info.modes[2] = table->backward_training != nullptr;
  info.modes[3] = table->backward_inference != nullptr;
  return info;
}

// Calls an entry point with a 1024-byte message buffer (guarded: writing past it faults and is
// reported as such) and checks the status it returns.
template <class Entry, class Problem, class Buffers>
bnk_status call_entry(Entry entry, const Problem* problem, const Buffers* buffers,
                      const guarded_message& buffer, std::string& message) {
  buffer.clear();
  const int rc = entry(problem, buffers, buffer.data(), buffer.size());
  // A kernel that forgets the terminator cannot make us read past the end.
  message = valid_utf8(buffer.text());
  if (rc < BNK_OK || rc > BNK_FAILED) {
    message = "kernel returned an unknown status " + std::to_string(rc) +
              (message.empty() ? "" : ": " + message);
    return BNK_FAILED;
  }
  return static_cast<bnk_status>(rc);
}

class table_kernel final : public bn_kernel {
 public:
  table_kernel(const bnk_kernel* table, std::shared_ptr<void> owner)
      : table_(table), owner_(std::move(owner)), info_(common_info(table)) {
    // Fields appended within version 1 exist only in tables at least that large.
    if (table->struct_size >= offsetof(bnk_kernel, syncbn_merge) + sizeof(table->syncbn_merge)) {
      syncbn_ = table->syncbn_merge;
    }
    if (table->struct_size >= offsetof(bnk_kernel, fold) + sizeof(table->fold)) {
      fold_ = table->fold;
    }
    info_.syncbn_merge = syncbn_ != nullptr;
    info_.fold = fold_ != nullptr;
  }

  [[nodiscard]] const kernel_info& info() const override { return info_; }
  // A C table: nothing the caller changes later reaches the entry points.
  [[nodiscard]] bool runs_in_worker() const override { return true; }

  bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    const std::array<bnk_entry, 4> entries{table_->forward_training, table_->forward_inference,
                                           table_->backward_training, table_->backward_inference};
    const bnk_entry entry = entries[static_cast<std::size_t>(mode)];
    if (entry == nullptr) {
      message = "mode not provided by the kernel";
      return BNK_UNSUPPORTED;
    }
    return call(entry, &problem, &buffers, message);
  }

  bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem, const bnk_syncbn_buffers& buffers,
                              std::string& message) override {
    if (syncbn_ == nullptr) return bn_kernel::run_syncbn_merge(problem, buffers, message);
    return call(syncbn_, &problem, &buffers, message);
  }

  bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                      std::string& message) override {
    if (fold_ == nullptr) return bn_kernel::run_fold(problem, buffers, message);
    return call(fold_, &problem, &buffers, message);
  }

 private:
  template <class Entry, class Problem, class Buffers>
  bnk_status call(Entry entry, const Problem* problem, const Buffers* buffers,
                  std::string& message) {
    return call_entry(entry, problem, buffers, message_, message);
  }

  const bnk_kernel* table_;
  bnk_syncbn_entry syncbn_ = nullptr;
  bnk_fold_entry fold_ = nullptr;
  std::shared_ptr<void> owner_;  // keeps the library loaded while the kernel lives
  kernel_info info_;
  guarded_message message_{1024};
};

// A version-2 table: every op and data type its sets name, called without translation.
class table_kernel_v2 final : public bn_kernel {
 public:
  table_kernel_v2(const bnk_kernel_v2* table, std::shared_ptr<void> owner)
      : table_(table), owner_(std::move(owner)), info_(common_info(table)) {
    info_.ops = table->ops;
    info_.data_type_bits = table->data_types;
    info_.parameter_type_bits = table->parameter_types;
    info_.statistic_type_bits = table->statistic_types;
    info_.syncbn_merge = table->syncbn_merge != nullptr;
    info_.fold = table->fold != nullptr;
    info_.abi_version = 2;
  }

  [[nodiscard]] const kernel_info& info() const override { return info_; }
  [[nodiscard]] bool runs_in_worker() const override { return true; }

  bnk_status run_v2(bn_mode mode, const bnk_problem_v2& problem, const bnk_buffers_v2& buffers,
                    std::string& message) override {
    const std::array<bnk_entry_v2, 4> entries{table_->forward_training, table_->forward_inference,
                                              table_->backward_training,
                                              table_->backward_inference};
    const bnk_entry_v2 entry = entries[static_cast<std::size_t>(mode)];
    if (entry == nullptr) {
      message = "mode not provided by the kernel";
      return BNK_UNSUPPORTED;
    }
    return call_entry(entry, &problem, &buffers, message_, message);
  }

  // A version-1 call (a caller holding version-1 structures) is the same problem in version 2.
  bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    return run_v2(mode, to_v2(problem), to_v2(buffers), message);
  }

  bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem, const bnk_syncbn_buffers& buffers,
                              std::string& message) override {
    if (table_->syncbn_merge == nullptr) {
      return bn_kernel::run_syncbn_merge(problem, buffers, message);
    }
    return call_entry(table_->syncbn_merge, &problem, &buffers, message_, message);
  }

  bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                      std::string& message) override {
    if (table_->fold == nullptr) return bn_kernel::run_fold(problem, buffers, message);
    return call_entry(table_->fold, &problem, &buffers, message_, message);
  }

 private:
  const bnk_kernel_v2* table_;
  std::shared_ptr<void> owner_;  // keeps the library loaded while the kernel lives
  kernel_info info_;
  guarded_message message_{1024};
};

}  // namespace

bnk_status bn_kernel::run_syncbn_merge(const bnk_syncbn_problem& /*problem*/,
                                       const bnk_syncbn_buffers& /*buffers*/,
                                       std::string& message) {
  message = "the SyncBN merge is not provided by the kernel";
  return BNK_UNSUPPORTED;
}

bnk_status bn_kernel::run_fold(const bnk_fold_problem& /*problem*/,
                               const bnk_fold_buffers& /*buffers*/, std::string& message) {
  message = "folding is not provided by the kernel";
  return BNK_UNSUPPORTED;
}

namespace {

class described_kernel final : public bn_kernel {
 public:
  described_kernel(bn_kernel& k, kernel_info info) : kernel_(k), info_(std::move(info)) {}
  [[nodiscard]] const kernel_info& info() const override { return info_; }
  // The wrapped kernel was constructed before this object and is only forwarded to.
  [[nodiscard]] bool runs_in_worker() const override { return kernel_.runs_in_worker(); }
  bnk_status run_v2(bn_mode mode, const bnk_problem_v2& problem, const bnk_buffers_v2& buffers,
                    std::string& message) override {
    return kernel_.run_v2(mode, problem, buffers, message);
  }
  bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    return kernel_.run(mode, problem, buffers, message);
  }
  bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem, const bnk_syncbn_buffers& buffers,
                              std::string& message) override {
    return kernel_.run_syncbn_merge(problem, buffers, message);
  }
  bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                      std::string& message) override {
    return kernel_.run_fold(problem, buffers, message);
  }

 private:
  bn_kernel& kernel_;
  kernel_info info_;
};

}  // namespace

std::unique_ptr<bn_kernel> with_info(bn_kernel& kernel, kernel_info info) {
  return std::make_unique<described_kernel>(kernel, std::move(info));
}

std::string settle_convention_claim(kernel_info& info) {
  const convention* c = find_convention(info.convention);
  if (c == nullptr) {
    return "kernel '" + info.name + "' claims an " + convention_error(info.convention) +
           " (see: bnoracle conventions)";
  }
  if (!c->running_stats && info.updates_running) {
    return "kernel '" + info.name +
           "' claims convention none (no running statistics) but updates running statistics";
  }
  info.convention = std::string(c->name);
  return "";
}

std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel* table, std::shared_ptr<void> owner) {
  if (const std::string problem = table_problem(table); !problem.empty()) {
    throw plugin_error(problem);
  }
  return std::make_unique<table_kernel>(table, std::move(owner));
}

std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel_v2* table, std::shared_ptr<void> owner) {
  if (const std::string problem = table_problem(table); !problem.empty()) {
    throw plugin_error(problem);
  }
  return std::make_unique<table_kernel_v2>(table, std::move(owner));
}

namespace {

// How far the probe of a library got, in a page shared with the probing child.
enum class probe_stage : int { start, dlopen, dlsym, entry_v1, entry_v2, table, done };

std::string_view while_doing(probe_stage s) {
  switch (s) {
    case probe_stage::start:
    case probe_stage::dlopen:
      return "while being loaded (dlopen, which runs the library's constructors)";
    case probe_stage::dlsym:
      return "while " BNK_ENTRY_SYMBOL_V2 " and " BNK_ENTRY_SYMBOL " were looked up";
    case probe_stage::entry_v1:
      return "in its entry function " BNK_ENTRY_SYMBOL "()";
    case probe_stage::entry_v2:
      return "in its entry function " BNK_ENTRY_SYMBOL_V2 "()";
    case probe_stage::table:
      return "while its kernel table was read (a string field does not point at readable memory)";
    case probe_stage::done:
      return "after its table was read";
  }
  return "";
}

// The entry function a library exports: version 2 when it has one, else version 1 (both null
// when it has neither).
struct entry_functions {
  bnk_entry_fn_v2 v2 = nullptr;
  bnk_entry_fn v1 = nullptr;
};

entry_functions find_entry(void* handle) {
  entry_functions e;
  // POSIX guarantees the round trip of a function pointer through dlsym's void*.
  static_assert(sizeof(e.v2) == sizeof(void*) && sizeof(e.v1) == sizeof(void*));
  if (void* sym = dlsym(handle, BNK_ENTRY_SYMBOL_V2); sym != nullptr) {
    std::memcpy(&e.v2, &sym, sizeof e.v2);
  } else if (void* sym1 = dlsym(handle, BNK_ENTRY_SYMBOL); sym1 != nullptr) {
    std::memcpy(&e.v1, &sym1, sizeof e.v1);
  }
  return e;
}

// Loads the library, looks up the entry, calls it and validates the table in a forked child
// (run_isolated), so that a library which crashes, exits or hangs in any of these steps is
// reported instead of taking bnoracle down. Returns normally when every step completed or one
// failed cleanly (the caller then repeats the steps in-process and reports that failure);
// throws plugin_fault otherwise.
void probe_library(const std::string& file, const std::string& path,
                   std::chrono::milliseconds timeout) {
  void* page = mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(), "probing a kernel library: mmap");
  }
  auto* stage = new (page) std::atomic<int>(static_cast<int>(probe_stage::start));
  auto set = [stage](probe_stage s) { stage->store(static_cast<int>(s)); };
  const isolated_call probe = [&file, &set](char* /*message*/, std::size_t /*size*/) -> int {
    set(probe_stage::dlopen);
    void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return 1;
    set(probe_stage::dlsym);
    const entry_functions entry = find_entry(handle);
    bool usable = false;
    if (entry.v2 != nullptr) {
      set(probe_stage::entry_v2);
      const bnk_kernel_v2* table = entry.v2();
      set(probe_stage::table);
      usable = table_problem(table).empty();
    } else if (entry.v1 != nullptr) {
      set(probe_stage::entry_v1);
      const bnk_kernel* table = entry.v1();
      set(probe_stage::table);
      usable = table_problem(table).empty();
    }
    set(probe_stage::done);
    return usable ? 0 : 1;
  };
  guarded_arena none;
  run_result r;
  try {
    r = run_isolated(probe, none, timeout);
  } catch (...) {
    munmap(page, sizeof(std::atomic<int>));
    throw;
  }
  const auto reached = static_cast<probe_stage>(stage->load());
  munmap(page, sizeof(std::atomic<int>));
  if (r.ok()) return;
  std::string what = r.reason;
  if (r.kind == outcome::exited) {
    what = "exited with code " + std::to_string(r.exit_code) + " (it called exit() or _exit())";
  }
  throw plugin_fault("kernel library '" + path + "' " + what + ", " +
                     std::string(while_doing(reached)) +
                     "; this happened in an isolated child, and the library was not loaded");
}

}  // namespace

std::unique_ptr<bn_kernel> load_plugin(const std::string& path, const load_options& options) {
  // A path without a slash would make dlopen search the library path: insist on a file.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  if (options.probe) probe_library(file, path, options.timeout);
  // RTLD_NODELETE: dlclose never unloads the library, so its destructors and atexit handlers do
  // not run in this process after its last call (where a crash or an exit() could change the
  // verdict's exit code); the CLI ends with _Exit once a plugin was loaded.
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    throw plugin_error("cannot load kernel library '" + path +
                       "': " + valid_utf8(err != nullptr ? err : "unknown"));
  }
  std::shared_ptr<void> owner(handle, [](void* h) { dlclose(h); });
  const entry_functions entry = find_entry(handle);
  if (entry.v2 != nullptr) return wrap_table(entry.v2(), std::move(owner));
  if (entry.v1 != nullptr) return wrap_table(entry.v1(), std::move(owner));
  throw plugin_error("'" + path + "' exports neither " + BNK_ENTRY_SYMBOL_V2 + " nor " +
                     BNK_ENTRY_SYMBOL + " (see docs/kernel-abi.md)");
}

}  // namespace bnoracle
