#include "platform/base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstring>
#include <utility>

namespace mh {
namespace {

Status io_error(std::string_view what, const std::filesystem::path& path) {
  int e = errno;
  if (e == ENOSPC || e == EDQUOT) {
    return Status(Code::kResourceExhausted,
                  fmt::format("{} {}: {}", what, path.string(), std::strerror(e)));
  }
  if (e == ENOENT) return not_found(fmt::format("{} {}: no such file", what, path.string()));
  if (e == EACCES) {
    return permission_denied(fmt::format("{} {}: permission denied", what, path.string()));
  }
  return internal_error(fmt::format("{} {}: {}", what, path.string(), std::strerror(e)));
}

// Writes everything, retrying short writes; errno is left set on failure.
bool write_all(int fd, std::string_view content) {
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

Result<std::string> read_small_file(const std::filesystem::path& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("reading", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(fmt::format("{} is not a regular file", path.string()));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Status(Code::kPayloadTooLarge, fmt::format("{} is {} bytes, more than the {} expected",
                                                      path.string(), st.st_size, max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

Status write_new_file(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return conflict(fmt::format("{} exists; remove it or choose another name", path.string()));
    }
    return io_error("creating", path);
  }
  Status status;
  if (!write_all(fd, content)) status = io_error("writing", path);
  if (status.ok() && ::fsync(fd) != 0) status = io_error("syncing", path);
  ::close(fd);
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

Status write_file_atomically(const std::filesystem::path& path, std::string_view content,
                             mode_t mode) {
  std::filesystem::path temp = path;
  temp += ".tmp";
  ::unlink(temp.c_str());  // left by a crash mid-write; it never replaced anything
  MH_ASSIGN_OR_RETURN(StagedFile file, StagedFile::create(temp, mode));
  MH_TRY(file.write(content));
  return file.commit(path);
}

Result<StagedFile> StagedFile::create(std::filesystem::path temp, mode_t mode) {
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return io_error("creating", temp);
  return StagedFile(fd, std::move(temp));
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), temp_(std::move(other.temp_)) {}

StagedFile& StagedFile::operator=(StagedFile&& other) noexcept {
  if (this != &other) {
    abort();
    fd_ = std::exchange(other.fd_, -1);
    temp_ = std::move(other.temp_);
  }
  return *this;
}

void StagedFile::abort() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
}

Status StagedFile::write(const void* data, size_t size) {
  if (fd_ < 0) return failed_precondition(fmt::format("{} is closed", temp_.string()));
  if (!write_all(fd_, std::string_view(static_cast<const char*>(data), size))) {
    Status status = io_error("writing", temp_);
    abort();
    return status;
  }
  return {};
}

Status StagedFile::commit(const std::filesystem::path& target) {
  if (fd_ < 0) return failed_precondition(fmt::format("{} is closed", temp_.string()));
  if (::fsync(fd_) != 0) {
    Status status = io_error("syncing", temp_);
    abort();
    return status;
  }
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_.c_str(), target.c_str()) != 0) {
    Status status = io_error("renaming into", target);
    ::unlink(temp_.c_str());
    return status;
  }
  std::filesystem::path dir = target.parent_path();
  return sync_directory(dir.empty() ? std::filesystem::path(".") : dir);
}

Status sync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("opening directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return io_error("syncing directory", dir);
  return {};
}

}  // namespace mh
