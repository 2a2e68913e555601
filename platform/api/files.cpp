#include "platform/api/files.h"

#include <fmt/format.h>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>
#include <charconv>

#include "platform/api/jsonl.h"
#include "platform/api/transport.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"
#include "tenants/roles.h"
#include "tenants/tenant_scope.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

namespace json = boost::json;

namespace {

constexpr std::string_view kColumns = "id, tenant_id, purpose, filename, bytes, sha256, created_at";
constexpr std::string_view kPurposes[] = {"fine-tune", "model"};
constexpr size_t kMaxFilename = 255;

FileRecord from_row(const store::Row& r) {
  return {r.text(0), r.text(1), r.text(2), r.text(3), r.integer(4), r.text(5), r.integer(6)};
}

json::object file_json(const FileRecord& f) {
  return {{"id", f.id},
          {"object", "file"},
          {"bytes", f.bytes},
          {"created_at", f.created_at},
          {"filename", f.filename},
          {"purpose", f.purpose},
          {"status", "processed"},
          {"status_details", nullptr},
          {"sha256", f.sha256}};
}

// Why an upload is too large: the tenant's quota or the per-file limit, whichever binds.
Status too_large(bool quota_binds, std::string_view tenant, int64_t storage_limit,
                 uint64_t file_limit) {
  return {Code::kPayloadTooLarge,
          quota_binds ? fmt::format("the upload would exceed tenant '{}''s storage quota of {} "
                                    "bytes; delete files or ask for a larger quota",
                                    tenant, storage_limit)
                      : fmt::format("the file exceeds the limit of {} bytes per file", file_limit)};
}

bool known_purpose(std::string_view p) {
  for (auto k : kPurposes) {
    if (k == p) return true;
  }
  return false;
}

// The body of POST /v1/files, part by part: `purpose` is kept (it is short), `file` goes to a
// blob writer as it arrives. Nothing is recorded until finish() has checked everything.
class UploadSink final : public BodySink {
 public:
  UploadSink(FileStore& files, std::string tenant, std::string boundary, uint64_t file_limit,
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
    if (!known_purpose(purpose_)) {
      return fail(invalid_argument(
          fmt::format("purpose '{}' is not supported; use fine-tune or model", purpose_),
          "purpose"));
    }
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

  FileStore& files_;
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

Result<int64_t> FileStore::stored_bytes(std::string_view tenant) const {
  int64_t used = 0;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row, s.query_one("SELECT COALESCE(SUM(bytes), 0) FROM files WHERE "
                                              "tenant_id = ?",
                                              {std::string(tenant)}, "usage"));
    used = row.integer(0);
    return {};
  }));
  return used;
}

Result<std::unique_ptr<BodySink>> FileStore::begin_upload(const Request& request) {
  const std::string& tenant = request.principal.tenant;
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  MH_TRY(entitlements_.check(tenant, "", now));
  MH_ASSIGN_OR_RETURN(std::string boundary,
                      MultipartParser::boundary_of(request.header("content-type")));
  auto t = tenants_.cached(tenant);
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

Result<FileRecord> FileStore::commit(const std::string& tenant, const std::string& purpose,
                                     const std::string& filename, const blobs::BlobInfo& blob,
                                     int64_t storage_limit) {
  FileRecord f{"file-" + secure_random_base64url(18), tenant,      purpose,       filename,
               static_cast<int64_t>(blob.size),       blob.sha256, unix_seconds()};
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    // Under the write lock: a concurrent delete of the last file with this content may have
    // removed the blob after it was written; and concurrent uploads may have used the quota.
    if (!blobs_.contains(f.sha256)) {
      return unavailable(
          "the upload's content was removed while it was being stored; upload "
          "it again");
    }
    MH_ASSIGN_OR_RETURN(auto used, s.query_one("SELECT COALESCE(SUM(bytes), 0) FROM files "
                                               "WHERE tenant_id = ?",
                                               {tenant}, "usage"));
    if (used.integer(0) + f.bytes > storage_limit) {
      return Status(Code::kPayloadTooLarge,
                    fmt::format("the upload would exceed tenant '{}''s storage quota of {} "
                                "bytes; delete files or ask for a larger quota",
                                tenant, storage_limit));
    }
    MH_TRY(s.exec("INSERT INTO files (id, tenant_id, purpose, filename, bytes, sha256, "
                  "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  {f.id, f.tenant, f.purpose, f.filename, f.bytes, f.sha256, f.created_at})
               .status());
    return tenants::UsageLedger::record(
        s, {tenant, f.created_at, tenants::UsageDimension::kStoredBytes,
            static_cast<double>(f.bytes), "file", f.id});
  }));
  return f;
}

namespace {

// Whether a file or an unfinished fine-tuning job needs the blob's bytes.
Result<bool> blob_needed(store::Session& s, const std::string& sha256) {
  MH_ASSIGN_OR_RETURN(
      auto refs,
      s.query_one("SELECT (SELECT COUNT(*) FROM files WHERE sha256 = ?) + (SELECT COUNT(*) FROM "
                  "fine_tuning_jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') AND "
                  "(training_sha256 = ? OR validation_sha256 = ?))",
                  {sha256, sha256, sha256}, "count"));
  return refs.integer(0) > 0;
}

}  // namespace

Status FileStore::collect(const std::string& sha256) {
  return db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(const bool needed, blob_needed(s, sha256));
    if (needed || !blobs_.contains(sha256)) return {};
    return blobs_.remove(sha256);
  });
}

Result<int64_t> FileStore::collect_orphans() {
  int64_t removed = 0;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto names, blobs_.list());
    for (const std::string& sha : names) {
      MH_ASSIGN_OR_RETURN(const bool needed, blob_needed(s, sha));
      if (needed) continue;
      MH_TRY(blobs_.remove(sha));
      ++removed;
    }
    return {};
  }));
  return removed;
}

Result<FileRecord> FileStore::get(std::string_view tenant, std::string_view id) const {
  FileRecord f;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("files", kColumns, id, "file"));
    f = from_row(row);
    return {};
  }));
  return f;
}

Result<std::vector<FileRecord>> FileStore::list(std::string_view tenant, const std::string& purpose,
                                                std::string_view after, int64_t limit,
                                                bool* has_more) const {
  std::vector<FileRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    // Filtering by purpose after paging would shorten pages; fetch pages until full.
    std::string cursor(after);
    bool more = true;
    while (more && static_cast<int64_t>(out.size()) < limit) {
      MH_ASSIGN_OR_RETURN(auto rows, scope.page("files", kColumns, cursor, limit, &more));
      for (const auto& row : rows) {
        FileRecord f = from_row(row);
        cursor = f.id;
        if (!purpose.empty() && f.purpose != purpose) continue;
        if (static_cast<int64_t>(out.size()) == limit) {
          more = true;
          break;
        }
        out.push_back(std::move(f));
      }
    }
    *has_more = more;
    return {};
  }));
  return out;
}

Result<FileRecord> FileStore::remove(std::string_view tenant, std::string_view id) {
  FileRecord f;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("files", kColumns, id, "file"));
    f = from_row(row);
    MH_ASSIGN_OR_RETURN(auto users,
                        s.query("SELECT id FROM models WHERE tenant_id = ? AND (config_file = ? OR "
                                "weights_file = ? OR tokenizer_file = ? OR "
                                "instr(extra_files, ?) > 0) LIMIT 1",
                                {f.tenant, f.id, f.id, f.id, "\"" + f.id + "\""}));
    if (!users.empty()) {
      return conflict(fmt::format("file '{}' belongs to model '{}'; delete the model first", f.id,
                                  users[0].text(0)));
    }
    // A job that used it keeps the bytes it needs (by their hash) and its own record of the
    // file's id; the file itself goes, and with it the tenant's storage.
    MH_TRY(s.exec("DELETE FROM files WHERE id = ? AND tenant_id = ?", {f.id, f.tenant}).status());
    return tenants::UsageLedger::record(
        s, {f.tenant, unix_seconds(), tenants::UsageDimension::kStoredBytes,
            -static_cast<double>(f.bytes), "file", f.id});
  }));
  // The bytes go once nothing needs them; if that fails (or the daemon dies first), they are
  // collected at the next start.
  if (Status gc = collect(f.sha256); !gc.ok()) {
    spdlog::warn("file {}: freeing its bytes: {}", f.id, gc.message());
  }
  return f;
}

Result<std::filesystem::path> FileStore::content(std::string_view tenant,
                                                 std::string_view id) const {
  MH_ASSIGN_OR_RETURN(FileRecord f, get(tenant, id));
  return blobs_.path_of(f.sha256);
}

void add_file_routes(Router& router, FileStore& files) {
  using tenants::Permission;
  router.add_upload("POST", "/v1/files", Access::tenant(Permission::kWrite),
                    [&files](Request& request) { return files.begin_upload(request); });
  router.add("GET", "/v1/files", Access::tenant(Permission::kRead), [&files](Request& request) {
    auto page = parse_page(request, 20, 10000);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = files.list(request.principal.tenant, request.query_param("purpose").value_or(""),
                           page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& f : *list) data.push_back(file_json(f));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", "/v1/files/{id}", Access::tenant(Permission::kRead),
             [&files](Request& request) {
               auto f = files.get(request.principal.tenant, request.param("id"));
               if (!f.ok()) return Response::error(f.status());
               return Response::json(200, file_json(*f));
             });
  router.add("GET", "/v1/files/{id}/content", Access::tenant(Permission::kRead),
             [&files](Request& request) {
               auto path = files.content(request.principal.tenant, request.param("id"));
               if (!path.ok()) return Response::error(path.status());
               return Response::file(path->string(), "application/octet-stream");
             });
  router.add("DELETE", "/v1/files/{id}", Access::tenant(Permission::kWrite),
             [&files](Request& request) {
               auto f = files.remove(request.principal.tenant, request.param("id"));
               if (!f.ok()) return Response::error(f.status());
               return Response::json(
                   200, json::object{{"id", f->id}, {"object", "file"}, {"deleted", true}});
             });
}

}  // namespace mh::api
