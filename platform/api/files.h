// Files, OpenAI-compatible: a tenant uploads (multipart `file` + `purpose`), lists, reads and
// deletes files. Uploads stream straight into the blob store, hashed on the way in, within the
// per-file limit and the tenant's storage quota; an upload cut off at any point leaves no file
// record and no blob. `fine-tune` files are validated line by line before they are accepted.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "platform/api/transport.h"
#include "licensing/trusted_clock.h"
#include "platform/blobs/blob_store.h"
#include "platform/store/database.h"
#include "tenants/tenants.h"

namespace mh::api {

struct FileRecord {
  std::string id;  // "file-…"
  std::string tenant;
  std::string purpose;
  std::string filename;
  int64_t bytes = 0;
  std::string sha256;
  int64_t created_at = 0;
};

// What a multipart upload may carry besides the file's own bytes (boundaries, part headers, the
// purpose field): the HTTP body limit is the per-file limit plus this, and a declared length
// beyond the remaining quota plus this is refused before the body is read.
constexpr uint64_t kMultipartAllowance = 64 * 1024;

class FileStore {
 public:
  FileStore(store::Database& db, blobs::BlobStore& blobs, tenants::TenantRegistry& tenants,
            const licensing::Entitlements& entitlements, licensing::TrustedClock& clock,
            uint64_t max_file_bytes)
      : db_(db),
        blobs_(blobs),
        tenants_(tenants),
        entitlements_(entitlements),
        clock_(clock),
        max_file_bytes_(max_file_bytes) {}

  // A sink for an upload by the request's tenant, or why it is refused before any byte is read.
  Result<std::unique_ptr<BodySink>> begin_upload(const Request& request);
  Result<FileRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<FileRecord>> list(std::string_view tenant, const std::string& purpose,
                                       std::string_view after, int64_t limit, bool* has_more) const;
  Result<FileRecord> remove(std::string_view tenant, std::string_view id);
  Result<std::filesystem::path> content(std::string_view tenant, std::string_view id) const;
  // Bytes the tenant stores now.
  Result<int64_t> stored_bytes(std::string_view tenant) const;

  // Used by the upload sink once the body is complete.
  Result<FileRecord> commit(const std::string& tenant, const std::string& purpose,
                            const std::string& filename, const blobs::BlobInfo& blob,
                            int64_t storage_limit);
  // Removes the blob if nothing needs its bytes any more: no file of any tenant, and no
  // fine-tuning job that may still run. It runs in a write transaction of its own that changes
  // no row, after the change that freed the blob has committed: under the store's write lock no
  // new reference can appear meanwhile, and a failed commit loses nothing.
  Status collect(const std::string& sha256);
  // Removes every blob nothing needs (those a crash left between writing a blob and recording
  // it, or between deleting a file and its blob). Run at start, before uploads are taken.
  Result<int64_t> collect_orphans();

  blobs::BlobStore& blobs() { return blobs_; }
  uint64_t max_file_bytes() const { return max_file_bytes_; }

 private:
  store::Database& db_;
  blobs::BlobStore& blobs_;
  tenants::TenantRegistry& tenants_;
  const licensing::Entitlements& entitlements_;
  licensing::TrustedClock& clock_;
  const uint64_t max_file_bytes_;
};

// POST /v1/files, GET /v1/files[/{id}[/content]], DELETE /v1/files/{id}.
void add_file_routes(Router& router, FileStore& files);

}  // namespace mh::api
