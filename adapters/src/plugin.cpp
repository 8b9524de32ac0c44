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

// What is wrong with a kernel table, as plugin_error's text; "" when it is usable. Reads every
// string field with a bound.
std::string table_problem(const bnk_kernel* table) {
  if (table == nullptr) return "the entry function returned a null table";
  if (table->abi_version != BNK_ABI_VERSION) {
    return "ABI version " + std::to_string(table->abi_version) +
           " is not supported (this bnoracle speaks version " + std::to_string(BNK_ABI_VERSION) +
           ")";
  }
  if (table->struct_size < BNK_KERNEL_V1_BASE_SIZE) {
    return "the kernel table is smaller (" + std::to_string(table->struct_size) +
           " bytes) than ABI version 1 requires (" + std::to_string(BNK_KERNEL_V1_BASE_SIZE) + ")";
  }
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

class table_kernel final : public bn_kernel {
 public:
  table_kernel(const bnk_kernel* table, std::shared_ptr<void> owner)
      : table_(table), owner_(std::move(owner)) {
    // Validated by table_problem: bounded and terminated. Reports need valid UTF-8.
    info_.name = valid_utf8(*table_string(table->name));
    info_.version = table->version != nullptr ? valid_utf8(*table_string(table->version)) : "";
    info_.convention = *table_string(table->convention);
    info_.layouts = table->layouts;
    info_.updates_running = table->updates_running != 0;
    (void)settle_convention_claim(info_);  // accepted by table_problem: only canonicalizes
    info_.supports_cumulative = table->supports_cumulative != 0;
    info_.saves = static_cast<bnk_saved>(table->saves);
    info_.modes[0] = table->forward_training != nullptr;
    info_.modes[1] = table->forward_inference != nullptr;
    info_.modes[2] = table->backward_training != nullptr;
    info_.modes[3] = table->backward_inference != nullptr;
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
  // Calls an entry point with a 1024-byte message buffer (guarded: writing past it faults and is
  // reported as such) and checks the status it returns.
  template <class Entry, class Problem, class Buffers>
  bnk_status call(Entry entry, const Problem* problem, const Buffers* buffers,
                  std::string& message) {
    message_.clear();
    const int rc = entry(problem, buffers, message_.data(), message_.size());
    // A kernel that forgets the terminator cannot make us read past the end.
    message = valid_utf8(message_.text());
    if (rc < BNK_OK || rc > BNK_FAILED) {
      message = "kernel returned an unknown status " + std::to_string(rc) +
                (message.empty() ? "" : ": " + message);
      return BNK_FAILED;
    }
    return static_cast<bnk_status>(rc);
  }

  const bnk_kernel* table_;
  bnk_syncbn_entry syncbn_ = nullptr;
  bnk_fold_entry fold_ = nullptr;
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

bool kernel_info::supports(layout l) const {
  return (layouts & layout_bit(l)) != 0U;
}

std::uint32_t layout_bit(layout l) {
  switch (l) {
    case layout::nc:
      return BNK_LAYOUT_NC;
    case layout::ncl:
      return BNK_LAYOUT_NCL;
    case layout::nchw:
      return BNK_LAYOUT_NCHW;
    case layout::nhwc:
      return BNK_LAYOUT_NHWC;
    case layout::ncdhw:
      return BNK_LAYOUT_NCDHW;
    case layout::ndhwc:
      return BNK_LAYOUT_NDHWC;
    case layout::strided:
      return BNK_LAYOUT_STRIDED;
  }
  return 0;
}

std::unique_ptr<bn_kernel> wrap_table(const bnk_kernel* table, std::shared_ptr<void> owner) {
  if (const std::string problem = table_problem(table); !problem.empty()) {
    throw plugin_error(problem);
  }
  return std::make_unique<table_kernel>(table, std::move(owner));
}

namespace {

// How far the probe of a library got, in a page shared with the probing child.
enum class probe_stage : int { start, dlopen, dlsym, entry, table, done };

std::string_view while_doing(probe_stage s) {
  switch (s) {
    case probe_stage::start:
    case probe_stage::dlopen:
      return "while being loaded (dlopen, which runs the library's constructors)";
    case probe_stage::dlsym:
      return "while " BNK_ENTRY_SYMBOL " was looked up";
    case probe_stage::entry:
      return "in its entry function " BNK_ENTRY_SYMBOL "()";
    case probe_stage::table:
      return "while its kernel table was read (a string field does not point at readable memory)";
    case probe_stage::done:
      return "after its table was read";
  }
  return "";
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
    void* sym = dlsym(handle, BNK_ENTRY_SYMBOL);
    if (sym == nullptr) return 1;
    bnk_entry_fn entry = nullptr;
    std::memcpy(&entry, &sym, sizeof entry);
    set(probe_stage::entry);
    const bnk_kernel* table = entry();
    set(probe_stage::table);
    const bool usable = table_problem(table).empty();
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
  void* sym = dlsym(handle, BNK_ENTRY_SYMBOL);
  if (sym == nullptr) {
    throw plugin_error("'" + path + "' does not export " + BNK_ENTRY_SYMBOL +
                       " (see docs/kernel-abi.md)");
  }
  bnk_entry_fn entry = nullptr;
  static_assert(sizeof(entry) == sizeof(sym));
  std::memcpy(&entry, &sym, sizeof entry);  // POSIX guarantees data/function pointer round trip
  return wrap_table(entry(), std::move(owner));
}

bnk_problem to_abi(const bn_problem& p, const geometry& g, bool affine, bool track_running) {
  bnk_problem a{};
  a.struct_size = sizeof(bnk_problem);
  a.shape.rank = static_cast<std::int32_t>(2 + p.spatial.size());
  a.shape.layout = layout_bit(p.mem_layout);
  for (int i = 0; i < 5; ++i) {
    a.shape.dims[i] = 1;
    a.shape.strides[i] = 0;
  }
  a.shape.dims[0] = g.n();
  a.shape.dims[1] = g.c();
  for (std::size_t i = 0; i < p.spatial.size(); ++i) a.shape.dims[i + 2] = p.spatial[i];
  for (std::size_t i = 0; i < g.strides().size(); ++i) a.shape.strides[i] = g.strides()[i];
  a.eps = p.eps;
  a.momentum = p.momentum.value_or(0.0);
  a.cumulative = p.momentum ? 0 : 1;
  a.affine = affine ? 1 : 0;
  a.track_running = track_running ? 1 : 0;
  return a;
}

}  // namespace bnoracle
