// Small files done carefully: bounded reads, exclusive creation with a mode, atomic replacement.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh {

// The whole file, refusing one larger than max_bytes (a license or key file is small; a
// multi-gigabyte "license" is an error, not something to load).
Result<std::string> read_small_file(const std::filesystem::path& path,
                                    uint64_t max_bytes = 1 << 20);
// Creates the file with `mode`; conflict if it exists (never overwrites).
Status write_new_file(const std::filesystem::path& path, std::string_view content, mode_t mode);
// Writes to a temporary name, fsyncs, renames over `path`.
Status write_file_atomically(const std::filesystem::path& path, std::string_view content,
                             mode_t mode);

// A file written under a temporary name and renamed into place only once complete and synced:
// whatever stops it first (an error, abort(), destruction) removes the temporary file and leaves
// the destination as it was. Errors name the file; a full disk is resource_exhausted.
class StagedFile {
 public:
  // Creates `temp` exclusively (it must not exist) with `mode`.
  static Result<StagedFile> create(std::filesystem::path temp, mode_t mode);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&& other) noexcept;
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile() { abort(); }

  // Appends; on failure the file is aborted.
  Status write(const void* data, size_t size);
  Status write(std::string_view data) { return write(data.data(), data.size()); }
  // fsync, rename over `target` (its directory must exist), fsync the directory.
  Status commit(const std::filesystem::path& target);
  void abort();
  bool is_open() const { return fd_ >= 0; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  StagedFile(int fd, std::filesystem::path temp) : fd_(fd), temp_(std::move(temp)) {}
  int fd_ = -1;
  std::filesystem::path temp_;
};

// fsync of a directory, so that a rename or unlink in it is durable.
Status sync_directory(const std::filesystem::path& dir);

}  // namespace mh
