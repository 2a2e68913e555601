// `mh-worker serve`: an inference replica. It loads one model and answers OpenAI-compatible
// /v1/completions and /v1/chat/completions over HTTP on the loopback, streaming (server-sent
// events) or not. Every request joins one running DecodeBatch (continuous batching); a request
// whose client goes away leaves the batch at the next step.
//
// The daemon starts replicas through the executor and relays tenants' requests to them. It
// passes a secret in MH_REPLICA_TOKEN that every request must bear, and the tenant's name in an
// X-Mh-Tenant header; the replica reports on its events channel that it is ready (and on which
// port), the tokens each request used, and its counters. A request may name a LoRA adapter of
// the model (ServeOptions::adapter_roots): many adapters share one replica.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "platform/worker/device.h"

namespace mh::worker {

struct ServeOptions {
  std::string model_dir;
  std::string model_name;  // the "model" responses name; the directory's name by default
  std::string host = "127.0.0.1";
  uint16_t port = 0;       // 0: any free port, reported on stdout and the events channel
  std::string token;       // required bearer token; empty: none
  int64_t max_batch = 64;  // sequences decoding at once; more wait their turn
  DeviceOptions compute;   // the backend it decodes on
  // LoRA adapters: a request naming one (X-Mh-Adapter, a directory under one of these roots)
  // decodes through it, beside requests for others and for the base in the same batch. At most
  // max_adapters stay loaded, the least recently used going first; one idle for
  // adapter_idle_seconds goes too.
  std::vector<std::string> adapter_roots;
  int64_t max_adapters = 8;
  // Prompts' KV caches kept for later prompts that begin alike (engine::PrefixCache).
  int64_t prefix_cache_bytes = int64_t{256} << 20;
  int64_t adapter_idle_seconds = 600;
};

// Runs until SIGTERM or SIGINT; returns the process's exit status.
int serve(const ServeOptions& options);

}  // namespace mh::worker
