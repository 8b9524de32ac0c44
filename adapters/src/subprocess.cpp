// The subprocess adapter: a kernel in another process, one JSON line per call
// (docs/subprocess-protocol.md).
#include "bnoracle/subprocess_kernel.hpp"

#include "subprocess_protocol.hpp"

#include "bnoracle/convention.hpp"
#include "bnoracle/exact.hpp"
#include "bnoracle/isolation.hpp"
#include "bnoracle/text.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

extern char** environ;

namespace bnoracle {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace protocol;

// What the kernel process writes to stderr is forwarded up to this many bytes per call.
constexpr std::size_t k_stderr_limit = 65536;

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by " + signal_name(WTERMSIG(status));
  return "stopped";
}

// Logical element count and the memory offset of every logical index, in logical order.
std::vector<std::int64_t> logical_offsets(const bnk_shape& shape) {
  std::int64_t total = 1;
  for (int d = 0; d < shape.rank; ++d) total *= shape.dims[d];
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(std::max<std::int64_t>(total, 0)));
  if (total <= 0) return out;
  std::array<std::int64_t, 5> idx{};
  for (std::int64_t i = 0; i < total; ++i) {
    std::int64_t off = 0;
    for (int d = 0; d < shape.rank; ++d) off += idx[static_cast<std::size_t>(d)] * shape.strides[d];
    out.push_back(off);
    for (int d = shape.rank - 1; d >= 0; --d) {
      if (++idx[static_cast<std::size_t>(d)] < shape.dims[d]) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
  return out;
}

class subprocess_kernel final : public bn_kernel {
 public:
  subprocess_kernel(std::vector<std::string> argv, std::chrono::milliseconds timeout)
      : argv_(std::move(argv)), timeout_(timeout) {
    if (argv_.empty()) throw plugin_error("no command to run");
    start();  // throws plugin_error
  }
  ~subprocess_kernel() override { stop(true); }
  subprocess_kernel(const subprocess_kernel&) = delete;
  subprocess_kernel& operator=(const subprocess_kernel&) = delete;

  [[nodiscard]] const kernel_info& info() const override { return info_; }

  bnk_status run_v2(bn_mode mode, const bnk_problem_v2& problem, const bnk_buffers_v2& buffers,
                    std::string& message) override {
    if (info_.abi_version < 2 && !to_v1(problem)) {
      message = "the kernel speaks protocol version 1: float32 batch norm only";
      return BNK_UNSUPPORTED;
    }
    if (!dtype_from_abi(problem.types.data) || !dtype_from_abi(problem.types.parameters) ||
        !dtype_from_abi(problem.types.statistics)) {
      message = "a data type this bnoracle does not know";
      return BNK_UNSUPPORTED;
    }
    return guarded(message, [&] { return call(mode, problem, buffers, message); });
  }
  bnk_status run(bn_mode mode, const bnk_problem& problem, const bnk_buffers& buffers,
                 std::string& message) override {
    return run_v2(mode, to_v2(problem), to_v2(buffers), message);
  }
  bnk_status run_syncbn_merge(const bnk_syncbn_problem& problem, const bnk_syncbn_buffers& buffers,
                              std::string& message) override {
    if (!info_.syncbn_merge) return bn_kernel::run_syncbn_merge(problem, buffers, message);
    return guarded(message, [&] { return call_syncbn(problem, buffers, message); });
  }
  bnk_status run_fold(const bnk_fold_problem& problem, const bnk_fold_buffers& buffers,
                      std::string& message) override {
    if (!info_.fold) return bn_kernel::run_fold(problem, buffers, message);
    return guarded(message, [&] { return call_fold(problem, buffers, message); });
  }

 private:
  // Runs one exchange with the kernel process: (re)starts it when needed, and turns a broken
  // exchange into BNK_FAILED with its message (restarting the process before the next call when
  // the exchange left it out of step).
  template <class Exchange>
  bnk_status guarded(std::string& message, Exchange exchange) {
    if (pid_ > 0 && getpid() == owner_) {
      (void)alive();         // reaps a process that died meanwhile
      reap_exited_strays();  // and processes it left behind that have ended since
    }
    if (pid_ <= 0) {
      if (getpid() != owner_) {
        message =
            "the kernel process is gone and cannot be restarted inside an isolated child "
            "(run subprocess kernels without isolation)";
        return BNK_FAILED;
      }
      try {
        start();
      } catch (const plugin_error& e) {
        message = std::string("restarting the kernel process failed: ") + e.what();
        return BNK_FAILED;
      }
    }
    try {
      return exchange();
    } catch (const protocol_error& e) {
      message = e.message;
      if (e.restart) stop(false);
      return BNK_FAILED;
    } catch (const json::exception& e) {
      message = std::string("malformed response: ") + e.what();
      return BNK_FAILED;
    }
  }

  // ---- process lifetime ---------------------------------------------------------------------
  void start() {
    // bnoracle writes in[1] (the kernel's stdin), reads out[0] (its stdout) and err[0] (its
    // stderr, forwarded to bnoracle's own): no descriptor of bnoracle's is inherited, so a process
    // the kernel leaves behind cannot hold bnoracle's stdout or stderr open.
    std::array<int, 2> in{-1, -1};
    std::array<int, 2> out{-1, -1};
    std::array<int, 2> err{-1, -1};
    auto close_all = [&] {
      for (int* fd : {&in[0], &in[1], &out[0], &out[1], &err[0], &err[1]}) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
      }
    };
    if (pipe2(in.data(), O_CLOEXEC) != 0 || pipe2(out.data(), O_CLOEXEC) != 0 ||
        pipe2(err.data(), O_CLOEXEC) != 0) {
      const int e = errno;
      close_all();
      throw plugin_error(std::string("pipe: ") + strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);  // dup2 clears O_CLOEXEC
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigset_t defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    // bnoracle ignores SIGPIPE and SIGXFSZ; the kernel process gets the usual actions back.
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    // Its own process group, killed as a whole when the process is stopped.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    std::fflush(nullptr);
    const int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in[0] = out[1] = err[1] = -1;
    if (rc != 0) {
      close_all();
      throw plugin_error("cannot start '" + argv_[0] + "': " + strerror(rc));
    }
    pid_ = pid;
    owner_ = getpid();
    register_owned_child(pid_);
    to_ = in[1];
    from_ = out[0];
    err_ = err[0];
#ifdef SYS_pidfd_open
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
#endif
    for (const int fd : {to_, from_, err_}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pending_.clear();
    scanned_ = 0;
    try {
      const auto deadline = clock_type::now() + timeout_;
      const std::string line = read_line(deadline, "handshake", k_handshake_limit);
      handshake(line);
    } catch (const protocol_error& e) {
      stop(false);
      // The process died, hung or flooded before saying what it is: a kernel fault.
      throw plugin_fault("kernel command '" + argv_[0] + "': " + e.message);
    } catch (const plugin_error& e) {
      stop(false);
      throw plugin_error("kernel command '" + argv_[0] + "': " + e.what());
    }
  }

  // Closes the pipes and reaps the process: politely (EOF on stdin, then up to a second) or not.
  // Then its process group and any process it left behind are killed.
  void stop(bool polite) {
    if (pid_ <= 0) return;
    if (getpid() != owner_) return;  // a forked child does not own the process
    close(to_);
    to_ = -1;
    bool exited = false;
    if (polite) {
      const auto deadline = clock_type::now() + std::chrono::seconds(1);
      while (clock_type::now() < deadline && !exited) {
        forward_stderr();
        exited = has_exited();
        if (!exited) usleep(2000);
      }
    }
    (void)end_and_reap(!exited);
    forget_process();
  }

  // Whether the process has ended, without reaping it: its group id cannot be reused while it
  // is an unreaped zombie, so killing the group afterwards is safe.
  [[nodiscard]] bool has_exited() const {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return errno == ECHILD;  // not our child any more: gone
    }
    return info.si_pid == pid_;
  }

  // Kills the process group (the processes the kernel started with it), and the process itself
  // when `kill_leader`, then reaps the process; returns its wait status.
  int end_and_reap(bool kill_leader) {
    kill(-pid_, SIGKILL);
    if (kill_leader) kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }

  // After the process ended and was reaped: stray processes go, descriptors close.
  void forget_process() {
    unregister_owned_child(pid_);
    end_stray_processes();
    forward_stderr();
    for (int* fd : {&to_, &from_, &err_, &pidfd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
    pid_ = -1;
  }

  // Whether the process still runs; reaps it (and records why it ended) when it does not.
  bool alive() {
    if (!has_exited()) return true;
    exit_description_ = describe_status(end_and_reap(false));
    forget_process();
    return false;
  }

  // The end of the process, for a message (reaps it when it has ended).
  std::string ended() {
    if (getpid() != owner_) return "closed its stdout (the kernel process ended)";
    for (int i = 0; i < 100; ++i) {  // it closed stdout: give it up to 0.2 s to finish exiting
      if (!alive()) return "the kernel process " + exit_description_;
      usleep(2000);
    }
    return "the kernel process closed its stdout";
  }

  // Copies what the kernel wrote to its stderr to bnoracle's, without blocking: at most
  // k_stderr_limit bytes per call (the rest is read and counted), so a flood cannot stall it.
  void forward_stderr() {
    if (err_ < 0) return;
    std::array<char, 65536> buf{};
    for (;;) {
      const ssize_t n = read(err_, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) {
          close(err_);
          err_ = -1;
        }
        break;
      }
      const auto got = static_cast<std::size_t>(n);
      const std::size_t keep =
          std::min(got, k_stderr_limit - std::min(stderr_shown_, k_stderr_limit));
      stderr_shown_ += keep;
      stderr_dropped_ += got - keep;
      for (std::size_t done = 0; done < keep;) {
        const ssize_t w = write(STDERR_FILENO, buf.data() + done, keep - done);
        if (w <= 0) break;
        done += static_cast<std::size_t>(w);
      }
    }
  }

  // Before each call: reports what the previous one dropped, and starts a new stderr allowance.
  void new_stderr_allowance() {
    if (stderr_dropped_ > 0) {
      std::fprintf(stderr,
                   "[bnoracle: the kernel process wrote %zu more bytes to stderr, not shown]\n",
                   stderr_dropped_);
    }
    stderr_shown_ = 0;
    stderr_dropped_ = 0;
  }

  // ---- I/O ------------------------------------------------------------------------------------
  static int remaining_ms(clock_type::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1'000'000'000));
  }

  std::string seconds() const {
    std::array<char, 32> b{};
    std::snprintf(b.data(), b.size(), "%g", static_cast<double>(timeout_.count()) / 1000.0);
    return b.data();
  }

  // Reads one line of at most `limit` bytes by `deadline`, whatever the process sends: the
  // deadline holds while data keeps arriving, a longer line fails the call, and each byte is
  // scanned for the newline once.
  std::string read_line(clock_type::time_point deadline, const char* what, std::size_t limit) {
    for (;;) {
      const auto nl = pending_.find('\n', scanned_);
      if (nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        scanned_ = 0;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      scanned_ = pending_.size();
      if (pending_.size() > limit) {
        throw protocol_error{
            std::string("the ") + what + " line is longer than " + std::to_string(limit) +
                " bytes, the most this request allows (docs/subprocess-protocol.md); "
                "the kernel process was killed",
            true};
      }
      if (clock_type::now() >= deadline) {
        throw protocol_error{std::string("no ") + what + " within " + seconds() + " s (timeout" +
                                 (pending_.empty() ? std::string()
                                                   : ", " + std::to_string(pending_.size()) +
                                                         " bytes of a line read") +
                                 "); the kernel process was killed",
                             true};
      }
      std::array<pollfd, 3> p{{{from_, POLLIN, 0}, {err_, POLLIN, 0}, {pidfd_, POLLIN, 0}}};
      const int r = poll(p.data(), p.size(), remaining_ms(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;  // the deadline is checked above
      if (p[1].revents != 0) forward_stderr();
      if (p[0].revents == 0) {
        if (p[2].revents != 0) {
          // The process ended, yet its stdout is neither readable nor closed: a process it
          // started holds the pipe.
          const std::string how = describe_status(end_and_reap(false));
          forget_process();
          throw protocol_error{"the kernel process " + how + " before sending its " + what +
                                   ", but a process it started kept its stdout open; that process "
                                   "was killed",
                               true};
        }
        continue;
      }
      std::array<char, 65536> buf{};
      const std::size_t room = std::min(buf.size(), limit + 1 - std::min(limit, pending_.size()));
      const ssize_t n = read(from_, buf.data(), room);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        throw protocol_error{ended() + " before sending its " + what +
                                 (pending_.empty() ? "" : " (a partial line was read)"),
                             true};
      }
      pending_.append(buf.data(), static_cast<std::size_t>(n));
    }
  }

  void write_all(const std::string& text, clock_type::time_point deadline) {
    // Block SIGPIPE for this thread while writing: a dead reader gives EPIPE, not a signal.
    sigset_t pipe_set;
    sigset_t old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    std::size_t done = 0;
    std::string error;
    while (done < text.size()) {
      const ssize_t n = write(to_, text.data() + done, text.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        // While waiting, keep its stderr flowing: a kernel blocked on a full stderr pipe would
        // never read its request.
        std::array<pollfd, 2> p{{{to_, POLLOUT, 0}, {err_, POLLIN, 0}}};
        const int r = poll(p.data(), p.size(), remaining_ms(deadline));
        if (r > 0 && p[1].revents != 0) forward_stderr();
        if (r == 0 || clock_type::now() >= deadline) {
          error = "the kernel did not read its request within " + seconds() +
                  " s (timeout); the kernel process was killed";
          break;
        }
        continue;
      }
      error = errno == EPIPE ? "" : std::string("write: ") + strerror(errno);
      if (errno == EPIPE) {
        // Consume the pending SIGPIPE before unblocking it.
        const timespec zero{0, 0};
        sigtimedwait(&pipe_set, nullptr, &zero);
        error = ended() + " before reading its request";
      }
      break;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!error.empty()) throw protocol_error{error, true};
  }

  // ---- handshake ------------------------------------------------------------------------------
  void handshake(const std::string& line) {
    const kernel_info info = parse_handshake(line);
    if (first_handshake_) {
      info_ = info;
      first_handshake_ = false;
    } else if (info.name != info_.name || info.convention != info_.convention ||
               info.layouts != info_.layouts || info.saves != info_.saves ||
               info.syncbn_merge != info_.syncbn_merge || info.fold != info_.fold ||
               info.abi_version != info_.abi_version || info.ops != info_.ops ||
               info.data_type_bits != info_.data_type_bits ||
               info.parameter_type_bits != info_.parameter_type_bits ||
               info.statistic_type_bits != info_.statistic_type_bits) {
      throw plugin_error("the restarted kernel process declares different capabilities");
    }
  }

  // ---- one call -------------------------------------------------------------------------------
  static json floats(const float* p, std::int64_t count) {
    json a = json::array();
    for (std::int64_t i = 0; i < count; ++i) a.push_back(hex_float(p[i]));
    return a;
  }

  // Element i of a tensor of ABI type `dtype`, as a float (every value of the three formats is
  // one), and storing a value of that format there.
  static const float_format& format_of_dtype(std::int32_t dtype) {
    return format_of(dtype_from_abi(dtype).value_or(format_id::float32));
  }
  static float load(const void* p, std::int32_t dtype, std::int64_t i) {
    if (dtype == BNK_DTYPE_F32) return static_cast<const float*>(p)[i];
    return decode_half(format_of_dtype(dtype), static_cast<const std::uint16_t*>(p)[i]);
  }
  static void store(void* p, std::int32_t dtype, std::int64_t i, float v) {
    if (dtype == BNK_DTYPE_F32) {
      static_cast<float*>(p)[i] = v;
    } else {
      static_cast<std::uint16_t*>(p)[i] = encode_half(format_of_dtype(dtype), v);
    }
  }
  // Values travel as hex floats of the value whatever the format: a float16 or bfloat16 value
  // is written exactly, and a reader converts it to its format without rounding.
  static json typed_floats(const void* p, std::int32_t dtype, std::int64_t count) {
    json a = json::array();
    for (std::int64_t i = 0; i < count; ++i) a.push_back(hex_float(load(p, dtype, i)));
    return a;
  }
  static json tensor(const void* p, std::int32_t dtype, const std::vector<std::int64_t>& offsets) {
    json a = json::array();
    for (const std::int64_t off : offsets) a.push_back(hex_float(load(p, dtype, off)));
    return a;
  }

  // An op descriptor as version 2 writes it: every field, by name.
  static json op_json(const op_desc& op) {
    json j = op_fields(op);
    // Sent only when set: requests of the one-rounding convention stay as version 2 defined them.
    if (op.cast_before_weight) j["cast_before_weight"] = true;
    return j;
  }
  static json op_fields(const op_desc& op) {
    return {{"kind", to_string(op.kind)},
            {"normalized_axes", op.normalized_axes},
            {"groups", op.groups},
            {"centred", op.centred},
            {"params", to_string(op.params)},
            {"weight_offset", op.weight_offset},
            {"running_stats", op.running_stats}};
  }

  // The SyncBN merge and the fold: version 1 names them in "op"; version 2 in "mode", with "op"
  // the normalization they belong to (batch norm), as in a mode's request.
  void name_operation(json& req, const char* operation) const {
    if (info_.abi_version >= 2) {
      req["mode"] = operation;
      req["op"] = op_json(batch_norm_op());
    } else {
      req["op"] = operation;
    }
  }

  // The request of one mode. Version 2 adds the op and the data types; a version-1 kernel gets
  // exactly the request version 1 defines (it is only sent float32 batch norm).
  bnk_status call(bn_mode mode, const bnk_problem_v2& problem, const bnk_buffers_v2& raw,
                  std::string& message) {
    const bnk_buffers_v2& b = raw;
    const std::int32_t dt = problem.types.data;
    const std::int32_t pt = problem.types.parameters;
    const std::int32_t st = problem.types.statistics;
    const auto m = static_cast<std::size_t>(mode);
    const bool forward = mode == bn_mode::forward_training || mode == bn_mode::forward_inference;
    const bnk_shape& shape = problem.shape;
    const std::vector<std::int64_t> offsets = logical_offsets(shape);
    const bool affine = problem.op.params != BNK_PARAMS_NONE;
    const std::int64_t params = std::max<std::int64_t>(problem.parameters, 0);
    const std::int64_t groups = std::max<std::int64_t>(problem.statistic_groups, 0);
    const std::int64_t running = std::max<std::int64_t>(problem.running_size, 0);

    json req;
    req["mode"] = k_mode_names[m];
    if (info_.abi_version >= 2) {
      const std::optional<op_desc> op = from_abi(problem.op);
      if (!op) throw protocol_error{"the problem's op descriptor is invalid", false};
      req["op"] = op_json(*op);
      req["types"] = {{"data", format_of_dtype(dt).name},
                      {"parameters", format_of_dtype(pt).name},
                      {"statistics", format_of_dtype(st).name}};
    }
    json dims = json::array();
    for (int d = 0; d < shape.rank; ++d) dims.push_back(shape.dims[d]);
    req["shape"] = dims;
    std::string layout_name = "strided";
    for (const auto& [name, bit] : k_layout_names) {
      if (bit == shape.layout) layout_name = name;
    }
    req["layout"] = layout_name;
    req["eps"] = hex_double(problem.eps);
    req["momentum"] = problem.cumulative != 0 ? json(nullptr) : json(hex_double(problem.momentum));
    req["affine"] = affine;
    req["track_running"] = problem.track_running != 0;
    json in = json::object();
    if (b.src != nullptr) in["src"] = tensor(b.src, dt, offsets);
    if (!forward && b.diff_dst != nullptr) in["diff_dst"] = tensor(b.diff_dst, dt, offsets);
    if (b.gamma != nullptr) in["gamma"] = typed_floats(b.gamma, pt, params);
    if (b.beta != nullptr) in["beta"] = typed_floats(b.beta, pt, params);
    const bool running_in = mode != bn_mode::forward_training || problem.track_running != 0;
    if (running_in && b.running_mean != nullptr) {
      in["running_mean"] = typed_floats(b.running_mean, st, running);
    }
    if (running_in && b.running_var != nullptr) {
      in["running_var"] = typed_floats(b.running_var, st, running);
    }
    if (running_in && b.num_batches_tracked != nullptr) {
      in["num_batches_tracked"] = *b.num_batches_tracked;
    }
    if (mode == bn_mode::backward_training) {
      if (b.save_mean != nullptr) in["save_mean"] = typed_floats(b.save_mean, st, groups);
      if (b.save_stat != nullptr) in["save_stat"] = typed_floats(b.save_stat, st, groups);
    }
    req["inputs"] = std::move(in);
    json out;
    // Room for six vectors (saved and running statistics, dγ and dβ) of the longest extent.
    const auto vectors = static_cast<std::size_t>(6 * std::max({params, groups, running}));
    const bnk_status status = exchange(req, out, message, offsets.size() + vectors);
    if (status != BNK_OK) return status;
    // Each output must be a value of its role's format: the kernel rounds, not bnoracle.
    auto into_tensor = [&](const char* name, void* p) {
      take(
          out, name, offsets.size(), [&](std::size_t i, float v) { store(p, dt, offsets[i], v); },
          format_of_dtype(dt));
    };
    auto into_vector = [&](const char* name, void* p, std::int32_t type, std::int64_t count) {
      take(
          out, name, static_cast<std::size_t>(count),
          [&](std::size_t i, float v) { store(p, type, static_cast<std::int64_t>(i), v); },
          format_of_dtype(type));
    };
    switch (mode) {
      case bn_mode::forward_training:
        if (b.dst != nullptr) into_tensor("dst", b.dst);
        if (b.save_mean != nullptr) into_vector("save_mean", b.save_mean, st, groups);
        if (b.save_stat != nullptr) into_vector("save_stat", b.save_stat, st, groups);
        if (problem.track_running != 0) {
          if (b.running_mean != nullptr) into_vector("running_mean", b.running_mean, st, running);
          if (b.running_var != nullptr) into_vector("running_var", b.running_var, st, running);
          if (b.num_batches_tracked != nullptr) *b.num_batches_tracked = take_counter(out);
        }
        break;
      case bn_mode::forward_inference:
        if (b.dst != nullptr) into_tensor("dst", b.dst);
        break;
      case bn_mode::backward_training:
      case bn_mode::backward_inference:
        if (b.diff_src != nullptr) into_tensor("diff_src", b.diff_src);
        if (affine && b.diff_gamma != nullptr) {
          into_vector("diff_gamma", b.diff_gamma, pt, params);
        }
        if (affine && b.diff_beta != nullptr) into_vector("diff_beta", b.diff_beta, pt, params);
        break;
    }
    message.clear();
    return BNK_OK;
  }

  // Sends `req` (with a fresh id) and reads the response: BNK_OK with its "outputs" object in
  // `outputs` when the kernel answered "ok"; its status (and `message`) otherwise.
  bnk_status exchange(json& req, json& outputs, std::string& message, std::size_t values) {
    const std::int64_t id = ++next_id_;
    req["id"] = id;
    new_stderr_allowance();
    const auto deadline = clock_type::now() + timeout_;
    write_all(req.dump() + "\n", deadline);
    const std::string line = read_line(deadline, "response", response_limit(values));
    forward_stderr();
    response resp = parse_response(line, id);
    message = std::move(resp.message);
    outputs = std::move(resp.outputs);
    return resp.status;
  }

  static std::size_t extent(std::int64_t n) {
    return static_cast<std::size_t>(std::max<std::int64_t>(n, 0));
  }

  bnk_status call_syncbn(const bnk_syncbn_problem& p, const bnk_syncbn_buffers& b,
                         std::string& message) {
    const std::int64_t kc = p.shards * p.channels;
    json req;
    name_operation(req, "syncbn_merge");
    req["channels"] = p.channels;
    json counts = json::array();
    for (std::int64_t k = 0; k < p.shards; ++k) counts.push_back(b.count[k]);
    req["counts"] = std::move(counts);
    req["eps"] = hex_double(p.eps);
    req["momentum"] = p.cumulative != 0 ? json(nullptr) : json(hex_double(p.momentum));
    req["track_running"] = p.track_running != 0;
    json in = json::object();
    in["shard_mean"] = floats(b.shard_mean, kc);
    in["shard_var"] = floats(b.shard_var, kc);
    if (p.track_running != 0) {
      in["running_mean"] = floats(b.running_mean, p.channels);
      in["running_var"] = floats(b.running_var, p.channels);
      in["num_batches_tracked"] = *b.num_batches_tracked;
    }
    req["inputs"] = std::move(in);
    json out;
    const bnk_status st = exchange(req, out, message, 5 * extent(p.channels));
    if (st != BNK_OK) return st;
    const std::size_t c = extent(p.channels);
    auto into = [&](const char* name, float* dst) {
      take(out, name, c, [&](std::size_t i, float v) { dst[i] = v; });
    };
    into("mean", b.mean);
    into("var", b.var);
    into("invstd", b.invstd);
    if (p.track_running != 0) {
      into("running_mean", b.running_mean);
      into("running_var", b.running_var);
      *b.num_batches_tracked = take_counter(out);
    }
    message.clear();
    return BNK_OK;
  }

  bnk_status call_fold(const bnk_fold_problem& p, const bnk_fold_buffers& b, std::string& message) {
    json req;
    name_operation(req, "fold");
    req["out_channels"] = p.out_channels;
    req["fan_in"] = p.fan_in;
    req["eps"] = hex_double(p.eps);
    json in = json::object();
    in["weight"] = floats(b.weight, p.out_channels * p.fan_in);
    if (p.has_bias != 0) in["bias"] = floats(b.bias, p.out_channels);
    in["gamma"] = floats(b.gamma, p.out_channels);
    in["beta"] = floats(b.beta, p.out_channels);
    in["running_mean"] = floats(b.running_mean, p.out_channels);
    in["running_var"] = floats(b.running_var, p.out_channels);
    req["inputs"] = std::move(in);
    json out;
    const bnk_status st =
        exchange(req, out, message, extent(p.out_channels) * (extent(p.fan_in) + 1));
    if (st != BNK_OK) return st;
    take(out, "weight", extent(p.out_channels * p.fan_in),
         [&](std::size_t i, float v) { b.weight_out[i] = v; });
    take(out, "bias", extent(p.out_channels), [&](std::size_t i, float v) { b.bias_out[i] = v; });
    message.clear();
    return BNK_OK;
  }

  std::vector<std::string> argv_;
  std::chrono::milliseconds timeout_;
  pid_t pid_ = -1;
  pid_t owner_ = -1;  // the process that spawned the kernel process (and may reap it)
  int to_ = -1;       // the kernel's stdin
  int from_ = -1;     // the kernel's stdout
  int err_ = -1;      // the kernel's stderr, forwarded to bnoracle's
  int pidfd_ = -1;    // the kernel process (Linux 5.3+), to notice its end while reading
  std::string pending_;
  std::size_t scanned_ = 0;  // bytes of pending_ already searched for a newline
  std::size_t stderr_shown_ = 0;
  std::size_t stderr_dropped_ = 0;
  std::int64_t next_id_ = 0;
  bool first_handshake_ = true;
  std::string exit_description_;
  kernel_info info_;
};

}  // namespace

std::vector<std::string> split_command(std::string_view command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < command.size(); ++i) {
    const char ch = command[i];
    if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (ch == '\\') {
      if (i + 1 >= command.size()) throw plugin_error("the command ends with a lone backslash");
      word += command[++i];
    } else if (ch == '\'') {
      const std::size_t close = command.find('\'', i + 1);
      if (close == std::string_view::npos) throw plugin_error("unterminated ' in the command");
      word.append(command.substr(i + 1, close - i - 1));
      i = close;
    } else if (ch == '"') {
      bool closed = false;
      for (++i; i < command.size(); ++i) {
        if (command[i] == '"') {
          closed = true;
          break;
        }
        if (command[i] == '\\' && i + 1 < command.size() &&
            (command[i + 1] == '"' || command[i + 1] == '\\')) {
          ++i;
        }
        word += command[i];
      }
      if (!closed) throw plugin_error("unterminated \" in the command");
    } else {
      word += ch;
    }
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) throw plugin_error("the command is empty");
  return words;
}

std::unique_ptr<bn_kernel> spawn_kernel(const std::vector<std::string>& argv,
                                        std::chrono::milliseconds timeout) {
  return std::make_unique<subprocess_kernel>(argv, timeout);
}

}  // namespace bnoracle
