// mhctl as a user runs it, against a real daemon.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <fstream>

#include "platform/base/crypto.h"
#include "sdk/include/macrohard/macrohard.h"
#include "tests/integration/licensed_platform.h"

namespace mh::test {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("mhctl version names the tool, its SDK and the server") {
  ProcessResult client = run_process({mhctl_path().string(), "version", "--client"});
  CHECK(client.exit_code == 0);
  CHECK(contains(client.output, "libmacrohard"));
  CHECK(contains(client.output, "SDK API " + std::to_string(MH_API_VERSION_MAJOR) + "." +
                                    std::to_string(MH_API_VERSION_MINOR)));
  Daemon daemon;
  ProcessResult server = run_process({mhctl_path().string(), "--url", daemon.url(), "version"});
  CHECK(server.exit_code == 0);
  CHECK(contains(server.output, "server 0.1.0 at " + daemon.url() + " (API v1)"));
}

TEST_CASE("mhctl status: live and ready — more with an admin key — JSON on request") {
  Daemon daemon;
  ProcessResult plain = run_process({mhctl_path().string(), "--url", daemon.url(), "status"});
  CHECK(plain.exit_code == 0);
  CHECK(contains(plain.output, "ready    yes"));
  CHECK_FALSE(contains(plain.output, "store"));
  ProcessResult admin = run_process({mhctl_path().string(), "status"},
                                    {{"MH_URL", daemon.url()}, {"MH_API_KEY", daemon.admin_key()}});
  CHECK(admin.exit_code == 0);
  CHECK(contains(admin.output, "store    sqlite, schema "));
  CHECK(contains(admin.output, "devices"));
  ProcessResult json =
      run_process({mhctl_path().string(), "--url", daemon.url(), "--json", "status"});
  CHECK(json.exit_code == 0);
  CHECK(contains(json.output, R"("ready":true)"));
  ProcessResult wrong_key = run_process(
      {mhctl_path().string(), "--url", daemon.url(), "--api-key", "mh_admin_wrong", "status"});
  CHECK(wrong_key.exit_code == 1);
  CHECK(contains(wrong_key.output, "unauthenticated, HTTP 401, request req_"));
}

TEST_CASE("mhctl against nothing fails with exit 1 and says why") {
  ProcessResult r = run_process(
      {mhctl_path().string(), "--url", "http://127.0.0.1:1", "--retries", "0", "status"});
  CHECK(r.exit_code == 1);
  CHECK(contains(r.output, "connecting to http://127.0.0.1:1 failed"));
  ProcessResult usage = run_process({mhctl_path().string(), "no-such-command"});
  CHECK(usage.exit_code != 0);
}

TEST_CASE("mhctl certs writes a key only its owner reads, and never overwrites") {
  TempDir dir;
  ProcessResult made = run_process(
      {mhctl_path().string(), "certs", "--out-dir", dir.path().string(), "--days", "30"});
  REQUIRE(made.exit_code == 0);
  struct stat key {};
  REQUIRE(::stat((dir.path() / "server.key").c_str(), &key) == 0);
  CHECK((key.st_mode & 0777) == 0600);
  CHECK(contains(read_file(dir.path() / "server.crt"), "BEGIN CERTIFICATE"));
  std::string before = read_file(dir.path() / "server.key");
  ProcessResult again =
      run_process({mhctl_path().string(), "certs", "--out-dir", dir.path().string()});
  CHECK(again.exit_code == 1);
  CHECK(contains(again.output, "exists"));
  CHECK(read_file(dir.path() / "server.key") == before);
  ProcessResult openssl =
      run_process({"/usr/bin/openssl", "x509", "-in", (dir.path() / "server.crt").string(),
                   "-noout", "-ext", "subjectAltName"});
  CHECK(contains(openssl.output, "DNS:localhost"));
  CHECK(contains(openssl.output, "IP Address:127.0.0.1"));
}

}  // namespace
}  // namespace mh::test

namespace mh::test {
namespace {

TEST_CASE("mhctl license: keygen, issue, inspect, verify, then install and revoke on a daemon") {
  TempDir dir;
  auto mhctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), mhctl_path().string());
    return run_process(args);
  };
  const std::string out = dir.path().string();
  ProcessResult keygen = mhctl({"license", "keygen", "--key-id", "staff-2026", "--out-dir", out});
  REQUIRE_MESSAGE(keygen.exit_code == 0, keygen.output);
  struct stat key {};
  REQUIRE(::stat((dir.path() / "staff-2026.key").c_str(), &key) == 0);
  CHECK((key.st_mode & 0777) == 0600);
  CHECK(mhctl({"license", "keygen", "--key-id", "staff-2026", "--out-dir", out}).exit_code == 1);
  CHECK(mhctl({"license", "keygen", "--key-id", "Bad Id", "--out-dir", out}).exit_code == 1);

  const std::string priv = out + "/staff-2026.key", pub = out + "/staff-2026.pub";
  const std::string lic = out + "/acme.lic";
  std::ofstream(out + "/spec.json") << R"({"id":"lic_spec","licensee":"Acme Corp","tenant":"acme",
    "not_before":1700000000,"expires_at":4102444800,"grace_seconds":0,"features":["train"],
    "limits":{"max_gpus":8,"gpu_hours_per_month":10,"max_deployments":1,"max_model_params":1,
    "seats":2},"pools":[]})";
  ProcessResult issued =
      mhctl({"license", "issue", "--key", priv, "--spec", out + "/spec.json", "--out", lic});
  REQUIRE_MESSAGE(issued.exit_code == 0, issued.output);
  std::ofstream(out + "/bad.json") << R"({"licensee":"x"})";
  ProcessResult bad_spec = mhctl({"license", "issue", "--key", priv, "--spec", out + "/bad.json"});
  CHECK(bad_spec.exit_code == 1);
  CHECK(contains(bad_spec.output, "missing field"));

  ProcessResult inspect = mhctl({"license", "inspect", lic, "--public-key", pub});
  CHECK(inspect.exit_code == 0);
  CHECK(contains(inspect.output, "license     lic_spec"));
  CHECK(contains(inspect.output, "seats 2"));
  CHECK(contains(inspect.output, "verdict     valid"));
  ProcessResult unchecked = mhctl({"license", "inspect", lic});
  CHECK(contains(unchecked.output, "signature   not checked"));
  CHECK(mhctl({"license", "verify", lic, "--public-key", pub}).exit_code == 0);
  ProcessResult other = mhctl({"license", "keygen", "--key-id", "other", "--out-dir", out});
  REQUIRE(other.exit_code == 0);
  ProcessResult wrong = mhctl({"license", "verify", lic, "--public-key", out + "/other.pub"});
  CHECK(wrong.exit_code == 1);
  CHECK(contains(wrong.output, "not a trusted key"));

  Daemon daemon(with_args({"--license-public-key", pub}));
  auto admin = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {mhctl_path().string(), "--url", daemon.url(), "--api-key",
                               daemon.admin_key(), "admin"});
    return run_process(args);
  };
  ProcessResult installed = admin({"license", "install", lic});
  CHECK_MESSAGE(installed.exit_code == 0, installed.output);
  CHECK(contains(installed.output, "installed lic_spec for Acme Corp (tenant acme), valid"));
  ProcessResult listed = admin({"license", "list"});
  CHECK(contains(listed.output, "lic_spec"));
  ProcessResult revoked = admin({"license", "revoke", "lic_spec", "--reason", "ended"});
  CHECK(revoked.exit_code == 0);
  CHECK(contains(revoked.output, "revoked lic_spec (tenant acme): ended"));
  CHECK(contains(admin({"license", "show", "lic_spec"}).output, R"("status":"revoked")"));
  ProcessResult again = admin({"license", "install", lic});
  CHECK(again.exit_code == 1);
  CHECK(contains(again.output, "cannot be installed again"));
  ProcessResult audit = admin({"audit", "list"});
  CHECK(contains(audit.output, "license.revoke"));
  CHECK(admin({"audit", "verify"}).exit_code == 0);
}

}  // namespace
}  // namespace mh::test

namespace mh::test {
namespace {

TEST_CASE("mhctl admin tenant and mhctl keys: a tenant's life as staff and its owner see it") {
  Daemon daemon;
  auto run = [&](const std::string& key, std::vector<std::string> args) {
    args.insert(args.begin(), {mhctl_path().string(), "--url", daemon.url(), "--api-key", key});
    return run_process(args);
  };
  const std::string admin = daemon.admin_key();
  ProcessResult created = run(admin, {"admin", "tenant", "create", "acme", "--name", "Acme Corp",
                                      "--rate-limit-rps", "100"});
  CHECK_MESSAGE(created.exit_code == 0, created.output);
  CHECK(contains(run(admin, {"admin", "tenant", "list"}).output, "Acme Corp"));
  ProcessResult key = run(admin, {"admin", "tenant", "key", "acme"});
  REQUIRE(key.exit_code == 0);
  std::string owner = key.output.substr(key.output.rfind("mh_live_"));
  owner = owner.substr(0, owner.find('\n'));
  ProcessResult made = run(owner, {"keys", "create", "--name", "ci", "--role", "viewer"});
  CHECK(made.exit_code == 0);
  CHECK(contains(made.output, "viewer key key_"));
  ProcessResult listed = run(owner, {"keys", "list"});
  CHECK(contains(listed.output, "ci"));
  CHECK(contains(listed.output, "viewer"));
  CHECK(run(admin, {"admin", "tenant", "suspend", "acme", "--reason", "unpaid"}).exit_code == 0);
  ProcessResult refused = run(owner, {"keys", "list"});
  CHECK(refused.exit_code == 1);
  CHECK(contains(refused.output, "tenant 'acme' is suspended: unpaid"));
  CHECK(run(admin, {"admin", "tenant", "resume", "acme"}).exit_code == 0);
  CHECK(run(owner, {"keys", "list"}).exit_code == 0);
  CHECK(run(admin, {"admin", "tenant", "create", "acme"}).exit_code == 1);  // exists
}

TEST_CASE("mhctl files: upload with a progress bar, list, download, delete") {
  LicensedPlatform p;
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  const auto source = p.dir.path() / "weights.bin";
  std::string content(6'000'000, 'w');
  for (size_t i = 0; i < content.size(); i += 4096) content[i] = static_cast<char>('a' + i % 26);
  std::ofstream(source, std::ios::binary) << content;

  ProcessResult up = run_process({mhctl_path().string(), "files", "upload", source.string(),
                                  "--purpose", "model", "--progress", "always"},
                                 env);
  REQUIRE_MESSAGE(up.exit_code == 0, up.output);
  CHECK(contains(up.output, "weights.bin 100% [########################]"));
  CHECK(contains(up.output, "5.7 MiB / 5.7 MiB"));
  CHECK(contains(up.output, "uploaded file-"));
  CHECK(contains(up.output, "sha256 " + sha256_hex(content)));
  const size_t at = up.output.find("uploaded ") + 9;
  const std::string id = up.output.substr(at, up.output.find(':', at) - at);

  ProcessResult list = run_process({mhctl_path().string(), "files", "list"}, env);
  CHECK(list.exit_code == 0);
  CHECK(contains(list.output, id));
  CHECK(contains(list.output, "weights.bin"));
  // Without a terminal, and by default, no bar.
  ProcessResult quiet = run_process({mhctl_path().string(), "files", "download", id, "--out",
                                     (p.dir.path() / "copy.bin").string()},
                                    env);
  REQUIRE_MESSAGE(quiet.exit_code == 0, quiet.output);
  CHECK_FALSE(contains(quiet.output, "%"));
  CHECK(read_small_file(p.dir.path() / "copy.bin", 10'000'000).value() == content);

  ProcessResult other =
      run_process({mhctl_path().string(), "files", "get", id},
                  {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("globex")}});
  CHECK(other.exit_code == 1);
  CHECK(contains(other.output, "not_found, HTTP 404"));

  ProcessResult del = run_process({mhctl_path().string(), "files", "delete", id}, env);
  CHECK(del.exit_code == 0);
  CHECK(contains(del.output, "deleted " + id));
  ProcessResult missing = run_process({mhctl_path().string(), "files", "upload",
                                       (p.dir.path() / "nope").string(), "--purpose", "model"},
                                      env);
  CHECK(missing.exit_code != 0);
}

}  // namespace
}  // namespace mh::test
