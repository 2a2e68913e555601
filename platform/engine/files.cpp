#include "platform/engine/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace mh::engine {
namespace {

std::string errno_text(std::string_view what, const std::filesystem::path& path) {
  return std::string(what) + " " + path.string() + ": " + std::strerror(errno);
}

}  // namespace

Result<std::string> read_text_file(const std::filesystem::path& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path.string());
  std::string text;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    text.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      return invalid_argument(path.string() + " is larger than " + std::to_string(max_bytes) +
                              " bytes");
    }
  }
  if (in.bad()) return internal_error("cannot read " + path.string());
  return text;
}

Status write_file_atomically(const std::filesystem::path& path,
                             std::span<const std::span<const uint8_t>> pieces) {
  std::filesystem::path temp = path;
  temp += ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return internal_error(errno_text("creating", temp));
  auto write_all = [&](std::span<const uint8_t> bytes) {
    const auto* p = bytes.data();
    size_t size = bytes.size();
    while (size > 0) {
      ssize_t n = ::write(fd, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  };
  bool ok = true;
  for (const auto& piece : pieces) ok = ok && write_all(piece);
  ok = ok && ::fsync(fd) == 0;
  const std::string failure = ok ? "" : errno_text("writing", temp);
  const int write_errno = errno;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    const bool full = (ok ? errno : write_errno) == ENOSPC;
    std::string message = ok ? errno_text("renaming into", path) : failure;
    ::unlink(temp.c_str());
    return Status(full ? Code::kResourceExhausted : Code::kInternal, message);
  }
  // The rename is durable once the directory is.
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

Status write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  const std::span<const uint8_t> piece(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  return write_file_atomically(path, std::span<const std::span<const uint8_t>>(&piece, 1));
}

Status for_each_line(std::string_view text,
                     const std::function<Status(int64_t, std::string_view)>& fn) {
  int64_t number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    MH_TRY(fn(++number, line));
  }
  return {};
}

}  // namespace mh::engine
