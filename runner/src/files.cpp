#include "bnoracle/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <system_error>

namespace bnoracle {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& path, const std::string& what, int error) {
  throw environment_error("cannot " + what + " '" + path.string() + "': " + std::strerror(error));
}

// Writes all of `text` to `fd`; the errno of the first failure, or 0.
int write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

namespace {

// Writes `text` through `path` as it is: for devices, FIFOs, the descriptors of /proc/self/fd and
// /dev/std*, and a link to nothing yet (created). Not atomic: there is nothing to rename over.
void write_through(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0666);
  if (fd < 0) fail(path, "open", errno);
  struct stat st {};
  // A regular file behind the path is replaced, not overwritten in place past the new end.
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::ftruncate(fd, 0) != 0) {
    const int e = errno;
    ::close(fd);
    fail(path, "truncate", e);
  }
  const int err = write_all(fd, text);
  const int close_err = ::close(fd) != 0 ? errno : 0;
  if (err != 0) fail(path, "write", err);
  if (close_err != 0 && close_err != EINTR) fail(path, "write", close_err);
}

// Whether `path` names a process's descriptors or a device (/dev/stdout, /proc/self/fd/1): the
// user means that stream, written in place, whatever the link behind it points at.
bool names_a_stream(const fs::path& path) {
  const std::string p = path.lexically_normal().string();
  return p.rfind("/dev/", 0) == 0 || p.rfind("/proc/", 0) == 0;
}

}  // namespace

void write_file(const fs::path& given, const std::string& text, bool create_parents) {
  std::error_code ec;
  if (create_parents && given.has_parent_path()) {
    fs::create_directories(given.parent_path(), ec);
    if (ec) fail(given.parent_path(), "create the folder", ec.value());
  }
  if (names_a_stream(given)) {
    write_through(given, text);
    return;
  }
  // A symbolic link is followed: the file it points at is replaced, the link stays.
  fs::path path = given;
  struct stat lst {};
  if (::lstat(given.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    const fs::path target = fs::canonical(given, ec);
    if (ec) {
      write_through(given, text);  // a link to nothing yet: open() creates its target
      return;
    }
    path = target;
  }
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) fail(path, "write a file over the folder", EISDIR);
  if (exists && !S_ISREG(st.st_mode)) {
    // A device, FIFO or socket: no temporary file can be renamed over it.
    write_through(path, text);
    return;
  }
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::string temp = (folder / ("." + path.filename().string() + ".bnoracle-XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) fail(path, "create a temporary file next to", errno);
  int err = write_all(fd, text);
  // fsync, so that the rename never publishes a file whose data is not on disk yet.
  if (err == 0 && ::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err == 0 && exists) ::chmod(temp.c_str(), st.st_mode & 07777);
  if (err == 0 && !exists) {
    // mkostemp creates 0600; a new file gets the usual permissions (0666 less the umask).
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::chmod(temp.c_str(), 0666 & ~mask);
  }
  if (err == 0 && ::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temp.c_str());
    fail(path, "write", err);
  }
}

void write_stdout(const std::string& text) {
  std::fflush(stdout);
  if (const int err = write_all(STDOUT_FILENO, text); err != 0) {
    throw environment_error(std::string("cannot write to standard output: ") + std::strerror(err));
  }
}

std::vector<std::string> overwrite_conflicts(const fs::path& folder,
                                             const std::vector<std::string>& relative_paths,
                                             const std::string& schema) {
  std::vector<std::string> out;
  std::error_code ec;
  const fs::file_status fst = fs::status(folder, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    fail(folder, "use the folder", ec.value());
  }
  if (!fs::exists(fst)) return out;
  if (!fs::is_directory(fst)) fail(folder, "write into", ENOTDIR);
  const std::string signature = "{\n  \"schema\": \"" + schema + "\"";
  std::set<fs::path> folders_seen;
  for (const auto& rel : relative_paths) {
    const fs::path p = folder / rel;
    // A file where a folder of the export is needed would stop it half-way.
    for (fs::path up = fs::path(rel).parent_path(); !up.empty(); up = up.parent_path()) {
      if (!folders_seen.insert(up).second) break;
      const fs::file_status s = fs::symlink_status(folder / up, ec);
      if (!ec && fs::exists(s) && !fs::is_directory(fs::status(folder / up, ec))) {
        out.push_back((folder / up).string() + " (a file where a folder is needed)");
      }
    }
    const fs::file_status s = fs::symlink_status(p, ec);
    if (ec || !fs::exists(s)) continue;
    if (!fs::is_regular_file(s)) {
      out.push_back(p.string() + " (not a regular file)");
      continue;
    }
    std::array<char, 64> head{};
    FILE* f = std::fopen(p.c_str(), "rb");
    std::size_t n = 0;
    if (f != nullptr) {
      n = std::fread(head.data(), 1, head.size(), f);
      std::fclose(f);
    }
    if (std::string(head.data(), n).rfind(signature, 0) != 0) {
      out.push_back(p.string());
    }
  }
  return out;
}

std::string conflict_message(const std::vector<std::string>& conflicts, const fs::path& folder) {
  std::string m = std::to_string(conflicts.size()) + " file" + (conflicts.size() == 1 ? "" : "s") +
                  " in '" + folder.string() + "' would be replaced but bnoracle did not write " +
                  (conflicts.size() == 1 ? "it" : "them") + ": ";
  for (std::size_t i = 0; i < conflicts.size() && i < 5; ++i) {
    m += (i == 0 ? "" : ", ") + conflicts[i];
  }
  if (conflicts.size() > 5) m += ", ...";
  m += " (nothing was written; choose a new or empty folder, or pass --force)";
  return m;
}

}  // namespace bnoracle
