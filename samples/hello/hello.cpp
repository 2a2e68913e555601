// hello: connect to a Macrohard platform and report what it is and whether it is ready.
//
//   MH_URL=http://127.0.0.1:8080 ./hello
//   MH_URL=https://macrohard.example.com MH_CA_FILE=ca.pem MH_API_KEY=mh_admin_… ./hello
#include <cstdio>
#include <cstdlib>
#include <macrohard/macrohard.hpp>
#include <string>

static std::string env(const char* name, const char* fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

int main() {
  // Refuse to run against a library older than the headers we were built with.
  if (!macrohard::api_compatible()) {
    std::fprintf(stderr, "libmacrohard %s is too old for this program\n",
                 macrohard::library_version().c_str());
    return 2;
  }
  try {
    macrohard::ClientOptions options;
    options.base_url(env("MH_URL", "http://127.0.0.1:8080")).user_agent("hello/1.0");
    if (!env("MH_CA_FILE").empty()) options.ca_file(env("MH_CA_FILE"));
    if (!env("MH_API_KEY").empty()) options.api_key(env("MH_API_KEY"));
    macrohard::Client client(options);

    macrohard::ServerInfo info = client.server_info();
    std::printf("connected to Macrohard %s (SDK %s)\n", info.version.c_str(),
                macrohard::library_version().c_str());
    if (!info.compatible) {
      std::fprintf(stderr, "the server does not speak this SDK's API version\n");
      return 1;
    }
    macrohard::Health health = client.health();
    std::printf("live: %s, ready: %s%s\n", health.live ? "yes" : "no", health.ready ? "yes" : "no",
                health.ready ? "" : (" (" + health.detail + ")").c_str());
    if (!env("MH_API_KEY").empty()) {
      std::printf("admin status: %s\n", client.request_json("GET", "/v1/admin/status").c_str());
    }
    return health.ready ? 0 : 1;
  } catch (const macrohard::Error& e) {
    std::fprintf(stderr, "error: %s (%s, HTTP %d, request %s)\n", e.what(), e.code_name(),
                 e.http_status(), e.request_id().empty() ? "-" : e.request_id().c_str());
    return 1;
  }
}
