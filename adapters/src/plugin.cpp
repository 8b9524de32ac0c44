#include "bnoracle/kernel.hpp"

#include "bnoracle/convention.hpp"

#include <dlfcn.h>

#include <array>
#include <cstddef>
#include <cstring>

namespace bnoracle {

namespace {

class table_kernel final : public bn_kernel {
 public:
  table_kernel(const bnk_kernel* table, std::shared_ptr<void> owner)
      : table_(table), owner_(std::move(owner)) {
    info_.name = table->name;
    info_.version = table->version != nullptr ? table->version : "";
    info_.convention = table->convention;
    info_.layouts = table->layouts;
    info_.updates_running = table->updates_running != 0;
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
  // Calls an entry point with a 1024-byte message buffer and checks the status it returns.
  template <class Entry, class Problem, class Buffers>
  static bnk_status call(Entry entry, const Problem* problem, const Buffers* buffers,
                         std::string& message) {
    std::array<char, 1024> buf{};
    const int rc = entry(problem, buffers, buf.data(), buf.size());
    buf.back() = '\0';  // a kernel that forgets the terminator cannot make us read past the end
    message = buf.data();
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
  if (table == nullptr) throw plugin_error("the entry function returned a null table");
  if (table->abi_version != BNK_ABI_VERSION) {
    throw plugin_error("ABI version " + std::to_string(table->abi_version) +
                       " is not supported (this bnoracle speaks version " +
                       std::to_string(BNK_ABI_VERSION) + ")");
  }
  if (table->struct_size < BNK_KERNEL_V1_BASE_SIZE) {
    throw plugin_error("the kernel table is smaller (" + std::to_string(table->struct_size) +
                       " bytes) than ABI version 1 requires (" +
                       std::to_string(BNK_KERNEL_V1_BASE_SIZE) + ")");
  }
  if (table->name == nullptr || std::strlen(table->name) == 0) {
    throw plugin_error("the kernel table has no name");
  }
  if (table->convention == nullptr || find_convention(table->convention) == nullptr) {
    throw plugin_error(std::string("kernel '") + table->name + "' claims an unknown convention '" +
                       (table->convention != nullptr ? table->convention : "(null)") +
                       "' (see: bnoracle conventions)");
  }
  if (table->saves < BNK_SAVES_NONE || table->saves > BNK_SAVES_MEAN_VAR) {
    throw plugin_error("the kernel table has an invalid 'saves' value " +
                       std::to_string(table->saves));
  }
  return std::make_unique<table_kernel>(table, std::move(owner));
}

std::unique_ptr<bn_kernel> load_plugin(const std::string& path) {
  // A path without a slash would make dlopen search the library path: insist on a file.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    throw plugin_error("cannot load kernel library '" + path + "': " + (err ? err : "unknown"));
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
