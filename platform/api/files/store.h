// FileStore: the files' typed queries, and the only place their SQL is written. It keeps the
// rows (table files) and the bytes they name (the blob store) together: a blob goes only when
// nothing needs it any more, which it answers by looking at what refers to blobs (files of any
// tenant, fine-tuning jobs that may still run).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "platform/api/files/file.h"
#include "platform/base/status.h"
#include "platform/blobs/blob_store.h"
#include "platform/store/database.h"

namespace mh::api {

class FileStore {
 public:
  FileStore(store::Database& db, blobs::BlobStore& blobs) : db_(db), blobs_(blobs) {}

  // Bytes the tenant stores now.
  Result<int64_t> stored_bytes(std::string_view tenant) const;
  // Records the file, whose bytes are the blob `file.sha256`, and the storage it adds to the
  // usage ledger, in one transaction; payload_too_large past `storage_limit`, unavailable if
  // the blob went meanwhile.
  Status insert(const FileRecord& file, int64_t storage_limit);
  Result<FileRecord> get(std::string_view tenant, std::string_view id) const;
  // The tenant's files of `purpose` ("" for all), in pages of `limit`.
  Result<std::vector<FileRecord>> list(std::string_view tenant, const std::string& purpose,
                                       std::string_view after, int64_t limit,
                                       bool* has_more) const;
  // Deletes the tenant's file and records the storage freed, in one transaction; conflict when
  // one of the tenant's models is made of it.
  Result<FileRecord> remove(std::string_view tenant, std::string_view id, int64_t now);
  // Removes the blob unless a file or an unfinished job needs it, in a write transaction of
  // its own (under the store's write lock no new reference can appear meanwhile).
  Status collect(const std::string& sha256);
  // The same for every blob; how many went.
  Result<int64_t> collect_orphans();

  blobs::BlobStore& blobs() const { return blobs_; }

 private:
  store::Database& db_;
  blobs::BlobStore& blobs_;
};

}  // namespace mh::api
