// The platform's own routes: /healthz (the process is up), /readyz (it can serve: store and
// blobs answer, not stopping), /metrics, GET /v1/version, and GET /v1/admin/status.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "platform/api/transport.h"
#include "platform/blobs/blob_store.h"
#include "platform/engine/devices.h"
#include "platform/store/database.h"

namespace mh::api {

// The API versions this server answers; /v1/version lists them.
inline constexpr const char* kApiVersions[] = {"v1"};

struct SystemContext {
  store::Database* db = nullptr;
  blobs::BlobStore* blobs = nullptr;
  std::filesystem::path data_dir;
  int64_t started_at = 0;  // Unix seconds
  engine::DeviceProbe devices;
  std::function<size_t()> open_connections;
  std::function<bool()> stopping;
  bool tls = false;
};

void add_system_routes(Router& router, HttpMetrics& metrics, const SystemContext& context);

}  // namespace mh::api
