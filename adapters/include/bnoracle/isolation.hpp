// Fault isolation for calls into a kernel under test (Linux).
//
// A kernel that crashes, hangs, writes outside its output buffers or modifies its inputs must
// fail the case it was running with a reason its author can act on, and the run must go on.
// Two pieces make that true:
//
// - `guarded_arena` holds the buffers of one call in a single shared anonymous mapping. Every
//   buffer ends exactly at a page boundary (or, with a larger `alignment`, within its last page:
//   the gap is filled with a canary) followed by PROT_NONE guard pages, and starts after PROT_NONE
//   guard pages; the bytes between those guard pages and the buffer's first element are filled
//   with a canary. Overruns therefore fault on the spot and underruns either hit the canary
//   (checked after the call) or fault. Inputs are snapshotted before each call and compared after.
//
// - `run_isolated` forks: the child makes the input buffers read-only, runs the call, records its
//   status and message (or the address of a fault) in a small shared block and exits; the parent
//   waits with a deadline, kills and reaps on timeout, and classifies what happened.
//   `run_kernel_isolated` runs one mode of a kernel the same way, but reuses a persistent worker
//   process when it can (see "The persistent worker" below), which saves the fork, the copy of
//   the page tables and the process exit of every call.
//   `run_inline` runs the call in-process (for debugging with --no-isolation) and still checks
//   canaries and inputs afterwards; there a fault in a guard page terminates the process.
//
// Constraints on the caller of run_isolated (the child of fork() only ever runs the call):
// - Other threads of the process must not hold locks at the time of the call (glibc makes malloc
//   and stdio safe across fork; locks of your own are not). Idle threads are fine; they do not
//   exist in the child.
// - The process must not reap children it does not own (no SIGCHLD handler calling
//   waitpid(-1, ...), no SIGCHLD set to SIG_IGN), or the outcome of the call is lost
//   (run_isolated then throws std::system_error).
// - The parent should not itself run code that keeps fork-unsafe runtime state, such as an
//   OpenMP thread pool that the kernel also uses: GNU libgomp deadlocks in a child forked after
//   the parent used it. Running a kernel only through run_isolated keeps the parent clean.
// - The child runs in its own process group with stdin from /dev/null; its stdout and stderr go
//   into a memory file of k_call_output_file bytes (writes past it fail), of which the first
//   k_captured_output_limit bytes are kept and forwarded to the parent's stderr after the call,
//   so a process the kernel leaves behind can never hold the parent's own stdout or stderr open,
//   and a flood neither blocks the call nor grows memory. Parent streams are flushed before
//   forking, the child's after the call.
// - When the call ends (returned, crashed or timed out) its whole process group is killed. A
//   process that left the group (setsid) is reparented to the nearest child subreaper; when that
//   is this process (prctl PR_SET_CHILD_SUBREAPER, which the bnoracle CLI sets), it is killed and
//   reaped too (end_stray_processes). Children registered with register_owned_child are spared.
// - A kernel that calls exit() runs the process's atexit handlers and static destructors in the
//   child; they cannot affect the parent's memory except through the arena.
//
// The persistent worker. Arenas live in one shared slab: a memory file (memfd) mapped once, at
// the same address in this process and in every process forked from it, PROT_NONE except where
// an arena's buffers are. A worker is forked for one kernel object (bn_kernel::runs_in_worker,
// bn_kernel::instance) and then runs call after call: for each, the parent writes the call (the
// kernel, mode, problem, buffer pointers and its floating-point environment) into a shared block
// and wakes the worker over a socket; the worker opens the buffers' pages (inputs read-only,
// everything else read-write), restores its fault handlers, runs the call, closes the pages
// again and answers. The guarantees are those of a fork per call — a fault, exit or timeout is
// classified the same way and attributed to the same buffer, the worker is then replaced — with
// these differences, all of which a kernel also meets in a long-lived production process:
// - The kernel's own static state (a cache, a counter, a changed locale or environment) carries
//   over from one call to the next of the same kernel object. The floating-point environment
//   and the fault handlers do not: both are reset to the parent's before every call.
// - Processes the call starts are killed when the call ends, by the worker, which is a child
//   subreaper for that purpose, so a process that left the group dies too. A call that leaves a
//   thread running retires the worker: the next call gets a new one.
// Set BNORACLE_FORK_PER_CALL=1 in the environment (or call set_fork_per_call) to fork for every
// call instead. An arena outside the slab (the slab could not be created, or is full), a kernel
// that is not runs_in_worker and every run_isolated call fork per call.
#pragma once

#include "bnoracle/kernel.hpp"
#include "bnoracle/kernel_abi.h"
#include "bnoracle/reference.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

// What the kernel may do with a buffer.
enum class buffer_role : std::uint8_t {
  input,   // read only: made PROT_READ in the isolated child, compared with a snapshot after
  output,  // written by the kernel
  in_out,  // read and updated in place (running statistics, num_batches_tracked)
};

// The element types of a kernel's buffers: float32, int64 (num_batches_tracked), and the two
// 16-bit floating-point formats (their bits, as the ABI passes them).
enum class element_type : std::uint8_t { f32, i64, f16, bf16 };

[[nodiscard]] std::string_view to_string(buffer_role r);

struct buffer_spec {
  std::string name;  // used in every diagnostic: "wrote past the end of diff_src"
  buffer_role role = buffer_role::input;
  element_type type = element_type::f32;
  std::size_t count = 0;  // elements; 0 is allowed
};

struct arena_options {
  // PROT_NONE pages on each side of every buffer. They cost address space only; more pages catch
  // larger strided overruns as faults instead of silent writes into a neighbour.
  std::size_t guard_pages = 4;
  // Alignment of each buffer's first element in bytes (a power of two). 0 means the element size,
  // so the buffer ends exactly at the guard page; larger values leave a gap of fewer than
  // `alignment` bytes before the guard, which is filled with the canary and checked.
  std::size_t alignment = 0;
  // A zero-length buffer gets a non-null pointer to the first byte of its trailing guard page
  // (any access faults and is attributed to it), or nullptr when this is true.
  bool null_for_empty = false;
};

// Where an address lies relative to the arena's buffers.
struct buffer_location {
  enum class place : std::uint8_t {
    before,  // in the guard pages or canary bytes in front of the buffer
    inside,  // within [first element, last element]
    after,   // in the canary gap or guard pages behind the buffer
  };
  std::size_t buffer = 0;  // index of the buffer
  place where = place::inside;
  std::int64_t element = 0;  // element index the address falls in (negative before the start)
};

enum class outcome : std::uint8_t {
  ok,              // the call returned `status`; no canary damaged, no input modified
  crashed,         // terminated by `signal` (attributed to a buffer when the address says so)
  timed_out,       // still running after the timeout; killed and reaped
  exited,          // the process exited with `exit_code` without the call returning
  threw,           // the call threw a C++ exception
  canary_damaged,  // the call returned, but wrote into the canary bytes around a buffer
  input_modified,  // the call returned, no canary is damaged, but an input differs from its
                   // snapshot
};

[[nodiscard]] std::string_view to_string(outcome o);

// One problem found after a call: a damaged canary or a modified input.
struct arena_finding {
  outcome kind = outcome::canary_damaged;  // canary_damaged or input_modified
  std::size_t buffer = 0;
  std::string sentence;  // e.g. "wrote before the start of dst: 4 bytes in front of it changed"
};

class guarded_arena {
 public:
  guarded_arena() = default;  // no buffers; fine to pass to run_isolated
  // Maps the buffers; throws std::invalid_argument (bad spec, duplicate name) or
  // std::system_error (mmap/mprotect). Buffers are zero-filled.
  explicit guarded_arena(std::vector<buffer_spec> specs, arena_options options = {});
  ~guarded_arena();
  guarded_arena(guarded_arena&& other) noexcept;
  guarded_arena& operator=(guarded_arena&& other) noexcept;
  guarded_arena(const guarded_arena&) = delete;
  guarded_arena& operator=(const guarded_arena&) = delete;

  [[nodiscard]] std::size_t size() const { return buffers_.size(); }
  [[nodiscard]] const buffer_spec& spec(std::size_t i) const { return buffers_.at(i).spec; }
  [[nodiscard]] std::optional<std::size_t> find(std::string_view name) const;
  [[nodiscard]] bool contains(std::string_view name) const { return find(name).has_value(); }

  // Start of a buffer (nullptr for a zero-length buffer with null_for_empty). The typed accessors
  // throw std::invalid_argument for an unknown name or the wrong element type.
  [[nodiscard]] void* data(std::size_t i) const;
  [[nodiscard]] float* f32(std::string_view name) const;
  [[nodiscard]] std::int64_t* i64(std::string_view name) const;
  [[nodiscard]] std::span<float> f32_span(std::string_view name) const;
  [[nodiscard]] std::span<std::int64_t> i64_span(std::string_view name) const;
  // The bits of a float16 or bfloat16 buffer.
  [[nodiscard]] std::span<std::uint16_t> half_span(std::string_view name) const;

  // Which buffer (and where in or around it) an address falls, if any.
  [[nodiscard]] std::optional<buffer_location> locate(std::uintptr_t address) const;

  // Before a call: rewrites every canary and snapshots every input buffer.
  void arm();
  // After a call: every damaged canary and every input that differs from its snapshot, in buffer
  // order. Then re-arms the canaries and restores modified inputs from the snapshot, so the
  // arena is as the caller left it except for outputs and in-out buffers.
  [[nodiscard]] std::vector<arena_finding> check_and_restore();

  // Page ranges a child must make read-only: (address, length) of every non-empty input.
  [[nodiscard]] std::vector<std::pair<void*, std::size_t>> input_pages() const;
  // Every non-empty buffer's pages, and whether the kernel may write them (all but inputs).
  struct page_range {
    void* address = nullptr;
    std::size_t length = 0;
    bool writable = false;
  };
  [[nodiscard]] std::vector<page_range> buffer_pages() const;
  // Whether the arena lies in the shared slab, where a persistent worker reaches it.
  [[nodiscard]] bool shared() const { return in_slab_; }

 private:
  struct buffer {
    buffer_spec spec;
    std::size_t elem = 4;  // bytes per element
    // Offsets in bytes from the start of the mapping.
    std::size_t guard_lo;  // first byte of the guard in front
    std::size_t pages_lo;  // first byte of the buffer's read-write pages
    std::size_t start;     // first element
    std::size_t end;       // one past the last element
    std::size_t pages_hi;  // one past the buffer's pages = first byte of the guard behind
    std::size_t guard_hi;  // one past the guard behind
    std::vector<unsigned char> snapshot;  // inputs: contents when armed
  };
  void release() noexcept;
  [[nodiscard]] unsigned char* at(std::size_t offset) const {
    return static_cast<unsigned char*>(base_) + offset;
  }
  void fill_canaries(const buffer& b) const;
  [[nodiscard]] const buffer& named(std::string_view name, element_type type) const;

  arena_options options_{};
  void* base_ = nullptr;
  std::size_t length_ = 0;
  bool in_slab_ = false;
  void* slab_ = nullptr;  // the shared slab the arena lies in (isolation.cpp)
  std::vector<buffer> buffers_;
};

// The bnk_buffers view of an arena: each field points at the buffer of the same name ("src",
// "diff_dst", "gamma", "beta", "running_mean", "running_var", "num_batches_tracked",
// "save_mean", "save_stat", "dst", "diff_src", "diff_gamma", "diff_beta"), or is NULL when there
// is none. Throws std::invalid_argument when such a buffer has the wrong element type.
[[nodiscard]] bnk_buffers abi_buffers(const guarded_arena& arena);
// The same for ABI version 2: untyped pointers to the same buffers (any element type).
[[nodiscard]] bnk_buffers_v2 abi_buffers_v2(const guarded_arena& arena);

struct run_result {
  outcome kind = outcome::ok;
  int status = 0;       // what the call returned (when it returned)
  std::string message;  // the call's message (when it returned)
  std::string reason;   // empty when ok; else one sentence naming the fault and buffer
  int signal = 0;       // crashed: the signal number
  int exit_code = 0;    // exited: the code
  double seconds = 0;   // wall time of the call
  std::optional<std::size_t> buffer;      // the buffer the fault is attributed to, if any
  std::optional<std::uintptr_t> address;  // crashed: the faulting address, if known
  std::vector<arena_finding> findings;    // every canary/input problem, also after a crash
  // What the call printed on stdout and stderr (isolated calls only): at most
  // k_captured_output_limit bytes; output_bytes counts what it wrote, kept or not (at most
  // k_call_output_file).
  std::string output;
  std::size_t output_bytes = 0;

  [[nodiscard]] bool ok() const { return kind == outcome::ok; }
};

// Bytes of an isolated call's stdout and stderr that are kept (and forwarded); the rest is
// counted only, up to k_call_output_file, past which the kernel's writes fail.
inline constexpr std::size_t k_captured_output_limit = 65536;
inline constexpr std::size_t k_call_output_file = std::size_t{1} << 20;

// `call` receives a message buffer and its size (including the NUL) and returns a status. It may
// capture pointers into the arena: they are valid in the child, which inherits the mapping.
using isolated_call = std::function<int(char* message, std::size_t size)>;

// How the parent waits for the child. `automatic` sleeps in poll() on a pidfd (Linux 5.3+) and
// falls back to `polling` (waitpid WNOHANG with sleeps of 0.1 to 5 ms) when pidfd_open fails.
enum class wait_method : std::uint8_t { automatic, polling };

// Runs `call` in a forked child (see the constraints at the top of this file). Throws
// std::system_error only when the machinery itself fails (mmap, fork, waitpid), never for
// anything the call does.
[[nodiscard]] run_result run_isolated(const isolated_call& call, guarded_arena& arena,
                                      std::chrono::milliseconds timeout,
                                      wait_method wait = wait_method::automatic);

// Runs one mode of `kernel` isolated: in the calling thread's persistent worker when the kernel
// runs_in_worker, the arena lies in the shared slab and fork_per_call() is false; otherwise
// through run_isolated(kernel_call(...)). The result is classified as run_isolated's is.
[[nodiscard]] run_result run_kernel_isolated(bn_kernel& kernel, bn_mode mode,
                                             const bnk_problem_v2& problem,
                                             const bnk_buffers_v2& buffers, guarded_arena& arena,
                                             std::chrono::milliseconds timeout,
                                             wait_method wait = wait_method::automatic);

// Whether run_kernel_isolated forks for every call. Initially true when the environment variable
// BNORACLE_FORK_PER_CALL is set to anything but "" or "0", else false. Set it before the first
// arena is created to also keep arenas out of the shared slab.
[[nodiscard]] bool fork_per_call();
void set_fork_per_call(bool on);

// Counts for tests and benchmarks, over the whole process.
struct isolation_counts {
  std::uint64_t worker_calls = 0;     // calls run by a persistent worker
  std::uint64_t workers_started = 0;  // workers forked
  std::uint64_t forked_calls = 0;     // calls run by a fork of their own (run_isolated)
};
[[nodiscard]] isolation_counts isolation_statistics();
// Ends the calling thread's persistent worker, if it has one (it also ends with the thread).
void stop_worker();

// Runs `call` in this process, then checks canaries and inputs. No timeout; a fault in a guard
// page (or anything else the call does wrong) takes the process down.
[[nodiscard]] run_result run_inline(const isolated_call& call, guarded_arena& arena);

// A call of one mode of a kernel through bn_kernel::run_v2 (the kernel and the arena must
// outlive the call).
[[nodiscard]] isolated_call kernel_call(bn_kernel& kernel, bn_mode mode,
                                        const bnk_problem_v2& problem,
                                        const bnk_buffers_v2& buffers);

// A kernel's message buffer on a page of its own, ending exactly at a PROT_NONE guard page and
// preceded by one, so that a kernel writing more than `size` bytes into it faults at once, and
// the fault is attributed to the message buffer ("wrote past the end of the message buffer").
class guarded_message {
 public:
  explicit guarded_message(std::size_t size = 1024);  // throws std::system_error (mmap)
  ~guarded_message();
  guarded_message(const guarded_message&) = delete;
  guarded_message& operator=(const guarded_message&) = delete;
  guarded_message(guarded_message&&) = delete;
  guarded_message& operator=(guarded_message&&) = delete;

  [[nodiscard]] char* data() const { return data_; }
  [[nodiscard]] std::size_t size() const { return size_; }
  // Zero-fills the buffer (before a call).
  void clear() const;
  // The text the kernel wrote: up to the first NUL, or all `size` bytes when it wrote none.
  [[nodiscard]] std::string text() const;

 private:
  void* base_ = nullptr;
  std::size_t length_ = 0;
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

// Processes a kernel left behind. When this process is a child subreaper, kills and reaps every
// child of it that is neither registered as owned nor listed in `keep` (repeating while killing
// orphans more of them) and returns how many; otherwise does nothing and returns 0.
// run_isolated calls it after each call, keeping the children that existed before the call.
std::size_t end_stray_processes(const std::vector<pid_t>& keep = {});
// The children of this process when it is a child subreaper (else none): what run_isolated keeps.
[[nodiscard]] std::vector<pid_t> children_if_subreaper();
// When this process is a child subreaper, reaps children that have ended and are not owned, so
// that orphans of a long-lived kernel process do not pile up as zombies.
void reap_exited_strays();
// Children this process keeps on purpose (a subprocess kernel), which end_stray_processes spares.
void register_owned_child(pid_t pid);
void unregister_owned_child(pid_t pid);

// "SIGSEGV", "SIGABRT", ... or "signal N".
[[nodiscard]] std::string signal_name(int signal);

}  // namespace bnoracle
