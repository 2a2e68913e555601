// A real daemon trusting a staff signing key, with licensed tenants "acme" and "globex" and an
// owner key for each: the starting point of tests of tenant-scoped features.
#pragma once

#include <boost/json.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "licensing/license.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "tests/support/harness.h"

namespace mh::test {

struct LicensedPlatform {
  TempDir dir;
  licensing::PrivateKey key = licensing::generate_key("staff").value();
  std::unique_ptr<Daemon> daemon;
  std::map<std::string, std::string> owners;  // tenant -> owner API key

  explicit LicensedPlatform(std::vector<std::string> extra = {}) {
    namespace json = boost::json;
    auto pub = dir.path() / "staff.pub";
    REQUIRE(write_new_file(pub, licensing::encode_public_key(key.public_key().value()), 0644).ok());
    std::vector<std::string> args = {"--license-public-key", pub.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    DaemonOptions options = with_args(args);
    options.data_dir = dir.path() / "data";
    daemon = std::make_unique<Daemon>(options);
    for (const char* tenant : {"acme", "globex"}) {
      licensing::LicenseTerms t;
      t.id = std::string("lic_") + tenant;
      t.licensee = tenant;
      t.tenant = tenant;
      t.issued_at = t.not_before = unix_seconds() - 60;
      t.expires_at = unix_seconds() + 86400;
      t.features = {"train"};
      t.limits.seats = 1;
      std::string text = licensing::issue_license(t, key).value();
      REQUIRE(admin("POST", "/v1/admin/licenses", json::serialize(json::object{{"license", text}}))
                  .status == 201);
      RawResponse k = admin("POST", "/v1/admin/tenants/" + std::string(tenant) + "/keys", "{}");
      REQUIRE(k.status == 201);
      owners[tenant] = std::string(json::parse(k.body).at("key").as_string());
    }
  }
  RawResponse admin(const std::string& method, const std::string& path, const std::string& body) {
    return http_request(
        daemon->port(), method, path, body,
        {{"Authorization", "Bearer " + daemon->admin_key()}, {"Content-Type", "application/json"}});
  }
  RawResponse as(const std::string& tenant, const std::string& method, const std::string& path) {
    return http_request(daemon->port(), method, path, "",
                        {{"Authorization", "Bearer " + owners.at(tenant)}});
  }
  // Regular files under the blob store.
  size_t blob_files() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() / "data/blobs")) {
      n += e.is_regular_file();
    }
    return n;
  }
};

}  // namespace mh::test
