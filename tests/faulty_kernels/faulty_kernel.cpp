// A float32 batch-normalization kernel (forward inference, dense NC only) that commits exactly one
// deliberate fault, chosen at build time with -DBNORACLE_FAULT=<number> (see CMakeLists.txt in
// this folder). With BNORACLE_FAULT=0 it is well behaved. The tests of fault isolation load these
// plugins with bnoracle::load_plugin and check that each fault is caught and explained.
//
// The faults are undefined behaviour on purpose, so the code that commits them opts out of the
// sanitizers (ASan/UBSan would report the fault themselves, in their own words and with their own
// exit code, instead of letting the process fault as an uninstrumented kernel would) and of the
// warnings that point at them.
#include "bnoracle/kernel_abi.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#ifndef BNORACLE_FAULT
#error "build with -DBNORACLE_FAULT=<number>"
#endif

#define FAULT_NONE 0
#define FAULT_NULL_DEREF 1
#define FAULT_ABORT 2
#define FAULT_HANG 3
#define FAULT_OVERRUN 4
#define FAULT_UNDERRUN 5
#define FAULT_WRITE_INPUT 6
#define FAULT_READ_PAST_INPUT 7
#define FAULT_EXIT3 8
#define FAULT_UNPROTECT_INPUT 9
// Not faults of a single call, but what a persistent worker must contain between calls:
#define FAULT_ROUND_UP 10       // leaves the rounding mode set upward
#define FAULT_LEAVE_THREAD 11   // leaves a thread running after it returns
#define FAULT_LEAVE_PROCESS 12  // leaves a process (in a session of its own) running
#define FAULT_COUNT_CALLS 13    // counts its calls in a static variable

namespace {

// Opaque to the optimizer, so the faults below are really committed at run time.
float* volatile null_float = nullptr;
volatile unsigned spin = 0;

#define NO_SANITIZE __attribute__((no_sanitize("address", "undefined"), noinline))

#if BNORACLE_FAULT == FAULT_LEAVE_THREAD
void* sleep_forever(void* /*unused*/) {
  for (;;) pause();
}
#endif

// What a kernel leaves behind for the next call (the message names it, for the test).
void leave_state(char* message, std::size_t message_size) {
  (void)message;
  (void)message_size;
#if BNORACLE_FAULT == FAULT_ROUND_UP
  // Reports the mode it found (every call must start from round-to-nearest), then changes it.
  std::snprintf(message, message_size, "started rounding %s",
                std::fegetround() == FE_TONEAREST ? "to nearest" : "otherwise");
  std::fesetround(FE_UPWARD);
#elif BNORACLE_FAULT == FAULT_LEAVE_THREAD
  pthread_t thread{};
  if (pthread_create(&thread, nullptr, sleep_forever, nullptr) == 0) pthread_detach(thread);
#elif BNORACLE_FAULT == FAULT_LEAVE_PROCESS
  const pid_t child = fork();
  if (child == 0) {
    setsid();
    for (;;) pause();
  }
  std::snprintf(message, message_size, "left process %d", static_cast<int>(child));
#elif BNORACLE_FAULT == FAULT_COUNT_CALLS
  static int calls = 0;
  std::snprintf(message, message_size, "call %d", ++calls);
#endif
}

NO_SANITIZE void commit_fault(const bnk_buffers* b, std::int64_t count) {
  float* const dst = b->dst;
  float* const src = const_cast<float*>(b->src);  // the kernel breaks its contract on purpose
  (void)dst;
  (void)src;
  (void)count;
#if BNORACLE_FAULT == FAULT_NULL_DEREF
  *null_float = 1.0f;
#elif BNORACLE_FAULT == FAULT_ABORT
  std::abort();
#elif BNORACLE_FAULT == FAULT_HANG
  for (;;) spin = spin + 1;  // volatile: an infinite loop the compiler may not remove
#elif BNORACLE_FAULT == FAULT_OVERRUN
  dst[count] = 1.0f;  // one float past the end of dst
#elif BNORACLE_FAULT == FAULT_UNDERRUN
  dst[-1] = 1.0f;  // one float before the start of dst
#elif BNORACLE_FAULT == FAULT_WRITE_INPUT
  src[0] = 42.0f;  // writes an input
#elif BNORACLE_FAULT == FAULT_READ_PAST_INPUT
  volatile float past = src[count];  // reads one float past the end of src
  (void)past;
#elif BNORACLE_FAULT == FAULT_EXIT3
  std::exit(3);  // NOLINT(concurrency-mt-unsafe): the fault under test
#elif BNORACLE_FAULT == FAULT_UNPROTECT_INPUT
  // Makes the page of src writable again behind bnoracle's back, modifies src, and restores the
  // protection: only the comparison with the pristine copy can notice.
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  char* const first_page =
      reinterpret_cast<char*>(src) - reinterpret_cast<std::uintptr_t>(src) % page;
  if (mprotect(first_page, page, PROT_READ | PROT_WRITE) == 0) {
    src[0] = src[0] + 1.0f;
    mprotect(first_page, page, PROT_READ);
  }
#endif
}

int forward_inference(const bnk_problem* p, const bnk_buffers* b, char* message,
                      std::size_t message_size) {
  if (p->shape.rank != 2 || p->shape.layout != BNK_LAYOUT_NC) {
    std::snprintf(message, message_size, "only dense NC is supported");
    return BNK_UNSUPPORTED;
  }
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
  commit_fault(b, n * c);
  leave_state(message, message_size);
  return BNK_OK;
}

const bnk_kernel table = {
    BNK_ABI_VERSION,
    sizeof(bnk_kernel),
    "faulty",
    "1.0",
    "pytorch",
    BNK_LAYOUT_NC,
    0,
    0,
    BNK_SAVES_NONE,
    nullptr,
    forward_inference,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const bnk_kernel* bnoracle_kernel_v1(void) {
  return &table;
}
