#include "platform/api/system/routes.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "platform/base/time.h"
#include "platform/base/version.h"
#include "sdk/include/macrohard/macrohard.h"

namespace mh::api {

namespace json = boost::json;

namespace {

json::object version_json() {
  json::array versions;
  for (const char* v : kApiVersions) versions.emplace_back(v);
  return {{"object", "version"},
          {"server", "macrohardd"},
          {"version", MACROHARD_VERSION},
          {"api_versions", std::move(versions)},
          {"sdk_api_version", fmt::format("{}.{}", MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR)}};
}

// Each readiness check: "ok", or what is wrong.
json::object readiness(const SystemContext& context, bool* ready) {
  json::object checks;
  *ready = true;
  Status store = context.db->ping();
  checks["store"] = store.ok() ? "ok" : store.message();
  Status blobs = context.blobs->check_writable();
  checks["blobs"] = blobs.ok() ? "ok" : blobs.message();
  checks["accepting"] = context.stopping() ? "stopping" : "ok";
  *ready = store.ok() && blobs.ok() && !context.stopping();
  return checks;
}

}  // namespace

void add_system_routes(Router& router, HttpMetrics& metrics, const SystemContext& context) {
  // Pre-serialised: the liveness probe is the hottest, simplest route there is.
  router.add(
      "GET", "/healthz", Access::kPublic,
      [](Request&) { return Response::text(200, R"({"status":"ok"})", "application/json"); },
      Runs::kInline);

  router.add("GET", "/readyz", Access::kPublic, [&context](Request&) {
    bool ready = false;
    json::object checks = readiness(context, &ready);
    if (ready) return Response::json(200, json::object{{"status", "ready"}, {"checks", checks}});
    std::string failing;
    for (const auto& [name, value] : checks) {
      if (value != "ok")
        failing += fmt::format("{}{}: {}", failing.empty() ? "" : "; ", std::string_view(name),
                               value.as_string());
    }
    return Response::error(unavailable("not ready: " + failing));
  });

  router.add(
      "GET", "/metrics", Access::kPublic,
      [&metrics](Request&) {
        return Response::text(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
      },
      Runs::kInline);

  router.add(
      "GET", "/v1/version", Access::kPublic,
      [](Request&) { return Response::json(200, version_json()); }, Runs::kInline);

  router.add("GET", "/v1/admin/status", Access::kAdmin, [&context](Request&) {
    bool ready = false;
    json::object checks = readiness(context, &ready);
    json::array devices;
    for (const auto& d : context.devices.devices) {
      devices.push_back(json::object{
          {"index", d.index},
          {"name", d.name},
          {"memory_bytes", d.memory_bytes},
          {"compute_capability", fmt::format("{}.{}", d.compute_major, d.compute_minor)},
          {"pci_bus_id", d.pci_bus_id}});
    }
    json::object out = version_json();
    out["object"] = "admin.status";
    out["ready"] = ready;
    out["checks"] = std::move(checks);
    out["started_at"] = context.started_at;
    out["uptime_seconds"] = unix_seconds() - context.started_at;
    out["data_dir"] = context.data_dir.string();
    out["tls"] = context.tls;
    out["store"] = json::object{{"dialect", context.db->dialect()},
                                {"schema_version", context.db->schema_version()}};
    out["http"] = json::object{{"open_connections", context.open_connections()}};
    out["accelerators"] = json::object{{"cuda_built", context.devices.cuda_built},
                                       {"devices", std::move(devices)},
                                       {"note", context.devices.note}};
    return Response::json(200, out);
  });
}

}  // namespace mh::api
