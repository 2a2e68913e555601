// A real daemon trusting a staff signing key, with licensed tenants "acme" and "globex" and an
// owner key for each: the starting point of tests of tenant-scoped features.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "licensing/license.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "tests/support/harness.h"

namespace mh::test {

// Runs `script` of tests/integration/openai_client with node and `args`: the official openai
// client against a platform (`env` names it), installed there by scripts/test (npm ci).
inline ProcessResult run_openai_client(const std::string& script, std::vector<std::string> args,
                                       const std::map<std::string, std::string>& env,
                                       std::chrono::seconds timeout) {
  const std::filesystem::path client_dir = source_dir() / "tests/integration/openai_client";
  const std::filesystem::path node = find_program("node");
  REQUIRE_MESSAGE(!node.empty(), "node is needed: scripts/setup installs it");
  REQUIRE_MESSAGE(std::filesystem::exists(client_dir / "node_modules/openai/package.json"),
                  "the openai client is not installed: scripts/test runs npm ci in " << client_dir);
  args.insert(args.begin(), {node.string(), (client_dir / script).string()});
  return run_process(args, env, timeout);
}

struct LicensedPlatform {
  TempDir dir;
  licensing::PrivateKey key = licensing::generate_key("staff").value();
  std::unique_ptr<Daemon> daemon;
  DaemonOptions options;
  std::map<std::string, std::string> owners;  // tenant -> owner API key
  int relicensed_ = 0;

  explicit LicensedPlatform(std::vector<std::string> extra = {}) {
    namespace json = boost::json;
    auto pub = dir.path() / "staff.pub";
    REQUIRE(write_new_file(pub, licensing::encode_public_key(key.public_key().value()), 0644).ok());
    std::vector<std::string> args = {"--license-public-key", pub.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    options = with_args(args);
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
  // Kills the daemon with SIGKILL and starts a new one on the same data directory.
  void kill_and_restart() {
    daemon->stop(SIGKILL);
    daemon = std::make_unique<Daemon>(options);
  }

  // Installs a new license for `tenant` with these features and limits (replacing its license).
  void relicense(const std::string& tenant, std::vector<std::string> features,
                 licensing::Limits limits) {
    namespace json = boost::json;
    licensing::LicenseTerms t;
    t.id = "lic_" + tenant + "_" + std::to_string(++relicensed_);
    t.licensee = tenant;
    t.tenant = tenant;
    t.issued_at = t.not_before = unix_seconds() - 60;
    t.expires_at = unix_seconds() + 86400;
    t.features = {features.begin(), features.end()};
    t.limits = limits;
    std::string text = licensing::issue_license(t, key).value();
    REQUIRE(admin("POST", "/v1/admin/licenses", json::serialize(json::object{{"license", text}}))
                .status == 201);
  }

  static constexpr const char* kBoundary = "mhBoundary7d1f";
  // The request head and the multipart frame around a file's content.
  static std::pair<std::string, std::string> frame(const std::string& purpose,
                                                   const std::string& filename) {
    const std::string b = kBoundary;
    std::string before = "--" + b + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n" +
                         purpose + "\r\n--" + b +
                         "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
                         filename + "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    return {before, "\r\n--" + b + "--\r\n"};
  }
  std::string head(const std::string& tenant, uint64_t length) const {
    return "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + owners.at(tenant) +
           "\r\nContent-Type: multipart/form-data; boundary=" + kBoundary +
           "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  }
  RawResponse upload(const std::string& tenant, const std::string& purpose,
                     const std::string& filename, const std::string& content) {
    auto [before, after] = frame(purpose, filename);
    RawConnection conn(daemon->port());
    conn.send(head(tenant, before.size() + content.size() + after.size()) + before + content +
              after);
    auto response = conn.read_response(std::chrono::seconds(30));
    REQUIRE(response);
    return *response;
  }
  RawResponse as(const std::string& tenant, const std::string& method, const std::string& path,
                 const std::string& body) {
    return http_request(
        daemon->port(), method, path, body,
        {{"Authorization", "Bearer " + owners.at(tenant)}, {"Content-Type", "application/json"}});
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
