// The files service on a real store and blob store, with no HTTP: records, the tenant's storage,
// bytes shared between tenants and freed when nothing needs them, orphans collected.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "platform/api/files/protocol.h"
#include "platform/api/files/service.h"
#include "tests/api/service_platform.h"

namespace mh::api {
namespace {

struct Fixture : ServicePlatform {
  Files files{context, 1 << 20};

  FileRecord add(const std::string& tenant, std::string_view content, int64_t limit = 1000) {
    auto blob = blobs->put(content);
    REQUIRE(blob.ok());
    auto f = files.commit(tenant, "fine-tune", "train.jsonl", *blob, limit);
    REQUIRE_MESSAGE(f.ok(), f.status().to_string());
    return *f;
  }
};

TEST_CASE("a file is its tenant's: counted in its storage, invisible to another tenant") {
  Fixture t;
  const FileRecord f = t.add("acme", "{\"text\":\"hello\"}\n");
  CHECK(f.id.starts_with("file-"));
  CHECK(f.bytes == 17);
  CHECK(t.files.stored_bytes("acme").value() == 17);
  CHECK(t.files.stored_bytes("globex").value() == 0);
  CHECK(t.files.get("acme", f.id)->sha256 == f.sha256);
  CHECK(t.files.get("globex", f.id).status().code() == Code::kNotFound);
  CHECK(t.files.remove("globex", f.id).status().code() == Code::kNotFound);
  bool more = true;
  auto listed = t.files.list("acme", "", "", 10, &more);
  REQUIRE(listed.ok());
  CHECK(listed->size() == 1);
  CHECK_FALSE(more);
  CHECK(t.files.list("globex", "", "", 10, &more)->empty());
  // Past the storage quota: refused, and nothing recorded.
  auto blob = t.blobs->put(std::string(990, 'x'));
  REQUIRE(blob.ok());
  auto over = t.files.commit("acme", "fine-tune", "big.jsonl", *blob, 1000);
  CHECK(over.status().code() == Code::kPayloadTooLarge);
  CHECK(t.files.stored_bytes("acme").value() == 17);
}

TEST_CASE("bytes two tenants uploaded are kept until the last file with them is deleted") {
  Fixture t;
  const FileRecord a = t.add("acme", "same bytes\n");
  const FileRecord g = t.add("globex", "same bytes\n");
  REQUIRE(a.sha256 == g.sha256);
  REQUIRE(t.files.remove("acme", a.id).ok());
  CHECK(t.blobs->contains(a.sha256));  // globex's file still has them
  CHECK(t.files.stored_bytes("acme").value() == 0);
  CHECK(t.files.get("globex", g.id).ok());
  REQUIRE(t.files.remove("globex", g.id).ok());
  CHECK_FALSE(t.blobs->contains(a.sha256));
  CHECK(t.files.get("globex", g.id).status().code() == Code::kNotFound);
}

TEST_CASE("blobs a crash left unrecorded are collected, and recorded ones kept") {
  Fixture t;
  const FileRecord kept = t.add("acme", "recorded\n");
  auto orphan = t.blobs->put("written, never recorded\n");
  REQUIRE(orphan.ok());
  auto collected = t.files.collect_orphans();
  REQUIRE(collected.ok());
  CHECK(*collected == 1);
  CHECK_FALSE(t.blobs->contains(orphan->sha256));
  CHECK(t.blobs->contains(kept.sha256));
  CHECK(t.files.collect_orphans().value() == 0);
}

TEST_CASE("a file is written in OpenAI's shape, and a purpose not taken is refused by name") {
  const FileRecord f{"file-1", "acme", "fine-tune", "train.jsonl", 17, std::string(64, 'a'), 5};
  const boost::json::object o = file_json(f);
  CHECK(o.at("object") == "file");
  CHECK(o.at("bytes") == 17);
  CHECK(o.at("purpose") == "fine-tune");
  CHECK(o.at("status") == "processed");
  CHECK(file_deleted_json(f).at("deleted") == true);
  CHECK(check_purpose("fine-tune").ok());
  CHECK(check_purpose("model").ok());
  const Status batch = check_purpose("batch");
  CHECK(batch.code() == Code::kInvalidArgument);
  CHECK(batch.param() == "purpose");
}

}  // namespace
}  // namespace mh::api
