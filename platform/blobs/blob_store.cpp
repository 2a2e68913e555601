#include "platform/blobs/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mh::blobs {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempDir = "tmp";

Status errno_status(std::string_view what, const fs::path& path) {
  int e = errno;
  Code code = (e == ENOSPC || e == EDQUOT) ? Code::kResourceExhausted : Code::kInternal;
  return {code, fmt::format("blobs: {} {}: {}", what, path.string(), std::strerror(e))};
}

}  // namespace

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

BlobWriter::BlobWriter(const BlobStore& store, StagedFile file, uint64_t max_size)
    : store_(store), file_(std::move(file)), max_size_(max_size) {}

BlobWriter::~BlobWriter() = default;

void BlobWriter::abort() { file_.abort(); }

Status BlobWriter::write(const void* data, size_t size) {
  if (!file_.is_open()) return failed_precondition("blobs: write after commit or abort");
  if (size > max_size_ - size_) {
    abort();
    return {Code::kPayloadTooLarge, fmt::format("blob exceeds its limit of {} bytes", max_size_)};
  }
  hash_.update(data, size);
  MH_TRY(file_.write(data, size));
  size_ += size;
  return {};
}

Result<BlobInfo> BlobWriter::commit() {
  if (!file_.is_open()) return failed_precondition("blobs: commit after commit or abort");
  BlobInfo info{hex_encode(hash_.finish()), size_};
  fs::path target = store_.final_path(info.sha256);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    abort();
    return internal_error(
        fmt::format("blobs: creating {}: {}", target.parent_path().string(), ec.message()));
  }
  // Same content, same name: renaming over an existing blob replaces it with identical bytes.
  MH_TRY(file_.commit(target));
  return info;
}

Result<std::unique_ptr<BlobStore>> BlobStore::open(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root / kTempDir, ec);
  if (ec) {
    return internal_error(fmt::format("blobs: creating {}: {}", root.string(), ec.message()));
  }
  for (const auto& entry : fs::directory_iterator(root / kTempDir, ec)) {
    fs::remove(entry.path(), ec);
  }
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

Result<std::unique_ptr<BlobWriter>> BlobStore::create(uint64_t max_size) const {
  static std::atomic<uint64_t> counter{0};
  fs::path temp =
      root_ / kTempDir /
      fmt::format("{}-{}-{}.part", ::getpid(), counter.fetch_add(1), secure_random_base64url(6));
  MH_ASSIGN_OR_RETURN(StagedFile file, StagedFile::create(std::move(temp), 0640));
  return std::unique_ptr<BlobWriter>(new BlobWriter(*this, std::move(file), max_size));
}

Result<BlobInfo> BlobStore::put(std::string_view data) const {
  MH_ASSIGN_OR_RETURN(auto writer, create());
  MH_TRY(writer->write(data));
  return writer->commit();
}

fs::path BlobStore::final_path(std::string_view sha256) const {
  return root_ / std::string(sha256.substr(0, 2)) / std::string(sha256);
}

bool BlobStore::contains(std::string_view sha256) const {
  std::error_code ec;
  return is_sha256_hex(sha256) && fs::is_regular_file(final_path(sha256), ec);
}

Result<fs::path> BlobStore::path_of(std::string_view sha256) const {
  if (!is_sha256_hex(sha256)) return invalid_argument("not a SHA-256 blob name");
  if (!contains(sha256)) return not_found(fmt::format("blob {} not found", sha256));
  return final_path(sha256);
}

Result<std::string> BlobStore::read(std::string_view sha256) const {
  MH_ASSIGN_OR_RETURN(fs::path path, path_of(sha256));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in.good() && !in.eof()) return errno_status("reading", path);
  return out.str();
}

Status BlobStore::remove(std::string_view sha256) const {
  MH_ASSIGN_OR_RETURN(fs::path path, path_of(sha256));
  if (::unlink(path.c_str()) != 0) return errno_status("removing", path);
  return sync_directory(path.parent_path());
}

Result<std::vector<std::string>> BlobStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& shard : fs::directory_iterator(root_, ec)) {
    const std::string prefix = shard.path().filename().string();
    if (prefix.size() != 2 || !shard.is_directory(ec)) continue;  // the temporary area, ...
    for (const auto& e : fs::directory_iterator(shard.path(), ec)) {
      std::string name = e.path().filename().string();
      if (is_sha256_hex(name) && name.starts_with(prefix)) out.push_back(std::move(name));
    }
    if (ec) {
      return Status(Code::kInternal,
                    fmt::format("listing {}: {}", shard.path().string(), ec.message()));
    }
  }
  if (ec) {
    return Status(Code::kInternal, fmt::format("listing {}: {}", root_.string(), ec.message()));
  }
  return out;
}

Status BlobStore::check_writable() const {
  MH_ASSIGN_OR_RETURN(auto writer, create());
  writer->abort();
  return {};
}

}  // namespace mh::blobs
