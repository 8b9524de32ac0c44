// Kernels in another process: the subprocess adapter (docs/subprocess-protocol.md).
//
// `spawn_kernel` starts a program (no shell: posix_spawnp with an argv vector), reads the
// handshake it writes on its stdout and returns a bn_kernel that sends one JSON line per call on
// the program's stdin and reads one JSON line back. Tensors travel in logical order (N, C,
// spatial...) as hex-float strings: the adapter gathers inputs through the strides of the
// bnk_buffers and scatters outputs back through them, so the program never sees memory layouts.
//
// Failure handling: a malformed or late response, a wrong id, a missing output or a wrong number
// of values fails the call (BNK_FAILED with a precise message), never bnoracle. A process that
// died, timed out or broke the protocol is killed and restarted (with a new handshake) before the
// next call, so one crash fails one case only. The program's stderr passes through.
//
// Isolation: the program's memory is already separate from bnoracle's, so run the calls
// in-process (call_options.isolate = false; the CLI does so for --exec). Each call enforces its
// own timeout. With isolation on the calls still work while the program stays healthy, but a
// restart made inside a forked child would be lost; the adapter then fails every later call.
#pragma once

#include "bnoracle/kernel.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bnoracle {

// Splits a command line into argv without a shell: words are separated by unquoted blanks
// (space, tab, newline); '...' keeps everything literally; "..." keeps everything but lets \"
// and \\ stand for " and \; outside quotes a backslash makes the next character literal. No
// variables, globs, pipes or redirections. Throws plugin_error for an unterminated quote, a
// trailing backslash or a command with no words.
[[nodiscard]] std::vector<std::string> split_command(std::string_view command);

// Starts `argv` (argv[0] is looked up in PATH when it has no slash) and reads its handshake
// within `timeout`, which is also the limit of every later call. Throws plugin_error when the
// program cannot be started, exits or says nothing within the timeout, or sends a malformed
// handshake or an unsupported protocol version.
[[nodiscard]] std::unique_ptr<bn_kernel> spawn_kernel(const std::vector<std::string>& argv,
                                                      std::chrono::milliseconds timeout);

// The newest version of the protocol this bnoracle speaks. A kernel's handshake chooses the
// version of the conversation: 2 (any op, data types) or 1 (float32 batch norm, requests exactly
// as version 1 defines them).
inline constexpr int k_subprocess_protocol_version = 2;
inline constexpr int k_subprocess_protocol_oldest = 1;

}  // namespace bnoracle
