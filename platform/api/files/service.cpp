#include "platform/api/files/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>

#include "platform/api/files/protocol.h"
#include "platform/api/jsonl.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::api {

namespace {

// Why an upload is too large: the tenant's quota or the per-file limit, whichever binds.
Status too_large(bool quota_binds, std::string_view tenant, int64_t storage_limit,
                 uint64_t file_limit) {
  return {Code::kPayloadTooLarge,
          quota_binds ? fmt::format("the upload would exceed tenant '{}''s storage quota of {} "
                                    "bytes; delete files or ask for a larger quota",
                                    tenant, storage_limit)
                      : fmt::format("the file exceeds the limit of {} bytes per file", file_limit)};
}

// The body of POST /v1/files, part by part: `purpose` is kept (it is short), `file` goes to a
// blob writer as it arrives. Nothing is recorded until finish() has checked everything.
class UploadSink final : public BodySink {
 public:
  UploadSink(Files& files, std::string tenant, std::string boundary, uint64_t file_limit,
             int64_t storage_limit, bool quota_binds)
      : files_(files),
        tenant_(std::move(tenant)),
        file_limit_(file_limit),
        storage_limit_(storage_limit),
        quota_binds_(quota_binds),
        parser_(std::move(boundary), {[this](const PartHeaders& h) { return begin_part(h); },
                                      [this](std::string_view d) { return part_data(d); },
                                      [this] { return end_part(); }}) {}

  // Cut off after the file part was stored but before the upload completed: nothing may
  // remain of it (the blob goes unless a recorded file shares its content).
  ~UploadSink() override {
    if (blob_ && !recorded_) discard_blob();
  }

  Status write(std::string_view chunk) override { return parser_.feed(chunk); }

  Response finish() override {
    if (Status s = parser_.finish(); !s.ok()) return Response::error(s);
    if (!blob_) return Response::error(invalid_argument("the upload has no 'file' part", "file"));
    if (purpose_.empty()) {
      return Response::error(invalid_argument("the upload has no 'purpose' part", "purpose"));
    }
    if (Status known = check_purpose(purpose_); !known.ok()) return fail(known);
    if (purpose_ == "fine-tune") {
      auto path = files_.blobs().path_of(blob_->sha256);
      if (!path.ok()) return fail(path.status());
      auto examples = validate_training_jsonl(*path);
      if (!examples.ok()) return fail(examples.status());
    }
    auto record = files_.commit(tenant_, purpose_, filename_, *blob_, storage_limit_);
    if (!record.ok()) return fail(record.status());
    recorded_ = true;
    return Response::json(200, file_json(*record));
  }

 private:
  // Refuses the upload after its blob was written: the blob goes unless a file shares it.
  Response fail(const Status& status) {
    discard_blob();
    blob_.reset();
    return Response::error(status);
  }

  // The stored blob goes unless a file shares it; if the store cannot say now, the next
  // daemon start collects it (collect_orphans).
  void discard_blob() {
    if (Status s = files_.collect(blob_->sha256); !s.ok()) {
      spdlog::warn("upload: blob {} is left for the collection at the next start: {}",
                   blob_->sha256, s.message());
    }
  }

  Status begin_part(const PartHeaders& h) {
    part_ = h.name;
    if (h.name == "file") {
      if (writer_ || blob_) return invalid_argument("the upload has more than one 'file' part");
      filename_ = h.filename.empty() ? "upload" : h.filename;
      if (filename_.size() > kMaxFilename) {
        return invalid_argument("the file name is longer than 255 bytes", "file");
      }
      MH_ASSIGN_OR_RETURN(writer_, files_.blobs().create(file_limit_));
    }
    return {};
  }
  Status part_data(std::string_view data) {
    if (part_ == "purpose") {
      if (purpose_.size() + data.size() > 64)
        return invalid_argument("purpose is too long", "purpose");
      purpose_.append(data);
    } else if (part_ == "file") {
      Status s = writer_->write(data);
      if (s.code() == Code::kPayloadTooLarge) {
        return too_large(quota_binds_, tenant_, storage_limit_, file_limit_);
      }
      return s;
    }
    return {};  // other fields are ignored, as OpenAI does
  }
  Status end_part() {
    if (part_ == "file") {
      MH_ASSIGN_OR_RETURN(auto info, writer_->commit());
      blob_ = std::move(info);
      writer_.reset();
    }
    part_.clear();
    return {};
  }

  Files& files_;
  const std::string tenant_;
  const uint64_t file_limit_;
  const int64_t storage_limit_;
  const bool quota_binds_;  // the remaining quota, not the per-file limit, caps this file
  MultipartParser parser_;
  std::string part_, purpose_, filename_;
  std::unique_ptr<blobs::BlobWriter> writer_;  // destroyed unfinished: its temp file goes
  std::optional<blobs::BlobInfo> blob_;
  bool recorded_ = false;
};

}  // namespace

Result<int64_t> Files::stored_bytes(std::string_view tenant) const {
  return store_.stored_bytes(tenant);
}

Result<std::unique_ptr<BodySink>> Files::begin_upload(const Request& request) {
  const std::string& tenant = request.principal.tenant;
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
  MH_TRY(context_.entitlements.check(tenant, "", now));
  MH_ASSIGN_OR_RETURN(std::string boundary,
                      MultipartParser::boundary_of(request.header("content-type")));
  auto t = context_.tenants.cached(tenant);
  if (!t) return not_found(fmt::format("tenant '{}' not found", tenant));
  MH_ASSIGN_OR_RETURN(int64_t used, stored_bytes(tenant));
  const int64_t remaining = std::max<int64_t>(0, t->storage_limit_bytes - used);
  if (remaining == 0) {
    return Status(Code::kPayloadTooLarge,
                  fmt::format("tenant '{}' has used all of its storage quota of {} bytes; "
                              "delete files or ask for a larger quota",
                              tenant, t->storage_limit_bytes));
  }
  const bool quota_binds = static_cast<uint64_t>(remaining) < max_file_bytes_;
  const uint64_t limit = quota_binds ? static_cast<uint64_t>(remaining) : max_file_bytes_;
  // A declared length that cannot fit even allowing for the multipart framing is refused before
  // the body is read: a client that sent Expect: 100-continue sends none of it.
  std::string_view declared = request.header("content-length");
  uint64_t length = 0;
  auto [end, ec] = std::from_chars(declared.data(), declared.data() + declared.size(), length);
  if (!declared.empty() && ec == std::errc() && end == declared.data() + declared.size() &&
      length > limit + kMultipartAllowance) {
    return too_large(quota_binds, tenant, t->storage_limit_bytes, max_file_bytes_);
  }
  return std::unique_ptr<BodySink>(std::make_unique<UploadSink>(
      *this, tenant, std::move(boundary), limit, t->storage_limit_bytes, quota_binds));
}

Result<FileRecord> Files::commit(const std::string& tenant, const std::string& purpose,
                                 const std::string& filename, const blobs::BlobInfo& blob,
                                 int64_t storage_limit) {
  FileRecord f{"file-" + secure_random_base64url(18), tenant,      purpose,       filename,
               static_cast<int64_t>(blob.size),       blob.sha256, unix_seconds()};
  MH_TRY(store_.insert(f, storage_limit));
  return f;
}

Result<FileRecord> Files::get(std::string_view tenant, std::string_view id) const {
  return store_.get(tenant, id);
}

Result<std::vector<FileRecord>> Files::list(std::string_view tenant, const std::string& purpose,
                                            std::string_view after, int64_t limit,
                                            bool* has_more) const {
  return store_.list(tenant, purpose, after, limit, has_more);
}

Result<FileRecord> Files::remove(std::string_view tenant, std::string_view id) {
  MH_ASSIGN_OR_RETURN(FileRecord f, store_.remove(tenant, id, unix_seconds()));
  // The bytes go once nothing needs them; if that fails (or the daemon dies first), they are
  // collected at the next start.
  if (Status gc = collect(f.sha256); !gc.ok()) {
    spdlog::warn("file {}: freeing its bytes: {}", f.id, gc.message());
  }
  return f;
}

Result<std::filesystem::path> Files::content(std::string_view tenant, std::string_view id) const {
  MH_ASSIGN_OR_RETURN(FileRecord f, get(tenant, id));
  return context_.blobs.path_of(f.sha256);
}

}  // namespace mh::api
