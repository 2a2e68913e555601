// Files, OpenAI-compatible (records in file.h, SQL and bytes in store.h, the wire format in
// protocol.h, the HTTP routes in routes.h): a tenant uploads (multipart `file` + `purpose`),
// lists, reads and deletes files. Uploads stream straight into the blob store, hashed on the
// way in, within the per-file limit and the tenant's storage quota; an upload cut off at any
// point leaves no file record and no blob. `fine-tune` files are validated line by line before
// they are accepted.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "platform/api/context.h"
#include "platform/api/files/file.h"
#include "platform/api/files/store.h"
#include "platform/api/transport.h"

namespace mh::api {

class Files {
 public:
  Files(const Context& context, uint64_t max_file_bytes)
      : context_(context), store_(context.db, context.blobs), max_file_bytes_(max_file_bytes) {}

  // A sink for an upload by the request's tenant, or why it is refused before any byte is read.
  Result<std::unique_ptr<BodySink>> begin_upload(const Request& request);
  Result<FileRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<FileRecord>> list(std::string_view tenant, const std::string& purpose,
                                       std::string_view after, int64_t limit,
                                       bool* has_more) const;
  Result<FileRecord> remove(std::string_view tenant, std::string_view id);
  Result<std::filesystem::path> content(std::string_view tenant, std::string_view id) const;
  // Bytes the tenant stores now.
  Result<int64_t> stored_bytes(std::string_view tenant) const;

  // Used by the upload sink once the body is complete.
  Result<FileRecord> commit(const std::string& tenant, const std::string& purpose,
                            const std::string& filename, const blobs::BlobInfo& blob,
                            int64_t storage_limit);
  // Removes the blob if nothing needs its bytes any more: no file of any tenant, and no
  // fine-tuning job that may still run. Call it after the change that freed the blob has
  // committed: a failed commit then loses nothing.
  Status collect(const std::string& sha256) { return store_.collect(sha256); }
  // Removes every blob nothing needs (those a crash left between writing a blob and recording
  // it, or between deleting a file and its blob). Run at start, before uploads are taken.
  Result<int64_t> collect_orphans() { return store_.collect_orphans(); }

  blobs::BlobStore& blobs() { return context_.blobs; }
  uint64_t max_file_bytes() const { return max_file_bytes_; }

 private:
  const Context context_;
  FileStore store_;
  const uint64_t max_file_bytes_;
};

}  // namespace mh::api
