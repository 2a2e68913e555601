// BlobStore: immutable files named by the SHA-256 of their content, under one directory
// (`<root>/ab/abcdef…`). A blob is written to a temporary file, fsynced, then renamed into place
// and its directory fsynced, so a blob either exists whole or not at all, whatever the crash.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/crypto.h"
#include "platform/base/files.h"
#include "platform/base/status.h"

namespace mh::blobs {

struct BlobInfo {
  std::string sha256;  // 64 lowercase hex digits
  uint64_t size = 0;
};

class BlobStore;

// A blob being written. Data is hashed on the way in; commit() makes it visible, and a writer
// destroyed without commit() removes its temporary file.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  Status write(const void* data, size_t size);
  Status write(std::string_view data) { return write(data.data(), data.size()); }
  uint64_t bytes_written() const { return size_; }
  Result<BlobInfo> commit();
  void abort();

 private:
  friend class BlobStore;
  BlobWriter(const BlobStore& store, StagedFile file, uint64_t max_size);

  const BlobStore& store_;
  StagedFile file_;
  uint64_t max_size_;
  uint64_t size_ = 0;
  Sha256 hash_;
};

class BlobStore {
 public:
  // Creates `root` (and its temporary area) if needed and removes temporary files left by a
  // crash; they never became blobs.
  static Result<std::unique_ptr<BlobStore>> open(const std::filesystem::path& root);

  // A writer that refuses to grow past max_size bytes (payload_too_large).
  Result<std::unique_ptr<BlobWriter>> create(uint64_t max_size = UINT64_MAX) const;
  Result<BlobInfo> put(std::string_view data) const;

  bool contains(std::string_view sha256) const;
  Result<std::string> read(std::string_view sha256) const;
  // The path of an existing blob, for streaming it out; not_found if absent.
  Result<std::filesystem::path> path_of(std::string_view sha256) const;
  Status remove(std::string_view sha256) const;
  // Every blob's name, in no particular order (for collecting those nothing refers to).
  Result<std::vector<std::string>> list() const;

  const std::filesystem::path& root() const { return root_; }
  // True when a temporary file can be created and removed (readiness check).
  Status check_writable() const;

 private:
  friend class BlobWriter;
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path final_path(std::string_view sha256) const;

  std::filesystem::path root_;
};

// True for 64 lowercase hex digits.
bool is_sha256_hex(std::string_view s);

}  // namespace mh::blobs
