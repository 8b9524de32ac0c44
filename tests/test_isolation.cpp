// Fault isolation: guarded buffers and the forking executor (adapters/src/isolation.cpp), driven
// directly with lambdas and through faulty kernel plugins (tests/faulty_kernels/).
#include "bnoracle/isolation.hpp"
#include "bnoracle/kernel.hpp"
#include "bnoracle/text.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bnoracle {
namespace {

using namespace std::chrono_literals;

constexpr auto timeout = 2000ms;  // generous for crashes; the hang tests use 200 ms

std::size_t page_floats() {
  return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) / 4;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// No child may be left behind, not even a zombie. The calling thread's persistent worker is
// bnoracle's own (run_kernel_isolated keeps it between calls): it is ended first.
void expect_no_children() {
  stop_worker();
  errno = 0;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// The faults the lambdas commit are undefined behaviour on purpose: keep the sanitizers out so the
// process faults as an uninstrumented kernel would.
float* volatile null_float = nullptr;
volatile unsigned spin = 0;

#define BNORACLE_NO_SANITIZE __attribute__((no_sanitize("address", "undefined"), noinline))

BNORACLE_NO_SANITIZE void write_float(float* p, std::ptrdiff_t i) {
  p[i] = 1.0f;
}
BNORACLE_NO_SANITIZE float read_float(const float* p, std::ptrdiff_t i) {
  const volatile float* v = p;
  return v[i];
}
BNORACLE_NO_SANITIZE void write_null() {
  *null_float = 1.0f;
}
[[noreturn]] void loop_forever() {
  for (;;) spin = spin + 1;
}

// An arena with one input and one output of `n` floats, plus small per-channel buffers.
guarded_arena small_arena(std::size_t n = 12, arena_options options = {}) {
  return guarded_arena({{"src", buffer_role::input, element_type::f32, n},
                        {"dst", buffer_role::output, element_type::f32, n},
                        {"running_mean", buffer_role::in_out, element_type::f32, 3},
                        {"num_batches_tracked", buffer_role::in_out, element_type::i64, 1}},
                       options);
}

// The run goes on: a well-behaved call on the same arena afterwards is ok and sees clean inputs.
void expect_good_call_works(guarded_arena& arena) {
  const auto src = arena.f32_span("src");
  const auto dst = arena.f32_span("dst");
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
  const run_result r = run_isolated(
      [src, dst](char*, std::size_t) {
        for (std::size_t i = 0; i < src.size(); ++i) dst[i] = 2.0f * src[i];
        return 0;
      },
      arena, timeout);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_TRUE(r.findings.empty());
  for (std::size_t i = 0; i < dst.size(); ++i) EXPECT_EQ(dst[i], 2.0f * static_cast<float>(i));
  expect_no_children();
}

// ---- The arena ----------------------------------------------------------------------------------

TEST(IsolationArena, BuffersEndAtAGuardPageAndLocateAddresses) {
  guarded_arena a = small_arena(12);
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto start = reinterpret_cast<std::uintptr_t>(a.data(i));
    const std::size_t bytes = a.spec(i).count * (a.spec(i).type == element_type::f32 ? 4 : 8);
    EXPECT_EQ((start + bytes) % page, 0U) << a.spec(i).name;
  }
  const auto dst = reinterpret_cast<std::uintptr_t>(a.f32("dst"));
  const auto past = a.locate(dst + std::uintptr_t{12} * 4);
  ASSERT_TRUE(past.has_value());
  EXPECT_EQ(a.spec(past->buffer).name, "dst");
  EXPECT_EQ(past->where, buffer_location::place::after);
  EXPECT_EQ(past->element, 12);
  const auto before = a.locate(dst - 4);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->where, buffer_location::place::before);
  EXPECT_EQ(before->element, -1);
  EXPECT_EQ(a.locate(dst + 4)->where, buffer_location::place::inside);
  EXPECT_FALSE(a.locate(0x10).has_value());

  const bnk_buffers b = abi_buffers(a);
  EXPECT_EQ(b.src, a.f32("src"));
  EXPECT_EQ(b.dst, a.f32("dst"));
  EXPECT_EQ(b.num_batches_tracked, a.i64("num_batches_tracked"));
  EXPECT_EQ(b.gamma, nullptr);
  EXPECT_THROW((void)a.i64("src"), std::invalid_argument);
  EXPECT_THROW(guarded_arena({{"x", buffer_role::input, element_type::f32, 1},
                              {"x", buffer_role::output, element_type::f32, 1}}),
               std::invalid_argument);
}

TEST(IsolationArena, ZeroLengthBuffersGetAGuardPointerOrNull) {
  guarded_arena guarded({{"empty", buffer_role::output, element_type::f32, 0}});
  float* const p = guarded.f32("empty");
  ASSERT_NE(p, nullptr);
  const run_result r = run_isolated(
      [p](char*, std::size_t) {
        write_float(p, 0);
        return 0;
      },
      guarded, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_TRUE(contains(r.reason, "past the end of empty (element 0; empty has 0 elements"))
      << r.reason;

  arena_options null_empty;
  null_empty.null_for_empty = true;
  guarded_arena nulled({{"empty", buffer_role::output, element_type::f32, 0}}, null_empty);
  EXPECT_EQ(nulled.f32("empty"), nullptr);
  EXPECT_EQ(nulled.f32_span("empty").size(), 0U);
}

TEST(IsolationArena, AlignmentGapBehindABufferIsCanaryChecked) {
  arena_options aligned;
  aligned.alignment = 64;
  guarded_arena a = small_arena(13, aligned);
  float* const dst = a.f32("dst");
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(dst) % 64, 0U);
  const run_result r = run_isolated(
      [dst](char*, std::size_t) {
        write_float(dst, 13);
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::canary_damaged);
  EXPECT_TRUE(contains(r.reason, "wrote past the end of dst (13 elements)")) << r.reason;
  expect_good_call_works(a);
}

// ---- run_isolated with lambdas --------------------------------------------------------------

TEST(Isolation, WellBehavedCallReturnsItsStatusAndMessage) {
  guarded_arena a = small_arena();
  float* const dst = a.f32("dst");
  std::int64_t* const count = a.i64("num_batches_tracked");
  const run_result r = run_isolated(
      [dst, count](char* message, std::size_t size) {
        dst[11] = 5.0f;
        *count += 1;
        std::snprintf(message, size, "refused on purpose");
        return 2;
      },
      a, timeout);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.message, "refused on purpose");
  EXPECT_TRUE(r.reason.empty());
  EXPECT_EQ(dst[11], 5.0f);  // the child's writes are visible in the parent
  EXPECT_EQ(*count, 1);
  expect_no_children();
}

TEST(Isolation, NullPointerWriteCrashesWithSigsegvOutsideEveryBuffer) {
  guarded_arena a = small_arena();
  const run_result r = run_isolated(
      [](char*, std::size_t) {
        write_null();
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_FALSE(r.buffer.has_value());
  EXPECT_TRUE(contains(r.reason, "crashed with SIGSEGV")) << r.reason;
  EXPECT_TRUE(contains(r.reason, "null pointer")) << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, AbortCrashesWithSigabrt) {
  guarded_arena a = small_arena();
  const run_result r = run_isolated([](char*, std::size_t) -> int { std::abort(); }, a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGABRT);
  EXPECT_TRUE(contains(r.reason, "crashed with SIGABRT (aborted")) << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, InfiniteLoopTimesOutAndTheChildIsReaped) {
  guarded_arena a = small_arena();
  const auto t0 = std::chrono::steady_clock::now();
  const run_result r = run_isolated([](char*, std::size_t) -> int { loop_forever(); }, a, 200ms);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.kind, outcome::timed_out);
  EXPECT_DOUBLE_EQ(r.seconds, 0.2);
  EXPECT_TRUE(contains(r.reason, "timed out: still running after 0.2 s")) << r.reason;
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 1500ms);
  expect_no_children();
  expect_good_call_works(a);
}

TEST(Isolation, InfiniteLoopTimesOutWithTheWaitpidPollingFallback) {
  guarded_arena a = small_arena();
  const auto t0 = std::chrono::steady_clock::now();
  const run_result r = run_isolated([](char*, std::size_t) -> int { loop_forever(); }, a, 200ms,
                                    wait_method::polling);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.kind, outcome::timed_out);
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 1500ms);
  expect_no_children();
  // A quick call is not made to wait for the deadline by the polling either.
  const auto t1 = std::chrono::steady_clock::now();
  const run_result quick =
      run_isolated([](char*, std::size_t) { return 0; }, a, 10000ms, wait_method::polling);
  EXPECT_TRUE(quick.ok()) << quick.reason;
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 1000ms);
  expect_good_call_works(a);
}

TEST(Isolation, WritingOneFloatPastAnOutputIsAttributedToItsEnd) {
  guarded_arena a = small_arena();
  float* const dst = a.f32("dst");
  const run_result r = run_isolated(
      [dst](char*, std::size_t) {
        write_float(dst, 12);
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  ASSERT_TRUE(r.buffer.has_value());
  EXPECT_EQ(a.spec(*r.buffer).name, "dst");
  EXPECT_TRUE(contains(r.reason,
                       "crashed with SIGSEGV: wrote past the end of dst (element 12; "
                       "dst has 12 elements"))
      << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, WritingOneFloatBeforeAnOutputDamagesTheCanary) {
  guarded_arena a = small_arena(12);  // 48 bytes: the rest of the page in front is canary
  float* const dst = a.f32("dst");
  const run_result r = run_isolated(
      [dst](char*, std::size_t) {
        write_float(dst, -1);
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::canary_damaged);
  ASSERT_TRUE(r.buffer.has_value());
  EXPECT_EQ(a.spec(*r.buffer).name, "dst");
  EXPECT_EQ(r.reason,
            "wrote before the start of dst: the canary 4 bytes in front of its first element was "
            "overwritten");
  expect_good_call_works(a);
}

TEST(Isolation, WritingOneFloatBeforeAPageSizedOutputFaultsInTheGuard) {
  guarded_arena a = small_arena(page_floats());  // no slack: the guard page is right in front
  float* const dst = a.f32("dst");
  const run_result r = run_isolated(
      [dst](char*, std::size_t) {
        write_float(dst, -1);
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_TRUE(contains(r.reason, "crashed with SIGSEGV: wrote before the start of dst (element -1"))
      << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, WritingAnInputIsAttributedToThatInput) {
  guarded_arena a = small_arena();
  float* const src = a.f32("src");
  const run_result r = run_isolated(
      [src](char*, std::size_t) {
        write_float(src, 3);
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_TRUE(contains(r.reason, "crashed with SIGSEGV: wrote to input src (element 3; "))
      << r.reason;
  EXPECT_TRUE(contains(r.reason, "inputs are read-only")) << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, ReadingPastAnInputIsAttributedToItsEnd) {
  guarded_arena a = small_arena();
  const float* const src = a.f32("src");
  const run_result r = run_isolated(
      [src](char*, std::size_t) { return static_cast<int>(read_float(src, 12)); }, a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
#if defined(__x86_64__)
  EXPECT_TRUE(contains(r.reason, "crashed with SIGSEGV: read past the end of input src"))
      << r.reason;
#else
  EXPECT_TRUE(contains(r.reason, "past the end of input src")) << r.reason;
#endif
  expect_good_call_works(a);
}

TEST(Isolation, CrashInAThreadOfTheCallIsAttributed) {
  guarded_arena a = small_arena();
  float* const dst = a.f32("dst");
  const run_result r = run_isolated(
      [dst](char*, std::size_t) {
        std::thread worker([dst] { write_float(dst, 12); });
        worker.join();
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason, "wrote past the end of dst")) << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, ExitDuringTheCallIsReportedWithItsCode) {
  guarded_arena a = small_arena();
  const run_result r = run_isolated([](char*, std::size_t) -> int { _exit(4); }, a, timeout);
  EXPECT_EQ(r.kind, outcome::exited);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_TRUE(contains(r.reason, "exited with code 4 before the call returned")) << r.reason;
  expect_good_call_works(a);
}

TEST(Isolation, ParentStreamsAreFlushedSoAnExitingChildDoesNotRepeatThem) {
  guarded_arena a = small_arena();
  testing::internal::CaptureStdout();
  std::printf("unflushed-marker;");  // sits in the stdio buffer at fork time
  const run_result r = run_isolated(
      [](char*, std::size_t) -> int {
        std::exit(3);  // NOLINT(concurrency-mt-unsafe): flushes the child's copy of the buffers
      },
      a, timeout);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(r.kind, outcome::exited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(out, "unflushed-marker;");
  expect_good_call_works(a);
}

TEST(Isolation, ExceptionIsReported) {
  guarded_arena a = small_arena();
  const run_result r = run_isolated(
      [](char*, std::size_t) -> int { throw std::runtime_error("no luck"); }, a, timeout);
  EXPECT_EQ(r.kind, outcome::threw);
  EXPECT_EQ(r.reason, "threw an exception: no luck");
  expect_good_call_works(a);
}

TEST(Isolation, InputModifiedAfterRestoringItsProtectionIsCaughtAndRestored) {
  guarded_arena a = small_arena();
  float* const src = a.f32("src");
  for (int i = 0; i < 12; ++i) src[i] = static_cast<float>(i) + 0.5f;
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const run_result r = run_isolated(
      [src, page](char*, std::size_t) {
        char* const first =
            reinterpret_cast<char*>(src) - reinterpret_cast<std::uintptr_t>(src) % page;
        if (mprotect(first, page, PROT_READ | PROT_WRITE) != 0) return 9;
        src[2] = -1.0f;
        return 0;
      },
      a, timeout);
  EXPECT_EQ(r.kind, outcome::input_modified);
  EXPECT_EQ(r.reason,
            "modified input src: element 2 changed from 2.5 to -1 (1 of 12 elements differ; "
            "restored)");
  EXPECT_EQ(src[2], 2.5f);  // restored from the snapshot
  expect_good_call_works(a);
}

TEST(Isolation, InlineRunChecksCanariesAndInputs) {
  guarded_arena a = small_arena();
  float* const src = a.f32("src");
  float* const dst = a.f32("dst");
  const run_result bad = run_inline(
      [src, dst](char*, std::size_t) {
        write_float(dst, -1);  // into the canary: no fault
        src[0] = 7.0f;         // inputs stay writable in-process
        return 0;
      },
      a);
  EXPECT_EQ(bad.kind, outcome::canary_damaged);
  ASSERT_EQ(bad.findings.size(), 2U);
  EXPECT_EQ(bad.findings[0].kind, outcome::input_modified);
  EXPECT_EQ(bad.findings[1].kind, outcome::canary_damaged);
  EXPECT_TRUE(contains(bad.reason, "modified input src: element 0 changed from 0 to 7"))
      << bad.reason;
  EXPECT_EQ(src[0], 0.0f);
  const run_result good = run_inline(
      [dst](char* message, std::size_t size) {
        dst[0] = 1.0f;
        std::snprintf(message, size, "fine");
        return 0;
      },
      a);
  EXPECT_TRUE(good.ok()) << good.reason;
  EXPECT_EQ(good.message, "fine");
}

// ---- Processes and output of a call
// ---------------------------------------------------------------

// Whether process `pid` is gone (or a zombie), waiting up to two seconds.
bool gone(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
    if (f == nullptr) return true;
    char line[512] = {};
    const bool read = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    const char* close = read ? std::strrchr(line, ')') : nullptr;
    if (close == nullptr || close[2] == 'Z') return true;
    usleep(10000);
  }
  return false;
}

// A pipe whose read end receives the pid a call's descendant writes.
struct pid_pipe {
  int fd[2] = {-1, -1};
  pid_pipe() { EXPECT_EQ(pipe(fd), 0); }
  ~pid_pipe() {
    close(fd[0]);
    if (fd[1] >= 0) close(fd[1]);
  }
  pid_t read_pid() {
    close(fd[1]);
    fd[1] = -1;
    pid_t pid = 0;
    EXPECT_EQ(read(fd[0], &pid, sizeof pid), static_cast<ssize_t>(sizeof pid));
    return pid;
  }
};

TEST(IsolationProcesses, AProcessTheCallStartsDiesWithTheCall) {
  guarded_arena a = small_arena();
  pid_pipe p;
  const int w = p.fd[1];
  const run_result r = run_isolated(
      [w](char*, std::size_t) {
        const pid_t pid = fork();
        if (pid == 0) {
          sleep(60);
          _exit(0);
        }
        (void)!write(w, &pid, sizeof pid);
        return 0;
      },
      a, timeout);
  EXPECT_TRUE(r.ok()) << r.reason;
  const pid_t left = p.read_pid();
  EXPECT_TRUE(gone(left)) << "process " << left << " outlived the call";
  expect_no_children();
}

TEST(IsolationProcesses, AProcessThatLeftTheGroupIsKilledByASubreaper) {
  // setsid() leaves the call's process group; with this process a child subreaper (as the CLI
  // is) the orphan is reparented here and killed after the call. Each test runs in a process of
  // its own, so the flag does not leak into other tests.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  guarded_arena a = small_arena();
  pid_pipe p;
  const int w = p.fd[1];
  const run_result r = run_isolated(
      [w](char*, std::size_t) {
        const pid_t pid = fork();
        if (pid == 0) {
          setsid();
          sleep(60);
          _exit(0);
        }
        (void)!write(w, &pid, sizeof pid);
        return 0;
      },
      a, timeout);
  EXPECT_TRUE(r.ok()) << r.reason;
  const pid_t left = p.read_pid();
  EXPECT_TRUE(gone(left)) << "process " << left << " outlived the call";
  expect_no_children();
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}

TEST(IsolationProcesses, OutputIsCapturedBoundedAndNamedInAFault) {
  guarded_arena a = small_arena();
  const run_result small = run_isolated(
      [](char*, std::size_t) {
        std::printf("hello from the kernel\n");
        std::fflush(stdout);
        std::fprintf(stderr, "and from its stderr\n");
        return 0;
      },
      a, timeout);
  EXPECT_TRUE(small.ok()) << small.reason;
  EXPECT_EQ(small.output, "hello from the kernel\nand from its stderr\n");
  // A flood: 8 MiB attempted; the first k_captured_output_limit bytes kept, k_call_output_file
  // bytes counted, the writes past it refused.
  const run_result flood = run_isolated(
      [](char*, std::size_t) {
        static char block[65536];
        std::memset(block, 'F', sizeof block);
        for (int i = 0; i < 128; ++i) (void)!write(STDOUT_FILENO, block, sizeof block);
        return 0;
      },
      a, timeout);
  EXPECT_TRUE(flood.ok()) << flood.reason;
  EXPECT_EQ(flood.output.size(), k_captured_output_limit);
  EXPECT_EQ(flood.output_bytes, k_call_output_file);
  // A kernel that prints without flushing (stdout is a file, fully buffered) is captured too.
  const run_result buffered = run_isolated(
      [](char*, std::size_t) {
        std::printf("buffered line\n");
        return 0;
      },
      a, timeout);
  EXPECT_EQ(buffered.output, "buffered line\n");
  // The last line printed before a crash is part of the reason.
  const run_result crash = run_isolated(
      [](char*, std::size_t) -> int {
        std::fprintf(stderr, "first line\nkernel.c:12: assertion `n > 0' failed\n");
        std::abort();
      },
      a, timeout);
  EXPECT_EQ(crash.kind, outcome::crashed);
  EXPECT_TRUE(
      contains(crash.reason, "the last line it printed: \"kernel.c:12: assertion `n > 0' failed\""))
      << crash.reason;
  expect_no_children();
}

// ---- Faulty plugins through load_plugin + bn_kernel::run -----------------------------------

std::unique_ptr<bn_kernel> plugin(const std::string& fault) {
  return load_plugin(std::string(BNORACLE_FAULTY_KERNEL_DIR) + "/faulty_" + fault + ".so");
}

// Forward inference on a dense N x C problem with buffers from a guarded arena.
struct plugin_case {
  static constexpr std::int64_t n = 4;
  static constexpr std::int64_t c = 3;
  guarded_arena arena{{{"src", buffer_role::input, element_type::f32, n* c},
                       {"gamma", buffer_role::input, element_type::f32, c},
                       {"beta", buffer_role::input, element_type::f32, c},
                       {"running_mean", buffer_role::input, element_type::f32, c},
                       {"running_var", buffer_role::input, element_type::f32, c},
                       {"dst", buffer_role::output, element_type::f32, n* c}}};
  bnk_problem problem{};

  plugin_case() {
    problem.struct_size = sizeof problem;
    problem.shape.rank = 2;
    problem.shape.layout = BNK_LAYOUT_NC;
    for (int i = 0; i < 5; ++i) problem.shape.dims[i] = 1;
    problem.shape.dims[0] = n;
    problem.shape.dims[1] = c;
    problem.shape.strides[0] = c;
    problem.shape.strides[1] = 1;
    problem.eps = 1e-5;
    problem.affine = 1;
    auto src = arena.f32_span("src");
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
    for (float& g : arena.f32_span("gamma")) g = 2.0f;
    for (float& v : arena.f32_span("running_var")) v = 1.0f;
  }

  // In the persistent worker, or forked for the call (the parameter of the IsolationPlugin
  // tests): run_kernel_isolated takes the worker for plugins unless fork_per_call() is set.
  run_result run(bn_kernel& k, std::chrono::milliseconds limit = timeout) {
    return run_kernel_isolated(k, bn_mode::forward_inference, to_v2(problem), abi_buffers_v2(arena),
                               arena, limit);
  }

  // After any fault, the well-behaved plugin still works on the same arena in this process.
  void expect_well_behaved_kernel_works() {
    for (float& d : arena.f32_span("dst")) d = 0.0f;
    auto good = plugin("none");
    const run_result r = run(*good);
    EXPECT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(r.status, BNK_OK);
    const auto dst = arena.f32_span("dst");
    for (std::size_t i = 0; i < dst.size(); ++i) {
      EXPECT_NEAR(dst[i], 2.0f * static_cast<float>(i) / std::sqrt(1.0f + 1e-5f), 1e-5f);
    }
    expect_no_children();
  }
};

// Every plugin test runs twice: with a fork per call, and in the persistent worker.
class IsolationPlugin : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    stop_worker();
    set_fork_per_call(GetParam());
  }
  void TearDown() override {
    stop_worker();
    set_fork_per_call(false);
  }
};

INSTANTIATE_TEST_SUITE_P(Isolation, IsolationPlugin, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return std::string(param.param ? "ForkPerCall" : "Worker");
                         });

TEST_P(IsolationPlugin, WellBehavedKernelIsOk) {
  plugin_case t;
  t.expect_well_behaved_kernel_works();
  // Unsupported is a status, not a fault.
  t.problem.shape.layout = BNK_LAYOUT_STRIDED;
  auto good = plugin("none");
  const run_result r = t.run(*good);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.status, BNK_UNSUPPORTED);
  EXPECT_EQ(r.message, "only dense NC is supported");
}

TEST_P(IsolationPlugin, NullPointerWrite) {
  plugin_case t;
  auto k = plugin("null_deref");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_FALSE(r.buffer.has_value());
  EXPECT_TRUE(contains(r.reason, "null pointer")) << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, Abort) {
  plugin_case t;
  auto k = plugin("abort");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_EQ(r.signal, SIGABRT);
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, Hang) {
  plugin_case t;
  auto k = plugin("hang");
  const run_result r = t.run(*k, 200ms);
  EXPECT_EQ(r.kind, outcome::timed_out);
  expect_no_children();
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, OverrunOfDst) {
  plugin_case t;
  auto k = plugin("overrun");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason, "wrote past the end of dst (element 12; dst has 12 elements"))
      << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, UnderrunOfDst) {
  plugin_case t;
  auto k = plugin("underrun");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::canary_damaged);
  EXPECT_TRUE(contains(r.reason, "wrote before the start of dst")) << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, WriteToInput) {
  plugin_case t;
  auto k = plugin("write_input");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason, "wrote to input src (element 0;")) << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, ReadPastInput) {
  plugin_case t;
  auto k = plugin("read_past_input");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason, "past the end of input src (element 12;")) << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, ExitThree) {
  plugin_case t;
  auto k = plugin("exit3");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::exited);
  EXPECT_EQ(r.exit_code, 3);
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, InputModifiedBehindItsProtection) {
  plugin_case t;
  auto k = plugin("unprotect_input");
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::input_modified);
  EXPECT_EQ(r.reason,
            "modified input src: element 0 changed from 0 to 1 (1 of 12 elements differ; "
            "restored)");
  t.expect_well_behaved_kernel_works();
}

// ---- Hostile plugins: loading is probed in an isolated child ---------------------------------

std::string hostile(const std::string& attack) {
  return std::string(BNORACLE_FAULTY_KERNEL_DIR) + "/hostile_" + attack + ".so";
}

// load_plugin throws plugin_fault whose text holds every one of `parts`.
void expect_load_fault(const std::string& attack, const std::vector<std::string>& parts,
                       std::chrono::milliseconds limit = timeout) {
  try {
    (void)load_plugin(hostile(attack), load_options{true, limit});
    ADD_FAILURE() << attack << " loaded";
  } catch (const plugin_fault& e) {
    for (const auto& part : parts) EXPECT_TRUE(contains(e.what(), part)) << e.what();
  }
  expect_no_children();
}

TEST(IsolationLoading, ALibraryThatMisbehavesWhileLoadingIsAFaultNotACrash) {
  expect_load_fault("ctor_crash", {"crashed with SIGSEGV", "while being loaded"});
  expect_load_fault("ctor_exit0", {"exited with code 0", "while being loaded"});
  expect_load_fault("ctor_hang", {"timed out", "while being loaded"}, 300ms);
  expect_load_fault("entry_crash", {"crashed with SIGSEGV", "in its entry function"});
  expect_load_fault("entry_exit0", {"exited with code 0", "in its entry function"});
  expect_load_fault("name_unmapped", {"crashed with SIGSEGV", "while its kernel table was read"});
  // A well-behaved library passes the probe and loads.
  EXPECT_NO_THROW((void)load_plugin(hostile("all_null")));
}

TEST_P(IsolationPlugin, OverrunOfTheMessageBufferIsAttributedToIt) {
  plugin_case t;
  auto k = load_plugin(hostile("message_overrun"));
  const run_result r = t.run(*k);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason,
                       "wrote past the end of the message buffer (byte 1024; message_size is "
                       "1024 bytes"))
      << r.reason;
  t.expect_well_behaved_kernel_works();
}

TEST_P(IsolationPlugin, InvalidUtf8FromAKernelIsReplaced) {
  plugin_case t;
  auto k = load_plugin(hostile("bad_utf8"));
  EXPECT_TRUE(is_valid_utf8(k->info().name)) << k->info().name;
  EXPECT_EQ(k->info().name, "hostile\xEF\xBF\xBD\xEF\xBF\xBD<&>");
  EXPECT_EQ(k->info().version, "1.0\xEF\xBF\xBD(");
  const run_result r = t.run(*k);
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.status, BNK_FAILED);
  EXPECT_TRUE(is_valid_utf8(r.message)) << r.message;
  EXPECT_TRUE(contains(r.message, "a cut \xEF\xBF\xBD and a lone \xEF\xBF\xBD here")) << r.message;
}

// ---- The persistent worker --------------------------------------------------------------------

// Plugin calls in the worker (fork_per_call off), one worker per test.
class IsolationWorker : public ::testing::Test {
 protected:
  void SetUp() override {
    set_fork_per_call(false);
    stop_worker();
    before_ = isolation_statistics();
  }
  void TearDown() override { stop_worker(); }

  [[nodiscard]] std::uint64_t workers_started() const {
    return isolation_statistics().workers_started - before_.workers_started;
  }
  [[nodiscard]] std::uint64_t worker_calls() const {
    return isolation_statistics().worker_calls - before_.worker_calls;
  }
  [[nodiscard]] std::uint64_t forked_calls() const {
    return isolation_statistics().forked_calls - before_.forked_calls;
  }

 private:
  isolation_counts before_{};
};

TEST_F(IsolationWorker, CallsOfOneKernelShareOneWorker) {
  plugin_case t;
  ASSERT_TRUE(t.arena.shared());
  auto good = plugin("none");  // loading probes the library in a fork of its own
  const std::uint64_t forked_loading = forked_calls();
  for (int i = 0; i < 5; ++i) {
    for (float& d : t.arena.f32_span("dst")) d = 0.0f;
    const run_result r = t.run(*good);
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(t.arena.f32_span("dst")[1], 2.0f / std::sqrt(1.0f + 1e-5f));
  }
  EXPECT_EQ(workers_started(), 1U);
  EXPECT_EQ(worker_calls(), 5U);
  EXPECT_EQ(forked_calls(), forked_loading);
}

TEST_F(IsolationWorker, StaticStateCarriesOverFromCallToCall) {
  plugin_case t;
  auto counter = plugin("count_calls");
  EXPECT_EQ(t.run(*counter).message, "call 1");
  EXPECT_EQ(t.run(*counter).message, "call 2");
  // A fork per call starts every call from this process's state, where no call ever ran.
  set_fork_per_call(true);
  EXPECT_EQ(t.run(*counter).message, "call 1");
}

TEST_F(IsolationWorker, AnotherKernelObjectGetsAWorkerOfItsOwn) {
  plugin_case t;
  auto first = plugin("count_calls");
  auto second = plugin("count_calls");
  EXPECT_NE(first->instance(), second->instance());
  EXPECT_EQ(t.run(*first).message, "call 1");
  EXPECT_EQ(t.run(*second).message, "call 1");
  EXPECT_EQ(t.run(*first).message, "call 1");
  EXPECT_EQ(workers_started(), 3U);
}

TEST_F(IsolationWorker, EveryCallStartsWithTheCallersFloatingPointEnvironment) {
  plugin_case t;
  auto rounding = plugin("round_up");
  for (int i = 0; i < 3; ++i) {
    const run_result r = t.run(*rounding);
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(r.message, "started rounding to nearest");
  }
  EXPECT_EQ(workers_started(), 1U);
}

TEST_F(IsolationWorker, AFaultReplacesTheWorkerAndTheNextCallGetsANewOne) {
  plugin_case t;
  auto good = plugin("none");
  auto crash = plugin("null_deref");
  ASSERT_TRUE(t.run(*good).ok());
  const run_result r = t.run(*crash);
  EXPECT_EQ(r.kind, outcome::crashed);
  EXPECT_TRUE(contains(r.reason, "null pointer")) << r.reason;
  const run_result again = t.run(*crash);
  EXPECT_EQ(again.kind, outcome::crashed);
  ASSERT_TRUE(t.run(*good).ok());
  EXPECT_EQ(workers_started(), 4U);  // good, crash, crash again, good
}

TEST_F(IsolationWorker, ACallThatLeavesAThreadRunningRetiresItsWorker) {
  plugin_case t;
  auto threads = plugin("leave_thread");
  for (int i = 0; i < 2; ++i) {
    const run_result r = t.run(*threads);
    EXPECT_TRUE(r.ok()) << r.reason;
  }
  EXPECT_EQ(workers_started(), 2U);
  expect_no_children();
}

TEST_F(IsolationWorker, AProcessTheCallLeavesIsKilledWhenTheCallEnds) {
  plugin_case t;
  auto leaver = plugin("leave_process");
  for (int i = 0; i < 2; ++i) {
    const run_result r = t.run(*leaver);
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_TRUE(r.message.starts_with("left process ")) << r.message;
    const pid_t left = std::stoi(r.message.substr(13));
    ASSERT_GT(left, 0);
    // It left the worker's process group; the worker, a child subreaper, killed and reaped it
    // before it answered.
    EXPECT_EQ(kill(left, 0), -1) << "process " << left << " outlived the call";
    EXPECT_EQ(errno, ESRCH);
  }
  EXPECT_EQ(workers_started(), 1U);
  expect_no_children();
}

TEST_F(IsolationWorker, AHangIsKilledAtTheDeadlineAndTheWorkerReplaced) {
  plugin_case t;
  auto hang = plugin("hang");
  const run_result r = t.run(*hang, 200ms);
  EXPECT_EQ(r.kind, outcome::timed_out);
  t.expect_well_behaved_kernel_works();
}

TEST_F(IsolationWorker, AForkedProcessGetsItsOwnSlabAndWorkerAndLeavesItsParentsAlone) {
  plugin_case t;
  auto counter = plugin("count_calls");
  ASSERT_EQ(t.run(*counter).message, "call 1");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A campaign job, say: it lets go of the arena it inherited (which must not free the
    // parent's pages), makes one of its own and calls the kernel in a worker of its own, forked
    // from this process, where the kernel never ran.
    t.arena = guarded_arena{};
    plugin_case mine;
    const run_result r = mine.run(*counter);
    const bool fine = mine.arena.shared() && r.ok() && r.message == "call 1";
    stop_worker();
    _exit(fine ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The parent's worker and arena are as they were.
  const auto src = t.arena.f32_span("src");
  for (std::size_t i = 0; i < src.size(); ++i) EXPECT_EQ(src[i], static_cast<float>(i));
  EXPECT_EQ(t.run(*counter).message, "call 2");
  EXPECT_EQ(workers_started(), 1U);
}

TEST_F(IsolationWorker, AKernelWrittenInCppForksForEveryCall) {
  // Its state may change between calls in this process, which a worker would not see.
  struct counting final : bn_kernel {
    kernel_info info_;
    [[nodiscard]] const kernel_info& info() const override { return info_; }
  } cpp;
  plugin_case t;
  EXPECT_FALSE(cpp.runs_in_worker());
  const run_result r = t.run(cpp);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(worker_calls(), 0U);
  EXPECT_EQ(forked_calls(), 1U);
}

}  // namespace
}  // namespace bnoracle
