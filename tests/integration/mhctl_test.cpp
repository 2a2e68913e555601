// mhctl as a user runs it, against a real daemon.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "sdk/include/macrohard/macrohard.h"
#include "tests/support/harness.h"

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
