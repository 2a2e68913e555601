#include "platform/api/files/store.h"

#include <fmt/format.h>

#include "tenants/tenant_scope.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

namespace {

constexpr std::string_view kColumns = "id, tenant_id, purpose, filename, bytes, sha256, created_at";

FileRecord from_row(const store::Row& r) {
  return {r.text(0), r.text(1), r.text(2), r.text(3), r.integer(4), r.text(5), r.integer(6)};
}

Result<int64_t> used_bytes(store::Session& s, const std::string& tenant) {
  MH_ASSIGN_OR_RETURN(auto row, s.query_one("SELECT COALESCE(SUM(bytes), 0) FROM files WHERE "
                                            "tenant_id = ?",
                                            {tenant}, "usage"));
  return row.integer(0);
}

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

Result<int64_t> FileStore::stored_bytes(std::string_view tenant) const {
  int64_t used = 0;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(used, used_bytes(s, std::string(tenant)));
    return {};
  }));
  return used;
}

Status FileStore::insert(const FileRecord& f, int64_t storage_limit) {
  return db_.write([&](store::Session& s) -> Status {
    // Under the write lock: a concurrent delete of the last file with this content may have
    // removed the blob after it was written; and concurrent uploads may have used the quota.
    if (!blobs_.contains(f.sha256)) {
      return unavailable(
          "the upload's content was removed while it was being stored; upload "
          "it again");
    }
    MH_ASSIGN_OR_RETURN(const int64_t used, used_bytes(s, f.tenant));
    if (used + f.bytes > storage_limit) {
      return Status(Code::kPayloadTooLarge,
                    fmt::format("the upload would exceed tenant '{}''s storage quota of {} "
                                "bytes; delete files or ask for a larger quota",
                                f.tenant, storage_limit));
    }
    MH_TRY(s.exec("INSERT INTO files (id, tenant_id, purpose, filename, bytes, sha256, "
                  "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  {f.id, f.tenant, f.purpose, f.filename, f.bytes, f.sha256, f.created_at})
               .status());
    return tenants::UsageLedger::record(
        s, {f.tenant, f.created_at, tenants::UsageDimension::kStoredBytes,
            static_cast<double>(f.bytes), "file", f.id});
  });
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

Result<std::vector<FileRecord>> FileStore::list(std::string_view tenant,
                                                const std::string& purpose,
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

Result<FileRecord> FileStore::remove(std::string_view tenant, std::string_view id, int64_t now) {
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
    return tenants::UsageLedger::record(s, {f.tenant, now, tenants::UsageDimension::kStoredBytes,
                                            -static_cast<double>(f.bytes), "file", f.id});
  }));
  return f;
}

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
    removed = 0;
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

}  // namespace mh::api
