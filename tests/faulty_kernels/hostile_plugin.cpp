// Kernel plugins that attack bnoracle outside the kernel call itself: while being loaded, through
// their table, through the text they return, through the processes they leave behind and the
// output they flood. One shared library per attack, chosen at build time with
// -DBNORACLE_HOSTILE=<number> (see CMakeLists.txt in this folder; tests/hostile_checks.py runs
// them through the bnoracle command line). Where the kernel computes at all it is the faulty
// kernel's correct forward inference on dense NC data.
//
// The attacks are undefined behaviour or process-level misbehaviour on purpose, so the code that
// commits them opts out of the sanitizers and of the warnings that point at them.
#include "bnoracle/kernel_abi.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifndef BNORACLE_HOSTILE
#error "build with -DBNORACLE_HOSTILE=<number>"
#endif

#define HOSTILE_CTOR_CRASH 0         // the library's constructor dereferences a null pointer
#define HOSTILE_CTOR_EXIT0 1         // the library's constructor calls exit(0)
#define HOSTILE_CTOR_HANG 2          // the library's constructor never returns
#define HOSTILE_ENTRY_CRASH 3        // bnoracle_kernel_v1() crashes
#define HOSTILE_NAME_UNMAPPED 4      // the table's name points at an unmapped page
#define HOSTILE_ALL_NULL 5           // every entry point is NULL
#define HOSTILE_NO_LAYOUTS 6         // the table supports no layout
#define HOSTILE_ORPHAN 7             // each call leaves a process behind (setsid, sleeps)
#define HOSTILE_BAD_UTF8 8           // name, version and message hold invalid UTF-8
#define HOSTILE_MESSAGE_OVERRUN 9    // writes 64 KiB into the 1 KiB message buffer
#define HOSTILE_FLOOD 10             // writes 32 MiB to stdout in every call, then answers
#define HOSTILE_ENTRY_EXIT0 11       // bnoracle_kernel_v1() calls exit(0)
#define HOSTILE_UNSUPPORTED_MODE 12  // declares forward training, answers unsupported to all
#define HOSTILE_DTOR_EXIT0 13        // fails every call; its destructor calls _exit(0)
#define HOSTILE_REFUSES_ONLY 14      // forward training: refuses L = 1, unsupported otherwise

namespace {

#define NO_SANITIZE __attribute__((no_sanitize("address", "undefined"), noinline))

int* volatile null_int = nullptr;
volatile unsigned spin = 0;

[[maybe_unused]] NO_SANITIZE void crash() {
  *null_int = 1;
}

[[maybe_unused, noreturn]] void hang() {
  for (;;) spin = spin + 1;  // volatile: an infinite loop the compiler may not remove
}

#if BNORACLE_HOSTILE == HOSTILE_CTOR_CRASH
__attribute__((constructor)) void on_load() {
  crash();
}
#elif BNORACLE_HOSTILE == HOSTILE_CTOR_EXIT0
__attribute__((constructor)) void on_load() {
  std::exit(0);  // NOLINT(concurrency-mt-unsafe): the attack under test
}
#elif BNORACLE_HOSTILE == HOSTILE_CTOR_HANG
__attribute__((constructor)) void on_load() {
  hang();
}
#elif BNORACLE_HOSTILE == HOSTILE_DTOR_EXIT0
// Run when the library is unloaded or the process exits: it would turn any verdict into exit 0.
__attribute__((destructor)) void on_unload() {
  _exit(0);
}
#endif

// Leaves a process behind: it leaves the caller's process group and session and sleeps,
// holding whatever stdout and stderr it inherited. The caller records its pid in
// $BNORACLE_ORPHAN_PID_FILE.
[[maybe_unused]] void leave_orphan() {
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    sleep(60);
    _exit(0);
  }
  if (const char* file =
          std::getenv("BNORACLE_ORPHAN_PID_FILE")) {  // NOLINT(concurrency-mt-unsafe)
    if (FILE* f = std::fopen(file, "a")) {
      std::fprintf(f, "%d\n", static_cast<int>(pid));
      std::fclose(f);
    }
  }
}

[[maybe_unused]] int forward_inference(const bnk_problem* p, const bnk_buffers* b, char* message,
                                       std::size_t message_size) {
#if BNORACLE_HOSTILE == HOSTILE_MESSAGE_OVERRUN
  // Ignores message_size: 64 KiB of text into a 1 KiB buffer.
  for (std::size_t i = 0; i < 65536; ++i) message[i] = 'x';
  return BNK_FAILED;
#endif
#if BNORACLE_HOSTILE == HOSTILE_ORPHAN
  leave_orphan();
#endif
#if BNORACLE_HOSTILE == HOSTILE_FLOOD
  {
    static char block[65536];
    std::memset(block, 'F', sizeof block);
    for (int i = 0; i < 512; ++i) {
      if (write(STDOUT_FILENO, block, sizeof block) < 0) break;
    }
  }
#endif
  if (p->shape.rank != 2 || p->shape.layout != BNK_LAYOUT_NC) {
    std::snprintf(message, message_size, "only dense NC is supported");
    return BNK_UNSUPPORTED;
  }
#if BNORACLE_HOSTILE == HOSTILE_DTOR_EXIT0
  std::snprintf(message, message_size, "this kernel fails every call");
  return BNK_FAILED;
#endif
#if BNORACLE_HOSTILE == HOSTILE_BAD_UTF8
  std::snprintf(message, message_size, "bad bytes \xff\xfe, a cut \xe2\x82 and a lone \x80 here");
  return BNK_FAILED;
#endif
  const std::int64_t n = p->shape.dims[0];
  const std::int64_t c = p->shape.dims[1];
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      const std::int64_t at = i * p->shape.strides[0] + j * p->shape.strides[1];
      const double invstd = 1.0 / std::sqrt(static_cast<double>(b->running_var[j]) + p->eps);
      double y =
          (static_cast<double>(b->src[at]) - static_cast<double>(b->running_mean[j])) * invstd;
      if (p->affine != 0)
        y = y * static_cast<double>(b->gamma[j]) + static_cast<double>(b->beta[j]);
      b->dst[at] = static_cast<float>(y);
    }
  }
  return BNK_OK;
}

[[maybe_unused]] int forward_training(const bnk_problem* p, const bnk_buffers* /*b*/, char* message,
                                      std::size_t message_size) {
#if BNORACLE_HOSTILE == HOSTILE_REFUSES_ONLY
  // A validation that works in front of a dispatch that does not: the one correct answer it
  // gives is a refusal, which compares no value.
  std::int64_t per_channel = p->shape.dims[0];
  for (int d = 2; d < p->shape.rank; ++d) per_channel *= p->shape.dims[d];
  if (per_channel == 1) {
    std::snprintf(message, message_size, "expected more than 1 value per channel when training");
    return BNK_REFUSED;
  }
#else
  (void)p;
#endif
  std::snprintf(message, message_size, "not today");
  return BNK_UNSUPPORTED;
}

#if BNORACLE_HOSTILE == HOSTILE_UNSUPPORTED_MODE || BNORACLE_HOSTILE == HOSTILE_REFUSES_ONLY
constexpr bnk_entry k_forward_training = forward_training;
#else
constexpr bnk_entry k_forward_training = nullptr;
#endif

#if BNORACLE_HOSTILE == HOSTILE_BAD_UTF8
constexpr const char* k_name = "hostile\xff\xfe<&>";
constexpr const char* k_version = "1.0\xc3\x28";
#else
constexpr const char* k_name = "hostile";
constexpr const char* k_version = "1.0";
#endif

#if BNORACLE_HOSTILE == HOSTILE_NO_LAYOUTS
constexpr std::uint32_t k_layouts = 0;
#elif BNORACLE_HOSTILE == HOSTILE_REFUSES_ONLY
// The catalog's one-value-per-channel cases are NCHW.
constexpr std::uint32_t k_layouts = BNK_LAYOUT_NC | BNK_LAYOUT_NCHW;
#else
constexpr std::uint32_t k_layouts = BNK_LAYOUT_NC;
#endif

#if BNORACLE_HOSTILE == HOSTILE_ALL_NULL || BNORACLE_HOSTILE == HOSTILE_REFUSES_ONLY
constexpr bnk_entry k_forward_inference = nullptr;
#else
constexpr bnk_entry k_forward_inference = forward_inference;
#endif

bnk_kernel table = {
    BNK_ABI_VERSION,
    sizeof(bnk_kernel),
    k_name,
    k_version,
    "pytorch",
    k_layouts,
    0,
    0,
    BNK_SAVES_NONE,
    k_forward_training,
    k_forward_inference,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const bnk_kernel* bnoracle_kernel_v1(void) {
#if BNORACLE_HOSTILE == HOSTILE_ENTRY_CRASH
  crash();
#elif BNORACLE_HOSTILE == HOSTILE_ENTRY_EXIT0
  std::exit(0);  // NOLINT(concurrency-mt-unsafe): the attack under test
#elif BNORACLE_HOSTILE == HOSTILE_NAME_UNMAPPED
  // A name pointer into a page that is mapped, then made inaccessible.
  void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  table.name = static_cast<const char*>(page);
#endif
  return &table;
}
