// libFuzzer target for the validation of a plugin's kernel table (wrap_table, adapters/src/
// plugin.cpp): the input describes a table of ABI version 1 or 2 — its integer fields, which
// pointers are null, and the bytes of its strings, terminated or not — and wrap_table must accept
// it as a usable kernel or refuse it with plugin_error (tools/run-fuzz).
//
// Every string lies in a readable buffer longer than the longest string a table may hold, so an
// unterminated string is refused by the bounded read, not found by the sanitizers. (A pointer to
// unreadable memory is the probe's business: docs/kernel-abi.md.)
#include "bnoracle/convention.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/text.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// Reads the fuzz input front to back; past its end everything is zero.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  template <class T>
  T take() {
    T v{};
    const std::size_t n = std::min(sizeof v, size_ - std::min(pos_, size_));
    std::memcpy(&v, data_ + pos_, n);
    pos_ += sizeof v;
    return v;
  }
  // A string field: up to `room` - 1 bytes, then NUL-terminated or not (filled with 'A' to the
  // end of the buffer) as the input says.
  void string(std::array<char, 512>& buf) {
    buf.fill('A');
    const auto length = static_cast<std::size_t>(take<std::uint16_t>() % buf.size());
    const bool terminated = (take<std::uint8_t>() & 1U) != 0;
    for (std::size_t i = 0; i < length; ++i) buf[i] = take<char>();
    if (terminated && length < buf.size()) buf[length] = '\0';
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

int fake_entry(const bnk_problem*, const bnk_buffers*, char*, std::size_t) {
  return BNK_OK;
}
int fake_entry_v2(const bnk_problem_v2*, const bnk_buffers_v2*, char*, std::size_t) {
  return BNK_OK;
}
int fake_merge(const bnk_syncbn_problem*, const bnk_syncbn_buffers*, char*, std::size_t) {
  return BNK_OK;
}
int fake_fold(const bnk_fold_problem*, const bnk_fold_buffers*, char*, std::size_t) {
  return BNK_OK;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace bnoracle;
  input in(data, size);
  bnk_kernel t{};
  // Small values most of the time, so that the valid ABI version and sizes are found.
  const auto flags = in.take<std::uint16_t>();
  t.abi_version = (flags & 1U) != 0 ? in.take<std::uint32_t>() : BNK_ABI_VERSION;
  t.struct_size = (flags & 2U) != 0 ? in.take<std::uint32_t>() : sizeof(bnk_kernel);
  t.layouts = in.take<std::uint32_t>();
  t.updates_running = in.take<std::int32_t>();
  t.supports_cumulative = in.take<std::int32_t>();
  t.saves = in.take<std::int32_t>();
  std::array<char, 512> name{};
  std::array<char, 512> version{};
  std::array<char, 512> convention{};
  in.string(name);
  in.string(version);
  in.string(convention);
  if ((flags & 4U) != 0) std::strcpy(convention.data(), "pytorch");  // reach the later checks
  t.name = (flags & 8U) != 0 ? nullptr : name.data();
  t.version = (flags & 16U) != 0 ? nullptr : version.data();
  t.convention = (flags & 32U) != 0 ? nullptr : convention.data();
  t.forward_training = (flags & 64U) != 0 ? fake_entry : nullptr;
  t.forward_inference = (flags & 128U) != 0 ? fake_entry : nullptr;
  t.backward_training = (flags & 256U) != 0 ? fake_entry : nullptr;
  t.backward_inference = (flags & 512U) != 0 ? fake_entry : nullptr;
  t.syncbn_merge = (flags & 1024U) != 0 ? fake_merge : nullptr;
  t.fold = (flags & 2048U) != 0 ? fake_fold : nullptr;
  if ((flags & 4096U) != 0) {
    // The same fields as a version-2 table, with the op and data-type sets from the input.
    bnk_kernel_v2 v{};
    v.abi_version = (flags & 1U) != 0 ? t.abi_version : BNK_ABI_VERSION_2;
    v.struct_size = (flags & 2U) != 0 ? t.struct_size : sizeof(bnk_kernel_v2);
    v.name = t.name;
    v.version = t.version;
    v.convention = t.convention;
    v.ops = in.take<std::uint32_t>();
    v.layouts = t.layouts;
    v.data_types = in.take<std::uint32_t>();
    v.parameter_types = in.take<std::uint32_t>();
    v.statistic_types = in.take<std::uint32_t>();
    v.updates_running = t.updates_running;
    v.supports_cumulative = t.supports_cumulative;
    v.saves = t.saves;
    v.forward_training = t.forward_training != nullptr ? fake_entry_v2 : nullptr;
    v.forward_inference = t.forward_inference != nullptr ? fake_entry_v2 : nullptr;
    v.backward_training = t.backward_training != nullptr ? fake_entry_v2 : nullptr;
    v.backward_inference = t.backward_inference != nullptr ? fake_entry_v2 : nullptr;
    v.syncbn_merge = t.syncbn_merge;
    v.fold = t.fold;
    try {
      const auto k = wrap_table(&v);
      // An accepted table: a usable description, and the sets it declared, none of them empty.
      const kernel_info& info = k->info();
      if (info.name.empty() || !is_valid_utf8(info.name) || !is_valid_utf8(info.version) ||
          find_convention(info.convention) == nullptr || info.abi_version != 2 ||
          info.ops != v.ops || info.ops == 0 || info.data_type_bits != v.data_types ||
          info.data_type_bits == 0 || info.parameter_type_bits == 0 ||
          info.statistic_type_bits == 0) {
        std::abort();
      }
    } catch (const plugin_error& e) {
      if (!is_valid_utf8(e.what())) std::abort();
    }
    return 0;
  }
  try {
    const auto k = wrap_table(&t);
    // An accepted table gives a usable description: a name, valid text, a known convention.
    const kernel_info& info = k->info();
    if (info.name.empty() || !is_valid_utf8(info.name) || !is_valid_utf8(info.version) ||
        find_convention(info.convention) == nullptr) {
      std::abort();
    }
    const bool merge_visible =
        t.struct_size >= offsetof(bnk_kernel, syncbn_merge) + sizeof(t.syncbn_merge) &&
        t.syncbn_merge != nullptr;
    if (info.syncbn_merge != merge_visible) std::abort();
  } catch (const plugin_error& e) {
    if (!is_valid_utf8(e.what())) std::abort();
  }
  return 0;
}
