// Files bnoracle writes: reports, exported fixtures and results. Every file is written whole or
// not at all (a temporary file in the same folder, checked after closing, then renamed over the
// target), so a full disk, a size limit or a crash never leaves a truncated file that looks valid,
// and a file bnoracle did not write is never replaced without --force.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace bnoracle {

// The environment refused something: a file or folder that cannot be created, read or written,
// a full disk, a closed output. The CLI reports it with exit code 2 and the system's reason.
class environment_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes `text` to `path` atomically: a regular file (or a new one) is replaced only once the
// whole text is on disk; a path that is not a regular file (a device such as /dev/stdout or
// /dev/full, a FIFO) is written directly and checked. Creates missing parent folders when
// `create_parents`. Throws environment_error naming the path and the system's reason.
void write_file(const std::filesystem::path& path, const std::string& text,
                bool create_parents = false);

// Writes `text` to standard output and flushes it; throws environment_error when standard output
// is closed or full, or the reader went away.
void write_stdout(const std::string& text);

// Before an export into `folder`: the files of `relative_paths` that exist and were not written
// by bnoracle (a regular file whose JSON does not start with "schema": `schema`), or are not
// regular files. Empty when the export may proceed. Throws environment_error when `folder`
// exists and is not a folder.
[[nodiscard]] std::vector<std::string> overwrite_conflicts(
    const std::filesystem::path& folder, const std::vector<std::string>& relative_paths,
    const std::string& schema);

// The one-sentence refusal for a non-empty overwrite_conflicts result.
[[nodiscard]] std::string conflict_message(const std::vector<std::string>& conflicts,
                                           const std::filesystem::path& folder);

}  // namespace bnoracle
