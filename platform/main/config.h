// DaemonConfig: everything macrohardd is told at start, from (lowest to highest precedence) its
// defaults, a configuration file (TOML/INI, `--config`), MACROHARD_* environment variables,
// and command-line flags.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "platform/http/http_server.h"

namespace mh::daemon {

struct DaemonConfig {
  std::filesystem::path data_dir = "macrohard-data";  // holds all state: store, blobs, lock
  http::ServerOptions server;
  int threads = 0;  // I/O threads; 0 = one per core
  std::chrono::milliseconds shutdown_grace{20'000};
  std::string log_level = "info";
  std::string access_log = "stdout";     // "stdout", "off", or a file path
  std::filesystem::path port_file;       // written with the bound port once listening
  std::filesystem::path admin_key_file;  // the bootstrap admin key is also written here (0600)
  std::vector<std::string> license_public_keys;  // files; licenses must verify against one
  int64_t clock_tolerance_seconds = 300;   // how far the clock may step back before licensing stops
  int64_t lease_ttl_seconds = 300;         // default seat lease TTL
  uint64_t max_file_bytes = 8ull << 30;    // one uploaded file
  std::filesystem::path worker;            // mh-worker; empty: beside macrohardd
  int worker_threads = 0;                  // CPU threads per worker; 0: one per core
  bool worker_sandbox = true;              // contain workers (platform/executor/sandbox.h)
  uint64_t worker_memory_bytes = 0;        // a CPU worker's address space; 0: physical memory
  uint64_t worker_file_bytes = 0;          // the largest file a worker may write; 0: no limit
  int replica_max_batch = 64;              // sequences a replica decodes at once
  int replica_max_adapters = 8;            // LoRA adapters a replica keeps loaded
  int replica_prefix_cache_mb = 256;       // prompts' KV caches a replica keeps for reuse
  int deployment_queue = 1024;             // requests waiting on a deployment, all tenants
  int deployment_queue_per_tenant = 256;   // requests one tenant may have waiting on one
  int max_in_flight_per_tenant = 512;      // one tenant's requests in flight at once; 0: no cap
  int cpu_devices = 2;                     // CPU worker slots in the pool "default"
  // Pools of Slurm nodes: "NAME[@PARTITION]:NODE=GPUS[,NODE=GPUS...]".
  std::vector<std::string> slurm_pools;
  std::string slurm_conf;  // SLURM_CONF for the Slurm commands; empty: Slurm's default
  int64_t preemption_min_runtime_s = 300;  // a job runs at least this long before preemption
};

// Parses argv. Returns the exit code to leave with when the program should not run (after
// --help, --version or an error, already printed), or -1 to go on.
int parse_config(int argc, char** argv, DaemonConfig* config);

}  // namespace mh::daemon
