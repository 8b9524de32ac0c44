#include "bnoracle/isolation.hpp"

#include "bnoracle/format.hpp"
#include "bnoracle/text.hpp"

#include <dirent.h>
#include <fcntl.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cfenv>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace bnoracle {

namespace {

std::size_t page_size() {
  static const std::size_t size = [] {
    const long s = sysconf(_SC_PAGESIZE);
    return s > 0 ? static_cast<std::size_t>(s) : std::size_t{4096};
  }();
  return size;
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::size_t element_size(element_type t) {
  switch (t) {
    case element_type::f32:
      return 4;
    case element_type::i64:
      return 8;
    case element_type::f16:
    case element_type::bf16:
      break;
  }
  return 2;
}

std::string_view type_name(element_type t) {
  switch (t) {
    case element_type::f32:
      return "float";
    case element_type::i64:
      return "int64";
    case element_type::f16:
      return "float16";
    case element_type::bf16:
      break;
  }
  return "bfloat16";
}

// The canary byte at an offset in the arena: varies with the offset, so a shifted copy of the
// canary (or any constant fill) does not pass for it.
unsigned char canary_byte(std::size_t offset) {
  return static_cast<unsigned char>(0x5Au ^ ((offset * 0x9Du) & 0xFFu));
}

// canary_byte repeats every 256 offsets: two periods, so that the bytes of offsets o .. o + 255
// start at index o mod 256. Canaries are written and compared 256 bytes at a time from it (a
// call has a few kilobytes of them per buffer; byte by byte they were a tenth of a check's time).
const std::array<unsigned char, 512>& canary_pattern() {
  static const std::array<unsigned char, 512> pattern = [] {
    std::array<unsigned char, 512> p{};
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = canary_byte(i);
    return p;
  }();
  return pattern;
}

void write_canaries(unsigned char* base, std::size_t from, std::size_t to) {
  const auto& p = canary_pattern();
  for (std::size_t o = from; o < to;) {
    const std::size_t n = std::min<std::size_t>(256, to - o);
    std::memcpy(base + o, p.data() + (o & 0xFFu), n);
    o += n;
  }
}

bool canaries_intact(const unsigned char* base, std::size_t from, std::size_t to) {
  const auto& p = canary_pattern();
  for (std::size_t o = from; o < to;) {
    const std::size_t n = std::min<std::size_t>(256, to - o);
    if (std::memcmp(base + o, p.data() + (o & 0xFFu), n) != 0) return false;
    o += n;
  }
  return true;
}

std::string hex(std::uintptr_t a) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%" PRIxPTR, a);
  return buf.data();
}

std::string seconds_text(double s) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.3g", s);
  return buf.data();
}

std::string element_value(const unsigned char* p, element_type t) {
  std::array<char, 48> buf{};
  if (t == element_type::f32) {
    float f = 0;
    std::memcpy(&f, p, sizeof f);
    std::snprintf(buf.data(), buf.size(), "%.9g", static_cast<double>(f));
  } else if (t == element_type::f16 || t == element_type::bf16) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, p, sizeof bits);
    const float f = decode_half(t == element_type::f16 ? k_float16 : k_bfloat16, bits);
    std::snprintf(buf.data(), buf.size(), "%.5g", static_cast<double>(f));
  } else {
    std::int64_t v = 0;
    std::memcpy(&v, p, sizeof v);
    std::snprintf(buf.data(), buf.size(), "%" PRId64, v);
  }
  return buf.data();
}

std::string elements_text(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " element" : " elements");
}

// ---- the shared slab ---------------------------------------------------------------------------

std::atomic<int> g_fork_per_call{-1};  // -1: not yet read from the environment

bool read_fork_per_call() {
  int v = g_fork_per_call.load();
  if (v < 0) {
    const char* e = std::getenv("BNORACLE_FORK_PER_CALL");  // NOLINT(concurrency-mt-unsafe)
    v = e != nullptr && *e != '\0' && std::string_view(e) != "0" ? 1 : 0;
    int expected = -1;
    if (!g_fork_per_call.compare_exchange_strong(expected, v)) v = expected;
  }
  return v != 0;
}

// Address space reserved for arenas that persistent workers reach. It costs no memory until
// pages are written (the memory file is sparse and punched again when an arena is released);
// an arena that does not fit is mapped on its own and its calls fork.
constexpr std::size_t k_slab_bytes = std::size_t{1} << 36;  // 64 GiB

// One memory file mapped MAP_SHARED over the whole slab, PROT_NONE where no arena is. Forked
// processes inherit the mapping at the same address, so pointers into an arena are valid in a
// worker forked before or after the arena was made. Ranges are handed out first fit, in pages.
// A slab belongs to the process that made it: a process forked from it that makes arenas of its
// own (a campaign job) gets a slab of its own, and never frees ranges of its parent's.
class shared_slab {
 public:
  // The process's slab, created on first use; nullptr when the calls fork anyway or the slab
  // could not be made (no memfd, no address space): arenas are then mapped on their own.
  static shared_slab* get() {
    if (read_fork_per_call()) return nullptr;
    if (shared_slab* s = existing(); s != nullptr) return s;
    static std::mutex creating;
    const std::lock_guard lock(creating);
    if (shared_slab* s = existing(); s != nullptr) return s;
    if (g_failed.load() == getpid()) return nullptr;
    auto* s = new shared_slab();  // never destroyed: workers and arenas may outlive statics
    if (s->base_ == nullptr) {
      delete s;
      g_failed.store(getpid());
      return nullptr;
    }
    g_current.store(s);
    return s;
  }
  // This process's slab if it made one (whatever fork_per_call() says now), else nullptr.
  static shared_slab* existing() {
    shared_slab* const s = g_current.load();
    return s != nullptr && s->owner_ == getpid() ? s : nullptr;
  }
  [[nodiscard]] bool owned() const { return owner_ == getpid(); }

  [[nodiscard]] unsigned char* base() const { return base_; }
  [[nodiscard]] std::size_t size() const { return size_; }

  // The offset of a free range of `bytes` (a multiple of the page size), or nullopt.
  std::optional<std::size_t> allocate(std::size_t bytes) {
    const std::lock_guard lock(mutex_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < bytes) continue;
      const std::size_t offset = it->first;
      const std::size_t rest = it->second - bytes;
      free_.erase(it);
      if (rest != 0) free_.emplace(offset + bytes, rest);
      return offset;
    }
    return std::nullopt;
  }

  // Gives a range back: its pages are closed and their memory freed (they read as zeros when
  // handed out again).
  void release(std::size_t offset, std::size_t bytes) {
    mprotect(base_ + offset, bytes, PROT_NONE);
    fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
              static_cast<off_t>(bytes));
    const std::lock_guard lock(mutex_);
    auto [it, inserted] = free_.emplace(offset, bytes);
    if (!inserted) return;
    if (const auto next = std::next(it); next != free_.end() && offset + bytes == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      if (const auto prev = std::prev(it); prev->first + prev->second == offset) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }

 private:
  shared_slab() {
    const int fd = memfd_create("bnoracle-arenas", MFD_CLOEXEC);
    if (fd < 0) return;
    if (ftruncate(fd, static_cast<off_t>(k_slab_bytes)) != 0) {
      close(fd);
      return;
    }
    void* base = mmap(nullptr, k_slab_bytes, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
      close(fd);
      return;
    }
    fd_ = fd;
    base_ = static_cast<unsigned char*>(base);
    size_ = k_slab_bytes;
    free_.emplace(0, size_);
  }

  static inline std::atomic<shared_slab*> g_current{nullptr};
  static inline std::atomic<pid_t> g_failed{0};  // the process where making a slab failed
  pid_t owner_ = getpid();
  int fd_ = -1;
  unsigned char* base_ = nullptr;
  std::size_t size_ = 0;
  std::mutex mutex_;
  std::map<std::size_t, std::size_t> free_;  // offset -> bytes
};

}  // namespace

bool fork_per_call() {
  return read_fork_per_call();
}

void set_fork_per_call(bool on) {
  g_fork_per_call.store(on ? 1 : 0);
}

// ---- guarded_arena ----------------------------------------------------------------------------

std::string_view to_string(buffer_role r) {
  switch (r) {
    case buffer_role::input:
      return "input";
    case buffer_role::output:
      return "output";
    case buffer_role::in_out:
      return "in-out";
  }
  return "?";
}

guarded_arena::guarded_arena(std::vector<buffer_spec> specs, arena_options options)
    : options_(options) {
  const std::size_t page = page_size();
  if (options_.guard_pages == 0) throw std::invalid_argument("guarded_arena: guard_pages is 0");
  if (options_.alignment != 0 &&
      ((options_.alignment & (options_.alignment - 1)) != 0 || options_.alignment > page)) {
    throw std::invalid_argument("guarded_arena: alignment " + std::to_string(options_.alignment) +
                                " is not a power of two no larger than a page");
  }
  const std::size_t guard = options_.guard_pages * page;
  // Lay the buffers out as offsets from the start of the mapping, then map and rebase.
  std::size_t offset = 0;
  for (auto& s : specs) {
    if (s.name.empty()) throw std::invalid_argument("guarded_arena: a buffer has no name");
    for (const auto& b : buffers_) {
      if (b.spec.name == s.name) {
        throw std::invalid_argument("guarded_arena: two buffers are named '" + s.name + "'");
      }
    }
    buffer b{};
    b.elem = element_size(s.type);
    if (s.count > (std::size_t{1} << 40) / b.elem) {
      throw std::invalid_argument("guarded_arena: buffer '" + s.name + "' is too large");
    }
    const std::size_t bytes = s.count * b.elem;
    const std::size_t align = std::max(options_.alignment, b.elem);
    b.guard_lo = offset;
    offset += guard;
    b.pages_lo = offset;
    std::size_t pages = (bytes + page - 1) / page;
    if (bytes != 0) {
      while (((b.pages_lo + pages * page - bytes) & ~(align - 1)) < b.pages_lo) ++pages;
    }
    b.pages_hi = b.pages_lo + pages * page;
    b.start = (b.pages_hi - bytes) & ~(align - 1);
    b.end = b.start + bytes;
    b.guard_hi = b.pages_hi + guard;
    offset = b.guard_hi;
    b.spec = std::move(s);
    buffers_.push_back(std::move(b));
  }
  if (offset == 0) return;
  shared_slab* const slab = shared_slab::get();
  const std::optional<std::size_t> place = slab != nullptr ? slab->allocate(offset) : std::nullopt;
  if (place) {
    base_ = slab->base() + *place;
    in_slab_ = true;
    slab_ = slab;
  } else {
    void* base = mmap(nullptr, offset, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw_errno("guarded_arena: mmap");
    base_ = base;
  }
  length_ = offset;
  for (auto& b : buffers_) {
    if (b.pages_hi > b.pages_lo &&
        mprotect(at(b.pages_lo), b.pages_hi - b.pages_lo, PROT_READ | PROT_WRITE) != 0) {
      const int e = errno;
      release();
      throw std::system_error(e, std::generic_category(), "guarded_arena: mprotect");
    }
    fill_canaries(b);
  }
}

void guarded_arena::fill_canaries(const buffer& b) const {
  write_canaries(at(0), b.pages_lo, b.start);
  write_canaries(at(0), b.end, b.pages_hi);
}

guarded_arena::~guarded_arena() {
  release();
}

guarded_arena::guarded_arena(guarded_arena&& other) noexcept
    : options_(other.options_),
      base_(std::exchange(other.base_, nullptr)),
      length_(std::exchange(other.length_, 0)),
      in_slab_(std::exchange(other.in_slab_, false)),
      slab_(std::exchange(other.slab_, nullptr)),
      buffers_(std::move(other.buffers_)) {
  other.buffers_.clear();
}

guarded_arena& guarded_arena::operator=(guarded_arena&& other) noexcept {
  if (this != &other) {
    release();
    options_ = other.options_;
    base_ = std::exchange(other.base_, nullptr);
    length_ = std::exchange(other.length_, 0);
    in_slab_ = std::exchange(other.in_slab_, false);
    slab_ = std::exchange(other.slab_, nullptr);
    buffers_ = std::move(other.buffers_);
    other.buffers_.clear();
  }
  return *this;
}

void guarded_arena::release() noexcept {
  if (base_ != nullptr && in_slab_) {
    // In a process forked after the arena was made the range is the maker's: left alone.
    auto* const slab = static_cast<shared_slab*>(slab_);
    if (slab->owned()) {
      slab->release(static_cast<std::size_t>(static_cast<unsigned char*>(base_) - slab->base()),
                    length_);
    }
  } else if (base_ != nullptr) {
    munmap(base_, length_);
  }
  in_slab_ = false;
  slab_ = nullptr;
  base_ = nullptr;
  length_ = 0;
  buffers_.clear();
}

std::optional<std::size_t> guarded_arena::find(std::string_view name) const {
  for (std::size_t i = 0; i < buffers_.size(); ++i) {
    if (buffers_[i].spec.name == name) return i;
  }
  return std::nullopt;
}

void* guarded_arena::data(std::size_t i) const {
  const buffer& b = buffers_.at(i);
  if (b.spec.count == 0 && options_.null_for_empty) return nullptr;
  return at(b.start);
}

const guarded_arena::buffer& guarded_arena::named(std::string_view name, element_type type) const {
  const auto i = find(name);
  if (!i) throw std::invalid_argument("guarded_arena: no buffer named '" + std::string(name) + "'");
  const buffer& b = buffers_[*i];
  if (b.spec.type != type) {
    throw std::invalid_argument("guarded_arena: buffer '" + std::string(name) + "' holds " +
                                std::string(type_name(b.spec.type)) + " elements");
  }
  return b;
}

float* guarded_arena::f32(std::string_view name) const {
  const buffer& b = named(name, element_type::f32);
  return static_cast<float*>(data(static_cast<std::size_t>(&b - buffers_.data())));
}

std::int64_t* guarded_arena::i64(std::string_view name) const {
  const buffer& b = named(name, element_type::i64);
  return static_cast<std::int64_t*>(data(static_cast<std::size_t>(&b - buffers_.data())));
}

std::span<float> guarded_arena::f32_span(std::string_view name) const {
  return {f32(name), named(name, element_type::f32).spec.count};
}

std::span<std::int64_t> guarded_arena::i64_span(std::string_view name) const {
  return {i64(name), named(name, element_type::i64).spec.count};
}

std::span<std::uint16_t> guarded_arena::half_span(std::string_view name) const {
  const auto i = find(name);
  const bool half = i && (buffers_[*i].spec.type == element_type::f16 ||
                          buffers_[*i].spec.type == element_type::bf16);
  const buffer& b = named(name, half ? buffers_[*i].spec.type : element_type::f16);
  return {static_cast<std::uint16_t*>(data(*i)), b.spec.count};
}

std::optional<buffer_location> guarded_arena::locate(std::uintptr_t address) const {
  const auto origin = reinterpret_cast<std::uintptr_t>(base_);
  if (base_ == nullptr || address < origin || address - origin >= length_) return std::nullopt;
  const std::size_t offset = address - origin;
  for (std::size_t i = 0; i < buffers_.size(); ++i) {
    const buffer& b = buffers_[i];
    if (offset < b.guard_lo || offset >= b.guard_hi) continue;
    buffer_location loc;
    loc.buffer = i;
    const auto elem = static_cast<std::int64_t>(b.elem);
    if (offset < b.start) {
      loc.where = buffer_location::place::before;
      loc.element = -((static_cast<std::int64_t>(b.start - offset) + elem - 1) / elem);
    } else {
      loc.element = static_cast<std::int64_t>(offset - b.start) / elem;
      loc.where = offset < b.end ? buffer_location::place::inside : buffer_location::place::after;
    }
    return loc;
  }
  return std::nullopt;
}

void guarded_arena::arm() {
  for (auto& b : buffers_) {
    fill_canaries(b);
    if (b.spec.role == buffer_role::input) {
      b.snapshot.assign(at(b.start), at(b.end));
    }
  }
}

std::vector<arena_finding> guarded_arena::check_and_restore() {
  std::vector<arena_finding> found;
  for (std::size_t i = 0; i < buffers_.size(); ++i) {
    buffer& b = buffers_[i];
    const std::string& name = b.spec.name;
    const std::string input = b.spec.role == buffer_role::input ? "input " : "";
    // Intact canaries (the rule) are compared a period at a time; damaged ones are searched
    // byte by byte for the report and written again.
    const bool front_intact = canaries_intact(at(0), b.pages_lo, b.start);
    const bool back_intact = canaries_intact(at(0), b.end, b.pages_hi);
    // In front: the farthest damaged byte says how far before the start the kernel wrote.
    for (std::size_t o = b.pages_lo; !front_intact && o < b.start; ++o) {
      if (*at(o) != canary_byte(o)) {
        std::string sentence = "wrote before the start of ";
        sentence.append(input).append(name).append(": the canary ");
        sentence.append(std::to_string(b.start - o));
        sentence.append(" bytes in front of its first element was overwritten");
        found.push_back({outcome::canary_damaged, i, std::move(sentence)});
        break;
      }
    }
    for (std::size_t o = b.pages_hi; !back_intact && o > b.end; --o) {
      if (*at(o - 1) != canary_byte(o - 1)) {
        std::string sentence = "wrote past the end of ";
        sentence.append(input).append(name).append(" (").append(elements_text(b.spec.count));
        sentence.append("): the canary ").append(std::to_string(o - b.end));
        sentence.append(" bytes behind its last element was overwritten");
        found.push_back({outcome::canary_damaged, i, std::move(sentence)});
        break;
      }
    }
    if (!front_intact || !back_intact) fill_canaries(b);
    // An empty input has nothing to compare (and memcmp with a null pointer is undefined even
    // for zero bytes).
    if (b.spec.role != buffer_role::input || b.snapshot.empty() ||
        b.snapshot.size() != b.end - b.start) {
      continue;
    }
    unsigned char* const now = at(b.start);
    if (std::memcmp(now, b.snapshot.data(), b.snapshot.size()) == 0) continue;
    std::size_t first = b.spec.count;
    std::size_t differing = 0;
    for (std::size_t e = 0; e < b.spec.count; ++e) {
      if (std::memcmp(now + e * b.elem, b.snapshot.data() + e * b.elem, b.elem) != 0) {
        if (differing++ == 0) first = e;
      }
    }
    if (differing == 0) continue;
    found.push_back(
        {outcome::input_modified, i,
         "modified input " + name + ": element " + std::to_string(first) + " changed from " +
             element_value(b.snapshot.data() + first * b.elem, b.spec.type) + " to " +
             element_value(now + first * b.elem, b.spec.type) + " (" + std::to_string(differing) +
             " of " + elements_text(b.spec.count) + " differ; restored)"});
    std::memcpy(now, b.snapshot.data(), b.snapshot.size());
  }
  return found;
}

std::vector<std::pair<void*, std::size_t>> guarded_arena::input_pages() const {
  std::vector<std::pair<void*, std::size_t>> pages;
  for (const auto& b : buffers_) {
    if (b.spec.role == buffer_role::input && b.pages_hi > b.pages_lo) {
      pages.emplace_back(at(b.pages_lo), b.pages_hi - b.pages_lo);
    }
  }
  return pages;
}

std::vector<guarded_arena::page_range> guarded_arena::buffer_pages() const {
  std::vector<page_range> pages;
  for (const auto& b : buffers_) {
    if (b.pages_hi > b.pages_lo) {
      pages.push_back({at(b.pages_lo), b.pages_hi - b.pages_lo, b.spec.role != buffer_role::input});
    }
  }
  return pages;
}

bnk_buffers_v2 abi_buffers_v2(const guarded_arena& arena) {
  bnk_buffers_v2 out{};
  const auto f = [&arena](const char* name) -> void* {
    const std::optional<std::size_t> i = arena.find(name);
    return i ? arena.data(*i) : nullptr;
  };
  out.src = f("src");
  out.diff_dst = f("diff_dst");
  out.gamma = f("gamma");
  out.beta = f("beta");
  out.running_mean = f("running_mean");
  out.running_var = f("running_var");
  out.num_batches_tracked =
      arena.contains("num_batches_tracked") ? arena.i64("num_batches_tracked") : nullptr;
  out.save_mean = f("save_mean");
  out.save_stat = f("save_stat");
  out.dst = f("dst");
  out.diff_src = f("diff_src");
  out.diff_gamma = f("diff_gamma");
  out.diff_beta = f("diff_beta");
  return out;
}

bnk_buffers abi_buffers(const guarded_arena& arena) {
  // The typed accessors throw for a buffer of another element type.
  for (const char* name :
       {"src", "diff_dst", "gamma", "beta", "running_mean", "running_var", "save_mean", "save_stat",
        "dst", "diff_src", "diff_gamma", "diff_beta"}) {
    if (arena.contains(name)) (void)arena.f32(name);
  }
  if (arena.contains("num_batches_tracked")) (void)arena.i64("num_batches_tracked");
  return to_v1(abi_buffers_v2(arena));
}

// ---- message buffers ---------------------------------------------------------------------------

namespace {

std::mutex g_messages_mutex;
std::set<const guarded_message*>& live_messages() {
  static std::set<const guarded_message*> live;
  return live;
}

}  // namespace

guarded_message::guarded_message(std::size_t size) : size_(size) {
  const std::size_t page = page_size();
  const std::size_t body = (size + page - 1) / page * page;
  length_ = page + body + page;
  base_ = mmap(nullptr, length_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throw_errno("guarded_message: mmap");
  }
  char* const body_start = static_cast<char*>(base_) + page;
  if (mprotect(body_start, body, PROT_READ | PROT_WRITE) != 0) {
    const int e = errno;
    munmap(base_, length_);
    throw std::system_error(e, std::generic_category(), "guarded_message: mprotect");
  }
  data_ = body_start + body - size;  // the last byte of the buffer is the last before the guard
  const std::lock_guard lock(g_messages_mutex);
  live_messages().insert(this);
}

guarded_message::~guarded_message() {
  {
    const std::lock_guard lock(g_messages_mutex);
    live_messages().erase(this);
  }
  if (base_ != nullptr) munmap(base_, length_);
}

void guarded_message::clear() const {
  std::memset(data_, 0, size_);
}

std::string guarded_message::text() const {
  return {data_, strnlen(data_, size_)};
}

namespace {

// A fault in the guard pages of a live message buffer, described; "" when the address is not
// in one.
std::string describe_message_fault(std::uintptr_t address, const char* verb) {
  const std::lock_guard lock(g_messages_mutex);
  for (const guarded_message* m : live_messages()) {
    const auto first = reinterpret_cast<std::uintptr_t>(m->data());
    const std::uintptr_t end = first + m->size();
    const std::size_t page = page_size();
    if (address >= end && address < end + page) {
      return std::string(": ") + verb + " past the end of the message buffer (byte " +
             std::to_string(address - first) + "; message_size is " + std::to_string(m->size()) +
             " bytes, the terminating NUL included)";
    }
    if (address < first && address + 2 * page >= first) {
      return std::string(": ") + verb + " before the start of the message buffer (" +
             std::to_string(first - address) + " bytes in front of it)";
    }
  }
  return "";
}

}  // namespace

// ---- outcomes ---------------------------------------------------------------------------------

std::string_view to_string(outcome o) {
  switch (o) {
    case outcome::ok:
      return "ok";
    case outcome::crashed:
      return "crashed";
    case outcome::timed_out:
      return "timed out";
    case outcome::exited:
      return "exited";
    case outcome::threw:
      return "threw";
    case outcome::canary_damaged:
      return "canary damaged";
    case outcome::input_modified:
      return "input modified";
  }
  return "?";
}

namespace {

struct signal_text {
  int number;
  const char* name;
  const char* meaning;
};

constexpr std::array<signal_text, 14> signal_table{{
    {SIGSEGV, "SIGSEGV", "segmentation fault"},
    {SIGBUS, "SIGBUS", "bus error"},
    {SIGABRT, "SIGABRT", "aborted: abort() or a failed assertion"},
    {SIGFPE, "SIGFPE", "arithmetic exception, e.g. integer division by zero"},
    {SIGILL, "SIGILL", "illegal instruction"},
    {SIGTRAP, "SIGTRAP", "trace/breakpoint trap, e.g. __builtin_trap()"},
    {SIGSYS, "SIGSYS", "bad system call"},
    {SIGKILL, "SIGKILL", "killed, e.g. by the out-of-memory killer"},
    {SIGTERM, "SIGTERM", "terminated"},
    {SIGINT, "SIGINT", "interrupted"},
    {SIGQUIT, "SIGQUIT", "quit"},
    {SIGPIPE, "SIGPIPE", "broken pipe"},
    {SIGXCPU, "SIGXCPU", "CPU time limit exceeded"},
    {SIGXFSZ, "SIGXFSZ", "file size limit exceeded"},
}};

const signal_text* find_signal(int sig) {
  for (const auto& s : signal_table) {
    if (s.number == sig) return &s;
  }
  return nullptr;
}

// Shared between the parent and the child of one isolated call.
struct shared_block {
  static constexpr int not_started = 0;
  static constexpr int running = 1;
  static constexpr int returned = 2;
  static constexpr int threw = 3;
  static constexpr int setup_failed = 4;

  std::atomic<int> stage{not_started};
  int status = 0;
  std::atomic<int> fault_taken{0};
  int fault_signal = 0;
  int fault_has_address = 0;
  int fault_access = 0;  // 0 unknown, 1 read, 2 write, 3 instruction fetch
  std::uintptr_t fault_address = 0;
  int setup_errno = 0;
  std::array<char, 1024> message{};
  std::array<char, 512> what{};
};
static_assert(std::atomic<int>::is_always_lock_free, "shared_block needs address-free atomics");

constexpr std::size_t alt_stack_size = std::size_t{256} * 1024;

shared_block* g_child_block = nullptr;  // set in the child only, before any handler is installed

constexpr std::array<int, 5> fault_signals{SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};

int access_kind(void* context) {
#if defined(__x86_64__)
  // The page-fault error code: bit 1 set for a write, bit 4 for an instruction fetch.
  const auto err = static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR];
  if ((err & 16) != 0) return 3;
  return (err & 2) != 0 ? 2 : 1;
#else
  (void)context;
  return 0;
#endif
}

extern "C" void bnoracle_on_fault(int sig, siginfo_t* info, void* context) {
  shared_block* b = g_child_block;
  int expected = 0;
  if (b != nullptr && b->fault_taken.compare_exchange_strong(expected, 1)) {
    b->fault_signal = sig;
    b->fault_has_address = (sig == SIGSEGV || sig == SIGBUS) && info->si_code > 0 ? 1 : 0;
    b->fault_address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    b->fault_access = b->fault_has_address != 0 ? access_kind(context) : 0;
  }
  // Die of the same signal: restore the default action and re-raise. The signal stays blocked
  // until this handler returns, then terminates the process (a real fault would also recur).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);
}

// Runs the call, recording its stage, status, message or exception in the shared block.
void run_recorded(const isolated_call& call, shared_block* block) {
  block->stage.store(shared_block::running);
  try {
    const int rc = call(block->message.data(), block->message.size());
    block->status = rc;
    block->stage.store(shared_block::returned);
  } catch (const std::exception& e) {
    std::snprintf(block->what.data(), block->what.size(), "%s", e.what());
    block->stage.store(shared_block::threw);
  } catch (...) {
    std::snprintf(block->what.data(), block->what.size(), "%s", "an exception of unknown type");
    block->stage.store(shared_block::threw);
  }
  // The kernel's buffered output (stdout is a file here, so fully buffered): into the file. The
  // parent's buffers were flushed before the fork, so only the kernel's text is written.
  std::fflush(nullptr);
}

// The fault handlers on the alternate stack, and the fault signals and SIGABRT unblocked.
void install_fault_handlers(void* alt_stack) {
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = alt_stack_size;
  ss.ss_flags = 0;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = bnoracle_on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigset_t unblock;
  sigemptyset(&unblock);
  for (int sig : fault_signals) {
    sigaction(sig, &sa, nullptr);
    sigaddset(&unblock, sig);
  }
  sigaddset(&unblock, SIGABRT);
  pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
}

// What every process that runs kernel calls does first (async-signal-safe only): returns false
// when the parent is already gone.
bool prepare_call_process(pid_t parent, int output) {
  // Its own process group, which the parent kills as a whole when the call ends: processes the
  // kernel starts do not outlive the call.
  setpgid(0, 0);
  // What the kernel prints goes into the call's output file, never to bnoracle's own stdout and
  // stderr, which a process left behind could otherwise hold open; stdin is /dev/null.
  if (output >= 0) {
    dup2(output, STDOUT_FILENO);
    dup2(output, STDERR_FILENO);
  }
  const int null_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_in >= 0) {
    dup2(null_in, STDIN_FILENO);
    if (null_in != STDIN_FILENO) close(null_in);
  }
  // Crashes are expected here: no core dumps (neither files nor a core_pattern pipe), which
  // would be slow and litter the system. Debug a crashing kernel in-process (run_inline).
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0);
  // Die with the parent (e.g. on Ctrl-C) instead of running on, possibly forever.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  return getppid() == parent;
}

// The child: only async-signal-safe work before the call, then the call, then _exit.
[[noreturn]] void child_main(const isolated_call& call, shared_block* block, void* alt_stack,
                             const std::vector<std::pair<void*, std::size_t>>& read_only,
                             pid_t parent, int output) {
  g_child_block = block;
  if (!prepare_call_process(parent, output)) _exit(125);
  install_fault_handlers(alt_stack);
  for (const auto& [address, length] : read_only) {
    if (mprotect(address, length, PROT_READ) != 0) {
      block->setup_errno = errno;
      block->stage.store(shared_block::setup_failed);
      _exit(125);
    }
  }
  run_recorded(call, block);
  _exit(0);
}

// One shared mapping per call: the result block, then the child's alternate signal stack.
class call_mapping {
 public:
  call_mapping() {
    length_ = page_size() + alt_stack_size;
    base_ = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) throw_errno("run_isolated: mmap");
    block_ = new (base_) shared_block();
  }
  ~call_mapping() {
    block_->~shared_block();
    munmap(base_, length_);
  }
  call_mapping(const call_mapping&) = delete;
  call_mapping& operator=(const call_mapping&) = delete;
  [[nodiscard]] shared_block* block() const { return block_; }
  [[nodiscard]] void* alt_stack() const { return static_cast<char*>(base_) + page_size(); }

 private:
  void* base_ = nullptr;
  std::size_t length_ = 0;
  shared_block* block_ = nullptr;
};

pid_t wait_blocking(pid_t pid, int& wstatus) {
  for (;;) {
    const pid_t r = waitpid(pid, &wstatus, 0);
    if (r == pid) return r;
    if (r < 0 && errno != EINTR) throw_errno("run_isolated: waitpid");
  }
}

// Where the children of this thread write their stdout and stderr: an anonymous memory file
// (memfd) of fixed size, sealed against growth, shared by every call of the thread. Before a
// call its offset is rewound; the child inherits the descriptor (and the offset) as its stdout
// and stderr; after the call the offset is how much it wrote. Nothing wakes the parent while the
// child writes, nothing can block, and a flood costs at most k_call_output_file bytes of memory
// (writes past it fail).
int call_output_file() {
  thread_local const int fd = [] {
    int f = memfd_create("bnoracle-call-output", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (f < 0) return -1;
    // Never one of the standard descriptors (a program started with one closed): the file would
    // then be the program's own stdout or stderr.
    if (f <= STDERR_FILENO) {
      const int moved = fcntl(f, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
      close(f);
      if (moved < 0) return -1;
      f = moved;
    }
    if (ftruncate(f, static_cast<off_t>(k_call_output_file)) != 0 ||
        fcntl(f, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
      close(f);
      return -1;
    }
    return f;
  }();
  return fd;
}

// What the child wrote: the first k_captured_output_limit bytes, and how many it wrote.
struct captured_output {
  std::string text;
  std::size_t bytes = 0;
};

captured_output read_call_output(int fd) {
  captured_output out;
  if (fd < 0) return out;
  const off_t end = lseek(fd, 0, SEEK_CUR);
  if (end <= 0) return out;
  out.bytes = static_cast<std::size_t>(end);
  out.text.resize(std::min(out.bytes, k_captured_output_limit));
  const ssize_t n = pread(fd, out.text.data(), out.text.size(), 0);
  out.text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

// Waits for the child until the deadline. Returns true when it ended (it is then a zombie, not
// reaped, so that its process group can still be killed), false at the deadline (the child is
// still running).
bool wait_until(pid_t pid, std::chrono::steady_clock::time_point deadline, wait_method method) {
  using clock = std::chrono::steady_clock;
#ifdef SYS_pidfd_open
  // pidfd (Linux 5.3+): sleep in poll() until the child exits or the deadline passes.
  const long fd = method == wait_method::automatic ? syscall(SYS_pidfd_open, pid, 0) : -1;
  if (fd >= 0) {
    const int pidfd = static_cast<int>(fd);
    bool ended = false;
    bool usable = true;
    while (usable) {
      const auto left = deadline - clock::now();
      if (left <= clock::duration::zero()) break;
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      pollfd p{pidfd, POLLIN, 0};
      const int r = poll(&p, 1, static_cast<int>(std::min<long long>(ms, 1 << 30)));
      if (r > 0) {
        ended = true;
        break;
      }
      if (r < 0 && errno != EINTR) usable = false;
    }
    close(pidfd);
    if (ended) return true;
    if (usable) return false;
  }
#else
  (void)method;
#endif
  // Fallback (no pidfd, e.g. an old kernel or a seccomp filter): poll waitid with short sleeps,
  // leaving the child unreaped (WNOWAIT).
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    siginfo_t info{};
    const int r = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && info.si_pid == pid) return true;
    if (r < 0 && errno != EINTR) throw_errno("run_isolated: waitid");
    const auto now = clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

// The child's output: forwarded to bnoracle's stderr (kernel authors print while debugging), and
// its last line kept for the reason of a fault.
void forward_output(captured_output output, run_result& res) {
  if (output.bytes == 0) return;
  std::string note;
  if (output.bytes > output.text.size()) {
    note = "[bnoracle: the kernel wrote " + std::to_string(output.bytes - output.text.size()) +
           " more bytes during this call, not shown" +
           (output.bytes >= k_call_output_file
                ? std::string(" (and what it wrote past ") + std::to_string(k_call_output_file) +
                      " bytes was refused)"
                : std::string()) +
           "]\n";
  }
  std::fflush(stderr);
  for (const std::string* part : {&output.text, &note}) {
    std::size_t done = 0;
    while (done < part->size()) {
      const ssize_t n = write(STDERR_FILENO, part->data() + done, part->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  }
  res.output_bytes = output.bytes;
  res.output = std::move(output.text);
}

// The last non-empty line the kernel printed, shortened, for a fault's reason ("" for none).
std::string last_line(const std::string& output) {
  std::size_t end = output.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  const std::size_t nl = output.rfind('\n', end);
  const std::size_t begin = nl == std::string::npos ? 0 : nl + 1;
  std::string line = output.substr(begin, end + 1 - begin);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return valid_utf8(line);
}

std::string describe_fault(const shared_block& b, const guarded_arena& arena, run_result& res) {
  const std::uintptr_t address = b.fault_address;
  res.address = address;
  const char* verb = b.fault_access == 2   ? "wrote"
                     : b.fault_access == 1 ? "read"
                     : b.fault_access == 3 ? "jumped"
                                           : "accessed";
  const auto loc = arena.locate(address);
  if (!loc) {
    if (std::string m = describe_message_fault(address, verb); !m.empty()) return m;
    if (address < 65536) {
      return std::string(": null pointer dereference (") + verb + " address " + hex(address) +
             ", outside every bnoracle buffer)";
    }
    return std::string(": ") + verb + " address " + hex(address) +
           ", outside every bnoracle buffer";
  }
  res.buffer = loc->buffer;
  const buffer_spec& s = arena.spec(loc->buffer);
  const std::string input = s.role == buffer_role::input ? "input " : "";
  const std::string where = " (element " + std::to_string(loc->element) + "; " + s.name + " has " +
                            elements_text(s.count) + ", address " + hex(address) + ")";
  switch (loc->where) {
    case buffer_location::place::before:
      return std::string(": ") + verb + " before the start of " + input + s.name + where;
    case buffer_location::place::after:
      return std::string(": ") + verb + " past the end of " + input + s.name + where;
    case buffer_location::place::inside:
      if (s.role == buffer_role::input) {
        return ": wrote to input " + s.name + where + "; inputs are read-only";
      }
      return std::string(": ") + verb + " inside " + s.name + where;
  }
  return {};
}

void append_findings(run_result& res) {
  for (const auto& f : res.findings) res.reason += "; also " + f.sentence;
}

// Sets kind/reason for a call that returned from the findings of the arena check. Writing
// outside a buffer (a damaged canary) comes first: it is memory corruption; then modified inputs.
void classify_returned(run_result& res) {
  if (res.findings.empty()) return;
  std::size_t primary = 0;
  for (std::size_t i = 0; i < res.findings.size(); ++i) {
    if (res.findings[i].kind == outcome::canary_damaged) {
      primary = i;
      break;
    }
  }
  res.kind = res.findings[primary].kind;
  res.buffer = res.findings[primary].buffer;
  res.reason = res.findings[primary].sentence;
  for (std::size_t i = 0; i < res.findings.size(); ++i) {
    if (i != primary) res.reason += "; also " + res.findings[i].sentence;
  }
}

}  // namespace

// ---- processes left behind ---------------------------------------------------------------------

namespace {

std::mutex g_owned_mutex;
std::set<pid_t>& owned_children() {
  static std::set<pid_t> owned;
  return owned;
}

// The children of this process, from /proc/self/task/*/children (every thread's).
std::vector<pid_t> list_children() {
  std::vector<pid_t> out;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return out;
  while (const dirent* e = readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/children";
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) continue;
    long long pid = 0;
    while (std::fscanf(f, "%lld", &pid) == 1) out.push_back(static_cast<pid_t>(pid));
    std::fclose(f);
  }
  closedir(tasks);
  return out;
}

}  // namespace

void register_owned_child(pid_t pid) {
  const std::lock_guard lock(g_owned_mutex);
  owned_children().insert(pid);
}

void unregister_owned_child(pid_t pid) {
  const std::lock_guard lock(g_owned_mutex);
  owned_children().erase(pid);
}

namespace {

bool is_subreaper() {
  int subreaper = 0;
  return prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper != 0;
}

}  // namespace

std::vector<pid_t> children_if_subreaper() {
  return is_subreaper() ? list_children() : std::vector<pid_t>{};
}

std::size_t end_stray_processes(const std::vector<pid_t>& keep) {
  if (!is_subreaper()) return 0;
  constexpr int k_rounds = 1000;
  std::size_t ended = 0;
  // Killing a stray process may orphan its own children, which are then reparented here too:
  // repeat until no stray child is left.
  for (int round = 0; round < k_rounds; ++round) {
    std::vector<pid_t> stray;
    {
      const std::lock_guard lock(g_owned_mutex);
      for (const pid_t p : list_children()) {
        if (owned_children().count(p) == 0 &&
            std::find(keep.begin(), keep.end(), p) == keep.end()) {
          stray.push_back(p);
        }
      }
    }
    if (stray.empty()) return ended;
    for (const pid_t p : stray) kill(p, SIGKILL);
    for (const pid_t p : stray) {
      int status = 0;
      while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
      }
      ++ended;
    }
  }
  static const char message[] =
      "bnoracle: processes a kernel left behind kept starting new ones; gave up killing them\n";
  (void)!write(STDERR_FILENO, message, sizeof message - 1);
  return ended;
}

void reap_exited_strays() {
  if (!is_subreaper()) return;
  for (int i = 0; i < 10000; ++i) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    {
      const std::lock_guard lock(g_owned_mutex);
      if (owned_children().count(info.si_pid) != 0) return;  // its owner reaps it
    }
    int status = 0;
    waitpid(info.si_pid, &status, 0);
  }
}

std::string signal_name(int sig) {
  if (const auto* s = find_signal(sig)) return s->name;
  return "signal " + std::to_string(sig);
}

namespace {

// How an isolated call ended, as the parent saw it.
struct call_end {
  bool timed_out = false;
  bool process_ended = false;  // the process that ran the call ended (wstatus is its status)
  int wstatus = 0;
};

// The result of an isolated call from how it ended and what the shared block and the arena say;
// the same for a fork per call and a persistent worker.
run_result classify_call(const call_end& end, shared_block& block, guarded_arena& arena,
                         std::chrono::milliseconds timeout,
                         std::chrono::steady_clock::time_point t0, int output) {
  run_result res;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  forward_output(read_call_output(output), res);
  res.findings = arena.check_and_restore();
  const int stage = block.stage.load();
  if (stage == shared_block::returned || stage == shared_block::threw) {
    block.message.back() = '\0';
    res.status = block.status;
    res.message = block.message.data();
  }

  const int wstatus = end.wstatus;
  if (end.timed_out) {
    res.kind = outcome::timed_out;
    res.seconds = std::chrono::duration<double>(timeout).count();
    res.reason =
        "timed out: still running after " + seconds_text(res.seconds) + " s, so it was killed";
    append_findings(res);
  } else if (end.process_ended && WIFSIGNALED(wstatus)) {
    const int sig = WTERMSIG(wstatus);
    res.kind = outcome::crashed;
    res.signal = sig;
    const auto* text = find_signal(sig);
    res.reason = "crashed with " + signal_name(sig);
    if (block.fault_taken.load() != 0 && block.fault_signal == sig &&
        block.fault_has_address != 0) {
      res.reason += describe_fault(block, arena, res);
    } else if (text != nullptr) {
      res.reason += std::string(" (") + text->meaning + ")";
    }
    if (stage == shared_block::returned) res.reason += ", after the call had returned";
    append_findings(res);
  } else if (stage == shared_block::returned) {
    classify_returned(res);
  } else if (stage == shared_block::threw) {
    block.what.back() = '\0';
    res.kind = outcome::threw;
    res.reason = std::string("threw an exception: ") + block.what.data();
    append_findings(res);
  } else if (stage == shared_block::setup_failed) {
    throw std::system_error(block.setup_errno, std::generic_category(),
                            "run_isolated: mprotect of a buffer in the child");
  } else {
    res.kind = outcome::exited;
    res.exit_code = end.process_ended && WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    res.reason = "exited with code " + std::to_string(res.exit_code) +
                 " before the call returned (exit() or _exit() called during the call)";
    append_findings(res);
  }
  const bool died = res.kind == outcome::crashed || res.kind == outcome::timed_out ||
                    res.kind == outcome::exited || res.kind == outcome::threw;
  if (const std::string line = last_line(res.output); died && !line.empty()) {
    res.reason += "; the last line it printed: \"" + line + "\"";
  }
  return res;
}

// Whatever sits in the parent's stream buffers would otherwise be written twice.
void flush_streams() {
  std::cout.flush();
  std::cerr.flush();
  std::clog.flush();
  std::fflush(nullptr);
}

std::atomic<std::uint64_t> g_worker_calls{0};
std::atomic<std::uint64_t> g_workers_started{0};
std::atomic<std::uint64_t> g_forked_calls{0};

}  // namespace

run_result run_isolated(const isolated_call& call, guarded_arena& arena,
                        std::chrono::milliseconds timeout, wait_method wait) {
  call_mapping mapping;
  shared_block& block = *mapping.block();
  const auto read_only = arena.input_pages();
  arena.arm();
  flush_streams();
  // Children that exist before the call (a helper a plugin started when loaded) are not its.
  const std::vector<pid_t> before = children_if_subreaper();
  const int output = call_output_file();
  if (output >= 0) lseek(output, 0, SEEK_SET);
  const pid_t parent = getpid();
  const auto t0 = std::chrono::steady_clock::now();
  g_forked_calls.fetch_add(1, std::memory_order_relaxed);
  const pid_t pid = fork();
  if (pid < 0) throw_errno("run_isolated: fork");
  if (pid == 0) child_main(call, &block, mapping.alt_stack(), read_only, parent, output);
  // Also set here, so that the group exists whichever of the two runs first.
  setpgid(pid, pid);

  call_end end;
  end.process_ended = true;
  const bool ended = wait_until(pid, t0 + timeout, wait);
  // The whole process group goes, whether the call ended or timed out: whatever the kernel
  // started must not outlive its call. The child itself is killed only when still running.
  kill(-pid, SIGKILL);
  if (!ended) kill(pid, SIGKILL);
  wait_blocking(pid, end.wstatus);
  if (!ended) {
    // A child that ended on its own just before the kill keeps its own outcome.
    end.timed_out = WIFSIGNALED(end.wstatus) && WTERMSIG(end.wstatus) == SIGKILL;
  }
  end_stray_processes(before);
  return classify_call(end, block, arena, timeout, t0, output);
}

// ---- the persistent worker ---------------------------------------------------------------------

namespace {

// The pages of one call's buffers, as the worker opens them.
struct worker_range {
  void* address = nullptr;
  std::size_t length = 0;
  int protection = PROT_NONE;
};

constexpr std::size_t k_worker_ranges = 64;

// Shared between the parent and its worker: the result of the current call (as for a fork per
// call), the call itself, and what the worker found after it.
struct worker_block {
  shared_block result;
  bn_kernel* kernel = nullptr;
  bn_mode mode = bn_mode::forward_training;
  bnk_problem_v2 problem{};
  bnk_buffers_v2 buffers{};
  fenv_t environment{};
  std::size_t range_count = 0;
  std::array<worker_range, k_worker_ranges> ranges{};
  int threads_left = 0;  // threads of the kernel still running after the call
};

// The threads of this process (from /proc/self/task), or 0 when that cannot be read.
int count_threads() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return 0;
  int n = 0;
  while (const dirent* e = readdir(tasks)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(tasks);
  return n;
}

// Kills and reaps every child of this process, repeating while killing orphans more of them
// (the worker is a child subreaper, so every process the call started ends up its child).
void kill_all_children() {
  // No child at all (the usual case) is one system call to know: waitid fails with ECHILD
  // (__WALL: children of any exit signal, those clone() made without SIGCHLD included).
  siginfo_t info{};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0 && errno == ECHILD) {
    return;
  }
  for (int round = 0; round < 1000; ++round) {
    const std::vector<pid_t> children = list_children();
    if (children.empty()) return;
    for (const pid_t p : children) kill(p, SIGKILL);
    for (const pid_t p : children) {
      int status = 0;
      while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

// Closes the call's pages again. Everything of the slab between them is closed already (the
// worker closes the whole slab when it starts and opens only a call's ranges), so one mprotect
// over the span from the first range to the end of the last closes them all.
void close_ranges(const worker_block& w) {
  if (w.range_count == 0) return;
  auto* lo = static_cast<char*>(w.ranges[0].address);
  char* hi = lo + w.ranges[0].length;
  for (std::size_t i = 1; i < w.range_count; ++i) {
    auto* a = static_cast<char*>(w.ranges[i].address);
    lo = std::min(lo, a);
    hi = std::max(hi, a + w.ranges[i].length);
  }
  mprotect(lo, static_cast<std::size_t>(hi - lo), PROT_NONE);
}

// The worker: set up like a forked call's child, then one call per byte on the socket until the
// parent closes it.
[[noreturn]] void worker_main(worker_block* w, void* alt_stack, int socket, pid_t parent,
                              int output, const shared_slab* slab) {
  g_child_block = &w->result;
  if (!prepare_call_process(parent, output)) _exit(125);
  // Every process the calls start becomes a child of the worker when its parent dies, so that
  // the worker can end them all after each call, even those that left its process group.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // The parent's arenas are open in the inherited mapping; the worker opens only the pages of
  // the call it runs.
  if (slab != nullptr) mprotect(slab->base(), slab->size(), PROT_NONE);
  for (;;) {
    char command = 0;
    const ssize_t n = recv(socket, &command, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    shared_block* const block = &w->result;
    // The call may have changed either; a call in a fresh fork would start from the parent's.
    install_fault_handlers(alt_stack);
    fesetenv(&w->environment);
    bool opened = true;
    for (std::size_t i = 0; i < w->range_count && opened; ++i) {
      const worker_range& r = w->ranges[i];
      if (mprotect(r.address, r.length, r.protection) != 0) {
        block->setup_errno = errno;
        block->stage.store(shared_block::setup_failed);
        opened = false;
      }
    }
    if (opened) run_recorded(kernel_call(*w->kernel, w->mode, w->problem, w->buffers), block);
    close_ranges(*w);
    kill_all_children();
    // A thread the call joined may still be listed for a moment while it exits: look again for
    // up to 2 ms before calling it left running.
    w->threads_left = count_threads() - 1;
    for (int look = 0; look < 20 && w->threads_left > 0; ++look) {
      usleep(100);
      w->threads_left = count_threads() - 1;
    }
    const char done = 1;
    while (send(socket, &done, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
  }
}

// The calling thread's worker, from the parent's side. The shared block outlives the worker
// processes (each new one inherits it), so that a call's result can be read after its worker
// was killed.
class worker_process {
 public:
  worker_process() = default;
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;
  worker_process(worker_process&&) = delete;
  worker_process& operator=(worker_process&&) = delete;
  ~worker_process() {
    adopt();
    stop();
    if (block_ != nullptr) block_->~worker_block();
    if (mapping_ != nullptr) munmap(mapping_, mapping_length_);
  }

  [[nodiscard]] bool serves(const bn_kernel& kernel) const {
    return pid_ > 0 && kernel_ == &kernel && instance_ == kernel.instance();
  }
  [[nodiscard]] pid_t pid() const { return pid_; }

  // In a process forked from the one that made this object (a worker, a forked call, a campaign
  // job) the worker and the shared block are the maker's: this process lets go of its copies
  // without touching them (no kill, no write, and no unmapping either: the worker's own fault
  // handler and signal stack live in that block) and makes its own when it needs a worker.
  void adopt() {
    if (owner_ == getpid()) return;
    if (socket_ >= 0) close(socket_);
    socket_ = -1;
    pid_ = -1;
    mapping_ = nullptr;
    mapping_length_ = 0;
    block_ = nullptr;
    kernel_ = nullptr;
    instance_ = 0;
    owner_ = getpid();
  }
  [[nodiscard]] int socket() const { return socket_; }
  // The shared block (valid once start has been called).
  [[nodiscard]] worker_block& block() const { return *block_; }

  // Forks a worker for `kernel` (ending the current one); throws std::system_error.
  void start(bn_kernel& kernel, int output) {
    stop();
    const shared_slab* const slab = shared_slab::existing();
    if (mapping_ == nullptr) {
      const std::size_t page = page_size();
      const std::size_t length = (sizeof(worker_block) + page - 1) / page * page + alt_stack_size;
      void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw_errno("run_kernel_isolated: mmap");
      mapping_ = base;
      mapping_length_ = length;
      block_ = new (base) worker_block();
    }
    std::array<int, 2> pair{-1, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.data()) != 0) {
      throw_errno("run_kernel_isolated: socketpair");
    }
    flush_streams();
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      const int e = errno;
      close(pair[0]);
      close(pair[1]);
      throw std::system_error(e, std::generic_category(), "run_kernel_isolated: fork");
    }
    if (pid == 0) {
      close(pair[0]);
      worker_main(block_, static_cast<char*>(mapping_) + (mapping_length_ - alt_stack_size),
                  pair[1], parent, output, slab);
    }
    close(pair[1]);
    socket_ = pair[0];
    setpgid(pid, pid);
    // bnoracle's own child: end_stray_processes and reap_exited_strays (a subprocess kernel's
    // housekeeping) leave it alone.
    register_owned_child(pid);
    pid_ = pid;
    kernel_ = &kernel;
    instance_ = kernel.instance();
    g_workers_started.fetch_add(1, std::memory_order_relaxed);
  }

  // Kills the worker's process group and the worker, and reaps it; returns its wait status (0
  // when there was no worker).
  int stop() {
    adopt();
    int wstatus = 0;
    if (pid_ > 0) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      // Never throws: a worker someone else reaped (ECHILD) is gone all the same.
      while (waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
      }
    }
    forget();
    return wstatus;
  }

  // The worker ended and the caller reaped it.
  void forget() {
    if (pid_ > 0) unregister_owned_child(pid_);
    if (socket_ >= 0) close(socket_);
    socket_ = -1;
    pid_ = -1;
    kernel_ = nullptr;
    instance_ = 0;
  }

 private:
  pid_t pid_ = -1;
  int socket_ = -1;
  void* mapping_ = nullptr;
  std::size_t mapping_length_ = 0;
  worker_block* block_ = nullptr;
  const bn_kernel* kernel_ = nullptr;
  std::uint64_t instance_ = 0;
  pid_t owner_ = getpid();
};

worker_process& this_threads_worker() {
  thread_local worker_process worker;
  worker.adopt();
  return worker;
}

// Waits until the worker answers (true), ends or the deadline passes (false; `ended` says
// which, and the worker is then reaped with its status in `wstatus` when it ended).
bool wait_for_worker(pid_t pid, int socket, std::chrono::steady_clock::time_point deadline,
                     wait_method method, bool& ended, int& wstatus) {
  using clock = std::chrono::steady_clock;
  ended = false;
  int pidfd = -1;
#ifdef SYS_pidfd_open
  if (method == wait_method::automatic) pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)method;
#endif
  auto pause = std::chrono::milliseconds(1);
  bool answered = false;
  for (;;) {
    const auto left = deadline - clock::now();
    if (left <= clock::duration::zero()) break;
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(left);
    // Without a pidfd the worker's end is seen by polling waitid between short sleeps.
    if (pidfd < 0) wait = std::min(wait, pause);
    std::array<pollfd, 2> fds{{{socket, POLLIN, 0}, {pidfd, POLLIN, 0}}};
    const int r = poll(fds.data(), pidfd >= 0 ? 2 : 1,
                       static_cast<int>(std::min<long long>(wait.count(), 1 << 30)));
    if (r < 0 && errno != EINTR) throw_errno("run_kernel_isolated: poll");
    if (r > 0 && (fds[0].revents & POLLIN) != 0) {
      char done = 0;
      if (recv(socket, &done, 1, MSG_DONTWAIT) == 1) {
        answered = true;
        break;
      }
    }
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      ended = true;
      break;
    }
    pause = std::min(pause * 2, std::chrono::milliseconds(5));
  }
  if (pidfd >= 0) close(pidfd);
  if (ended) {
    // Its group first (a process it started may still run), then the worker itself.
    kill(-pid, SIGKILL);
    wait_blocking(pid, wstatus);
  }
  return answered;
}

}  // namespace

run_result run_kernel_isolated(bn_kernel& kernel, bn_mode mode, const bnk_problem_v2& problem,
                               const bnk_buffers_v2& buffers, guarded_arena& arena,
                               std::chrono::milliseconds timeout, wait_method wait) {
  const std::vector<guarded_arena::page_range> pages = arena.buffer_pages();
  if (fork_per_call() || !kernel.runs_in_worker() || !arena.shared() ||
      pages.size() > k_worker_ranges) {
    return run_isolated(kernel_call(kernel, mode, problem, buffers), arena, timeout, wait);
  }
  worker_process& worker = this_threads_worker();
  const int output = call_output_file();
  // A worker that ended between calls (nothing of a call runs there then) is replaced.
  if (worker.pid() > 0) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(worker.pid()), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == worker.pid()) {
      worker.stop();
    }
  }
  if (!worker.serves(kernel)) worker.start(kernel, output);

  worker_block& w = worker.block();
  w.result.~shared_block();
  new (&w.result) shared_block();
  w.kernel = &kernel;
  w.mode = mode;
  w.problem = problem;
  w.buffers = buffers;
  fegetenv(&w.environment);
  w.range_count = pages.size();
  for (std::size_t i = 0; i < pages.size(); ++i) {
    w.ranges[i] = {pages[i].address, pages[i].length,
                   pages[i].writable ? PROT_READ | PROT_WRITE : PROT_READ};
  }
  w.threads_left = 0;
  arena.arm();
  flush_streams();
  std::vector<pid_t> before = children_if_subreaper();
  if (output >= 0) lseek(output, 0, SEEK_SET);
  const char go = 1;
  auto t0 = std::chrono::steady_clock::now();
  if (send(worker.socket(), &go, 1, MSG_NOSIGNAL) != 1) {
    // The worker ended in the instant since it was checked, before this call reached it.
    worker.stop();
    worker.start(kernel, output);
    t0 = std::chrono::steady_clock::now();
    if (send(worker.socket(), &go, 1, MSG_NOSIGNAL) != 1) throw_errno("run_kernel_isolated: send");
  }
  before.push_back(worker.pid());
  g_worker_calls.fetch_add(1, std::memory_order_relaxed);

  call_end end;
  bool ended = false;
  const bool answered =
      wait_for_worker(worker.pid(), worker.socket(), t0 + timeout, wait, ended, end.wstatus);
  if (ended) {
    end.process_ended = true;
    worker.forget();
  } else if (!answered) {
    end.process_ended = true;
    end.wstatus = worker.stop();
    // A worker that ended on its own just before the kill keeps its own outcome.
    end.timed_out = WIFSIGNALED(end.wstatus) && WTERMSIG(end.wstatus) == SIGKILL;
  } else if (w.threads_left > 0) {
    // A call that left threads running retires the worker: they could still write somewhere.
    worker.stop();
  }
  end_stray_processes(before);
  return classify_call(end, w.result, arena, timeout, t0, output);
}

isolation_counts isolation_statistics() {
  isolation_counts c;
  c.worker_calls = g_worker_calls.load();
  c.workers_started = g_workers_started.load();
  c.forked_calls = g_forked_calls.load();
  return c;
}

void stop_worker() {
  this_threads_worker().stop();
}

run_result run_inline(const isolated_call& call, guarded_arena& arena) {
  arena.arm();
  std::array<char, 1024> message{};
  run_result res;
  const auto t0 = std::chrono::steady_clock::now();
  bool threw = false;
  try {
    res.status = call(message.data(), message.size());
  } catch (const std::exception& e) {
    threw = true;
    res.reason = std::string("threw an exception: ") + e.what();
  } catch (...) {
    threw = true;
    res.reason = "threw an exception: an exception of unknown type";
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.findings = arena.check_and_restore();
  if (threw) {
    res.kind = outcome::threw;
    append_findings(res);
    return res;
  }
  message.back() = '\0';
  res.message = message.data();
  classify_returned(res);
  return res;
}

isolated_call kernel_call(bn_kernel& kernel, bn_mode mode, const bnk_problem_v2& problem,
                          const bnk_buffers_v2& buffers) {
  return [&kernel, mode, problem, buffers](char* message, std::size_t size) -> int {
    std::string text;
    const bnk_status status = kernel.run_v2(mode, problem, buffers, text);
    if (size > 0) {
      const std::size_t n = std::min(text.size(), size - 1);
      std::memcpy(message, text.data(), n);
      message[n] = '\0';
    }
    return static_cast<int>(status);
  };
}

}  // namespace bnoracle
