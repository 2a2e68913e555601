// mhctl: the command-line tool for platform staff and tenants, built on the SDK.
//   mhctl version          this tool, its SDK, and the server
//   mhctl status           is the server live and ready; with an admin key, its status
//   mhctl certs            a self-signed TLS certificate and key for development
//   mhctl license …        keygen, issue, inspect, verify (offline)
//   mhctl admin …          tenant …, license install/list/show/revoke, audit verify/list
//   mhctl keys …           a tenant's own API keys
//   mhctl files …          a tenant's files: upload (streamed, progress bar), list, download…
//   mhctl usage            what the tenant used
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <macrohard/macrohard.hpp>

#include "licensing/license_cli.h"
#include "platform/base/version.h"
#include "platform/mhctl/admin_commands.h"
#include "platform/mhctl/certs.h"

namespace {

namespace json = boost::json;

struct Globals {
  std::string url = "http://127.0.0.1:8080";
  std::string api_key;
  std::string api_key_file;
  std::string ca_file;
  bool insecure = false;
  int64_t timeout_ms = 30'000;
  int retries = 2;
  bool json_output = false;
};

macrohard::Client make_client(const Globals& g) {
  macrohard::ClientOptions options;
  options.base_url(g.url)
      .request_timeout(std::chrono::milliseconds(g.timeout_ms))
      .connect_timeout(std::chrono::milliseconds(std::min<int64_t>(g.timeout_ms, 10'000)))
      .max_retries(g.retries)
      .user_agent(std::string("mhctl/") + MACROHARD_VERSION);
  std::string key = g.api_key;
  if (key.empty() && !g.api_key_file.empty()) {
    std::ifstream in(g.api_key_file);
    if (!in) throw std::runtime_error("cannot read the API key file " + g.api_key_file);
    std::getline(in, key);
  }
  if (!key.empty()) options.api_key(key);
  if (!g.ca_file.empty()) options.ca_file(g.ca_file);
  if (g.insecure) options.verify_tls(false);
  return macrohard::Client(options);
}

bool has_key(const Globals& g) { return !g.api_key.empty() || !g.api_key_file.empty(); }

int cmd_version(const Globals& g, bool client_only) {
  std::printf("mhctl %s\nlibmacrohard %s (SDK API %d.%d, library API %u.%u)\n", MACROHARD_VERSION,
              macrohard::library_version().c_str(), MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR,
              mh_api_version() >> 16, mh_api_version() & 0xffff);
  if (client_only) return 0;
  auto client = make_client(g);
  macrohard::ServerInfo info = client.server_info();
  std::string apis;
  for (const auto& v : info.api_versions) apis += (apis.empty() ? "" : ", ") + v;
  std::printf("server %s at %s (API %s)%s\n", info.version.c_str(), g.url.c_str(), apis.c_str(),
              info.compatible ? "" : " — not compatible with this SDK");
  return info.compatible ? 0 : 1;
}

int cmd_status(const Globals& g) {
  auto client = make_client(g);
  macrohard::Health health = client.health();
  macrohard::ServerInfo info = client.server_info();
  std::string admin;
  if (has_key(g)) admin = client.request_json("GET", "/v1/admin/status");
  if (g.json_output) {
    json::object out{{"url", g.url},
                     {"live", health.live},
                     {"ready", health.ready},
                     {"detail", health.detail},
                     {"version", info.version}};
    if (!admin.empty()) out["admin_status"] = json::parse(admin);
    std::cout << json::serialize(out) << "\n";
    return health.ready ? 0 : 1;
  }
  std::printf("server   %s\nversion  %s\nlive     %s\nready    %s%s\n", g.url.c_str(),
              info.version.c_str(), health.live ? "yes" : "no", health.ready ? "yes" : "no",
              health.ready ? "" : (" (" + health.detail + ")").c_str());
  if (!admin.empty()) {
    const json::object status = json::parse(admin).as_object();
    auto str = [&](const char* k) -> std::string {
      const json::value* v = status.if_contains(k);
      return v ? json::serialize(*v) : "?";
    };
    const auto& store = status.at("store").as_object();
    const auto& accel = status.at("accelerators").as_object();
    const auto& devices = accel.at("devices").as_array();
    std::printf(
        "uptime   %s s\ndata     %s\nstore    %s, schema %s\nhttp     %s open connections\n",
        str("uptime_seconds").c_str(), status.at("data_dir").as_string().c_str(),
        store.at("dialect").as_string().c_str(),
        json::serialize(store.at("schema_version")).c_str(),
        json::serialize(status.at("http").as_object().at("open_connections")).c_str());
    if (devices.empty()) {
      std::printf("devices  none: %s\n", accel.at("note").as_string().c_str());
    }
    for (const auto& d : devices) {
      const auto& o = d.as_object();
      std::printf("device   %s: %s, %.1f GiB, sm %s\n", json::serialize(o.at("index")).c_str(),
                  o.at("name").as_string().c_str(),
                  static_cast<double>(o.at("memory_bytes").to_number<uint64_t>()) / (1ull << 30),
                  o.at("compute_capability").as_string().c_str());
    }
  }
  return health.ready ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (!macrohard::api_compatible()) {
    std::fprintf(stderr, "mhctl: libmacrohard %s does not provide SDK API %d.%d\n",
                 macrohard::library_version().c_str(), MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR);
    return 2;
  }
  CLI::App app{"mhctl: operate and use a Macrohard platform", "mhctl"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--url", g.url, "the platform's base URL")
      ->envname("MH_URL")
      ->capture_default_str();
  app.add_option("--api-key", g.api_key, "API key (prefer MH_API_KEY or --api-key-file)")
      ->envname("MH_API_KEY");
  app.add_option("--api-key-file", g.api_key_file, "file whose first line is the API key")
      ->envname("MH_API_KEY_FILE");
  app.add_option("--ca-file", g.ca_file, "PEM CA certificates to trust for https")
      ->envname("MH_CA_FILE");
  app.add_flag("--insecure", g.insecure, "do not verify the server's TLS certificate");
  app.add_option("--timeout-ms", g.timeout_ms, "per-request timeout")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app.add_option("--retries", g.retries, "retries of failed safe requests")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_flag("--json", g.json_output, "print JSON instead of text");

  bool client_only = false;
  auto* version =
      app.add_subcommand("version", "show the versions of mhctl, its SDK and the server");
  version->add_flag("--client", client_only, "only this tool and its SDK; do not ask the server");

  app.add_subcommand("status",
                     "show whether the server is live and ready (more with an admin key)");

  mh::cli::CertRequest cert;
  std::string out_dir = ".";
  auto* certs =
      app.add_subcommand("certs", "make a self-signed TLS certificate and key for development");
  certs->add_option("--out-dir", out_dir, "where to write server.crt and server.key")
      ->capture_default_str();
  certs->add_option("--host", cert.hosts, "DNS names and IP addresses the certificate is for")
      ->capture_default_str();
  certs->add_option("--days", cert.days, "validity in days")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));

  int command_exit = -1;  // set by commands that run inside the parse (license …)
  mh::licensing::add_license_commands(app, &command_exit);
  mh::cli::add_admin_commands(
      app, [&g] { return make_client(g); }, &g.json_output, &command_exit);
  mh::cli::add_key_commands(
      app, [&g] { return make_client(g); }, &command_exit);
  mh::cli::add_file_commands(
      app, [&g] { return make_client(g); }, &g.json_output, &command_exit);
  mh::cli::add_model_commands(
      app, [&g] { return make_client(g); }, &g.json_output, &command_exit);
  mh::cli::add_job_commands(
      app, [&g] { return make_client(g); }, &g.json_output, &command_exit);
  mh::cli::add_deployment_commands(
      app, [&g] { return make_client(g); }, &g.json_output, &command_exit);

  CLI11_PARSE(app, argv == nullptr ? 0 : argc, argv);
  if (command_exit >= 0) return command_exit;

  try {
    if (version->parsed()) return cmd_version(g, client_only);
    if (app.got_subcommand("status")) return cmd_status(g);
    if (certs->parsed()) {
      std::filesystem::create_directories(out_dir);
      cert.cert_file = std::filesystem::path(out_dir) / "server.crt";
      cert.key_file = std::filesystem::path(out_dir) / "server.key";
      mh::Status status = mh::cli::make_self_signed(cert);
      if (!status.ok()) {
        std::fprintf(stderr, "mhctl certs: %s\n", status.message().c_str());
        return 1;
      }
      std::printf(
          "wrote %s and %s (valid %d days)\nserve with:  macrohardd --tls-cert %s --tls-key %s\n"
          "trust with:  mhctl --ca-file %s ...\n",
          cert.cert_file.c_str(), cert.key_file.c_str(), cert.days, cert.cert_file.c_str(),
          cert.key_file.c_str(), cert.cert_file.c_str());
      return 0;
    }
  } catch (const macrohard::Error& e) {
    std::fprintf(stderr, "mhctl: %s (%s", e.what(), e.code_name());
    if (e.http_status() != 0) std::fprintf(stderr, ", HTTP %d", e.http_status());
    if (!e.request_id().empty()) std::fprintf(stderr, ", request %s", e.request_id().c_str());
    std::fprintf(stderr, ")\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mhctl: %s\n", e.what());
    return 1;
  }
  return 0;
}
