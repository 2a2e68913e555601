// The SDK's typed calls (API 1.2) against a real daemon: files streamed from and to disk with
// progress and cancellation, the caller's tenant, keys and usage, and the staff calls.
#include <doctest/doctest.h>

#include <fstream>
#include <macrohard/macrohard.hpp>

#include "platform/base/crypto.h"
#include "tests/integration/licensed_platform.h"

namespace mh::test {
namespace {

namespace fs = std::filesystem;

macrohard::Client client_with(const LicensedPlatform& p, const std::string& key) {
  return macrohard::Client(macrohard::ClientOptions()
                               .base_url(p.daemon->url())
                               .api_key(key)
                               .max_retries(0)
                               .request_timeout(std::chrono::seconds(30)));
}

// A file of `size` bytes of a repeating pattern; returns its SHA-256.
std::string make_file(const fs::path& path, size_t size) {
  std::string content(size, '\0');
  for (size_t i = 0; i < size; ++i) content[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  std::ofstream(path, std::ios::binary) << content;
  return hex_encode(sha256(content));
}

// Files in a directory (to see that nothing partial was left there).
size_t entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

macrohard::Code code_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const macrohard::Error& e) {
    return e.code();
  }
  return macrohard::Code::ok;
}

TEST_CASE("SDK files: a streamed upload and download with progress, list, get and delete") {
  LicensedPlatform p;
  auto acme = client_with(p, p.owners.at("acme"));
  const fs::path source = p.dir.path() / "weights.bin";
  const std::string digest = make_file(source, 5'000'000);  // several transfer chunks

  std::vector<std::pair<uint64_t, uint64_t>> seen;
  macrohard::File f = acme.upload_file(source, "model", [&](uint64_t done, uint64_t total) {
    seen.emplace_back(done, total);
    return true;
  });
  CHECK(f.id.starts_with("file-"));
  CHECK(f.filename == "weights.bin");
  CHECK(f.purpose == "model");
  CHECK(f.bytes == 5'000'000);
  CHECK(f.sha256 == digest);
  REQUIRE(seen.size() >= 3);
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].first > seen[i - 1].first);
  CHECK(seen.back().first == seen.back().second);  // ends at the total (file plus framing)
  CHECK(seen.back().second > 5'000'000);

  auto page = acme.list_files();
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].id == f.id);
  CHECK(acme.list_files("fine-tune").items.empty());
  CHECK(acme.get_file(f.id).sha256 == digest);

  const fs::path copy = p.dir.path() / "out" / "copy.bin";
  fs::create_directories(copy.parent_path());
  uint64_t last_done = 0, last_total = 0;
  acme.download_file(f.id, copy, [&](uint64_t done, uint64_t total) {
    last_done = done;
    last_total = total;
    return true;
  });
  CHECK(last_done == 5'000'000);
  CHECK(last_total == 5'000'000);
  CHECK(hex_encode(sha256(read_small_file(copy, 10'000'000).value())) == digest);
  CHECK(entries(copy.parent_path()) == 1);  // no temporary left beside it

  // Another tenant's id is not found, exactly like a missing one.
  auto globex = client_with(p, p.owners.at("globex"));
  CHECK(code_of([&] { globex.get_file(f.id); }) == macrohard::Code::not_found);
  CHECK(code_of([&] { globex.delete_file(f.id); }) == macrohard::Code::not_found);
  CHECK(code_of([&] { globex.download_file(f.id, p.dir.path() / "stolen.bin"); }) ==
        macrohard::Code::not_found);
  CHECK_FALSE(fs::exists(p.dir.path() / "stolen.bin"));

  acme.delete_file(f.id);
  CHECK(code_of([&] { acme.get_file(f.id); }) == macrohard::Code::not_found);
  CHECK(acme.list_files().items.empty());
}

TEST_CASE("SDK files: cancelled transfers leave nothing, and bad files are refused clearly") {
  LicensedPlatform p;
  auto acme = client_with(p, p.owners.at("acme"));
  const fs::path source = p.dir.path() / "big.bin";
  make_file(source, 8'000'000);

  // Cancelled after the first chunk: no file record and no blob on the server.
  int calls = 0;
  CHECK(code_of([&] {
          acme.upload_file(source, "model", [&](uint64_t, uint64_t) { return ++calls < 2; });
        }) == macrohard::Code::cancelled);
  CHECK(calls == 2);
  CHECK(acme.list_files().items.empty());

  // An exception thrown by the callback cancels too, and comes back out unchanged.
  CHECK_THROWS_AS(acme.upload_file(source, "model",
                                   [](uint64_t, uint64_t) -> bool { throw std::logic_error("x"); }),
                  std::logic_error);
  CHECK(acme.list_files().items.empty());

  // A cancelled download leaves no file at the destination, nor a temporary beside it.
  macrohard::File f = acme.upload_file(source, "model");
  const fs::path dir = p.dir.path() / "downloads";
  fs::create_directories(dir);
  CHECK(code_of([&] {
          acme.download_file(f.id, dir / "part.bin", [](uint64_t, uint64_t) { return false; });
        }) == macrohard::Code::cancelled);
  CHECK(entries(dir) == 0);
  // The client is still usable after the cut-off connection.
  CHECK(acme.list_files().items.size() == 1);

  // A malformed JSONL file: the error names the line.
  const fs::path bad = p.dir.path() / "train.jsonl";
  std::ofstream(bad) << "{\"prompt\":\"a\",\"completion\":\"b\"}\n{not json}\n";
  try {
    acme.upload_file(bad, "fine-tune");
    FAIL("a malformed JSONL file was accepted");
  } catch (const macrohard::Error& e) {
    CHECK(e.http_status() == 400);
    CHECK(std::string(e.what()).find("line 2") != std::string::npos);
  }
  CHECK(code_of([&] { acme.upload_file(p.dir.path() / "missing.bin", "model"); }) ==
        macrohard::Code::not_found);
  CHECK(code_of([&] { acme.upload_file(source, "nonsense"); }) ==
        macrohard::Code::invalid_argument);
  CHECK(acme.list_files().items.size() == 1);
}

TEST_CASE("SDK keys, tenant, usage and staff calls — a quota refusal arrives before the body") {
  LicensedPlatform p;
  auto admin = client_with(p, p.daemon->admin_key());
  auto acme = client_with(p, p.owners.at("acme"));

  macrohard::Tenant me = acme.tenant();
  CHECK(me.id == "acme");
  CHECK(me.raw.string("key.role") == "owner");
  CHECK(me.raw.boolean("license.in_force"));

  macrohard::ApiKey dev = acme.create_key("ci", "developer");
  CHECK(dev.role == "developer");
  CHECK(dev.secret.starts_with("mh_live_"));
  auto keys = acme.list_keys();
  CHECK(keys.items.size() == 2);
  for (const auto& k : keys.items) CHECK(k.secret.empty());  // shown once, at creation
  auto developer = client_with(p, dev.secret);
  CHECK(developer.tenant().raw.string("key.role") == "developer");
  CHECK(code_of([&] { developer.list_keys(); }) == macrohard::Code::permission_denied);
  CHECK(acme.revoke_key(dev.id).revoked_at.has_value());
  CHECK(code_of([&] { developer.tenant(); }) == macrohard::Code::unauthenticated);

  // Usage: the stored bytes of an upload show up by subject.
  const fs::path source = p.dir.path() / "small.bin";
  make_file(source, 1000);
  macrohard::File f = acme.upload_file(source, "model");
  macrohard::UsageQuery query;
  query.bucket_width = "total";
  query.by_subject = true;
  macrohard::Usage usage = acme.usage(query);
  CHECK(usage.tenant == "acme");
  REQUIRE_FALSE(usage.lines.empty());
  CHECK(usage.lines[0].subject_id == f.id);
  CHECK(usage.totals.count("stored_bytes") == 1);
  std::string csv = admin.admin_export_usage("acme");
  CHECK(csv.find(f.id) != std::string::npos);

  // Staff: tenants, limits, keys, suspension.
  macrohard::Tenant initech = admin.admin_create_tenant("initech", "Initech");
  CHECK(initech.name == "Initech");
  CHECK(admin.admin_list_tenants().items.size() == 3);
  CHECK(admin.admin_get_tenant("initech").raw.string("license.reason") == "no license installed");
  macrohard::ApiKey owner = admin.admin_create_tenant_key("initech");
  CHECK(owner.role == "owner");
  CHECK(code_of([&] { admin.admin_get_tenant("nobody"); }) == macrohard::Code::not_found);

  macrohard::TenantLimits limits;
  limits.storage_limit_bytes = 100'000;
  macrohard::Tenant limited = admin.admin_set_tenant_limits("acme", limits);
  CHECK(limited.storage_limit_bytes == 100'000);
  CHECK(limited.rate_limit_burst == me.rate_limit_burst);  // left as it was
  const fs::path big = p.dir.path() / "big.bin";
  make_file(big, 3'000'000);
  int progress_calls = 0;
  try {
    acme.upload_file(big, "model", [&](uint64_t, uint64_t) { return ++progress_calls > 0; });
    FAIL("an upload over the quota was accepted");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::payload_too_large);
    CHECK(std::string(e.what()).find("storage quota") != std::string::npos);
  }
  CHECK(progress_calls == 0);  // refused on its declared length, before any of the body

  admin.admin_suspend_tenant("acme", "unpaid invoice");
  CHECK(code_of([&] { acme.list_files(); }) == macrohard::Code::permission_denied);
  CHECK(admin.admin_resume_tenant("acme").suspended_at == std::nullopt);
  CHECK(acme.list_files().items.size() == 1);
}

}  // namespace
}  // namespace mh::test
