#include "platform/main/config.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "platform/api/files/protocol.h"
#include "platform/base/version.h"

namespace mh::daemon {
namespace {

// "127.0.0.1:8080", "[::1]:8080", ":8080" (all IPv4 interfaces).
bool parse_listen(const std::string& listen, std::string* host, uint16_t* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  std::string h = listen.substr(0, colon);
  if (h.starts_with('[') && h.ends_with(']')) h = h.substr(1, h.size() - 2);
  if (h.empty()) h = "0.0.0.0";
  int p = 0;
  try {
    size_t used = 0;
    p = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) return false;
  } catch (...) {
    return false;
  }
  if (p < 0 || p > 65535) return false;
  *host = h;
  *port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

int parse_config(int argc, char** argv, DaemonConfig* config) {
  CLI::App app{"macrohardd: the Macrohard platform daemon", "macrohardd"};
  app.set_version_flag("--version", MACROHARD_VERSION);
  app.set_config("--config", "", "configuration file (TOML: key = value, one per option)");
  app.option_defaults()->always_capture_default();

  std::string listen = "127.0.0.1:8080";
  int64_t idle_ms = config->server.idle_timeout.count();
  int64_t read_ms = config->server.read_timeout.count();
  int64_t write_ms = config->server.write_timeout.count();
  int64_t grace_ms = config->shutdown_grace.count();
  std::string data_dir = config->data_dir.string();
  std::string port_file, admin_key_file;

  app.add_option("--data-dir", data_dir, "directory holding all state")
      ->envname("MACROHARD_DATA_DIR");
  app.add_option("--listen", listen, "address:port to serve on (port 0 picks a free one)")
      ->envname("MACROHARD_LISTEN");
  app.add_option("--threads", config->threads, "I/O threads (0: one per core)")
      ->envname("MACROHARD_THREADS")
      ->check(CLI::Range(0, 1024));
  app.add_option("--handler-threads", config->server.handler_threads,
                 "threads for handlers that touch the store or the disk (0: twice the cores, "
                 "at least 4)")
      ->envname("MACROHARD_HANDLER_THREADS")
      ->check(CLI::Range(0, 1024));
  app.add_option("--tls-cert", config->server.tls_cert_file, "PEM certificate chain; enables TLS")
      ->envname("MACROHARD_TLS_CERT")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", config->server.tls_key_file, "PEM private key of --tls-cert")
      ->envname("MACROHARD_TLS_KEY")
      ->check(CLI::ExistingFile);
  app.add_option("--max-header-bytes", config->server.max_header_bytes, "request header limit")
      ->envname("MACROHARD_MAX_HEADER_BYTES")
      ->check(CLI::Range(1024, 1024 * 1024));
  app.add_option("--max-body-bytes", config->server.max_body_bytes, "JSON request body limit")
      ->envname("MACROHARD_MAX_BODY_BYTES")
      ->check(CLI::Range(uint64_t{1024}, uint64_t{1} << 32));
  app.add_option("--idle-timeout-ms", idle_ms, "close a kept-alive connection idle this long")
      ->envname("MACROHARD_IDLE_TIMEOUT_MS")
      ->check(CLI::Range(int64_t{10}, int64_t{3'600'000}));
  app.add_option("--read-timeout-ms", read_ms, "most time to receive one whole request")
      ->envname("MACROHARD_READ_TIMEOUT_MS")
      ->check(CLI::Range(int64_t{10}, int64_t{3'600'000}));
  app.add_option("--write-timeout-ms", write_ms, "most time to send one response")
      ->envname("MACROHARD_WRITE_TIMEOUT_MS")
      ->check(CLI::Range(int64_t{10}, int64_t{3'600'000}));
  app.add_option("--max-connections", config->server.max_connections, "open connections limit")
      ->envname("MACROHARD_MAX_CONNECTIONS")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("--max-connections-per-address", config->server.max_connections_per_address,
                 "open connections one client address may hold (0: no cap)");
  app.add_option("--shutdown-grace-ms", grace_ms,
                 "on SIGTERM, how long requests in flight may take to finish")
      ->envname("MACROHARD_SHUTDOWN_GRACE_MS")
      ->check(CLI::Range(int64_t{0}, int64_t{600'000}));
  app.add_option("--log-level", config->log_level, "trace, debug, info, warn, error")
      ->envname("MACROHARD_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--access-log", config->access_log, "stdout, off, or a file to append to")
      ->envname("MACROHARD_ACCESS_LOG");
  app.add_option("--port-file", port_file, "write the bound port here once listening")
      ->envname("MACROHARD_PORT_FILE");
  app.add_option("--admin-key-file", admin_key_file,
                 "also write the bootstrap admin key here (mode 0600) on first start")
      ->envname("MACROHARD_ADMIN_KEY_FILE");

  app.add_option("--license-public-key", config->license_public_keys,
                 "a trusted license-signing public key file (repeat for several: rotation)")
      ->envname("MACROHARD_LICENSE_PUBLIC_KEYS")
      ->delimiter(',')
      ->check(CLI::ExistingFile);
  app.add_option("--clock-tolerance-s", config->clock_tolerance_seconds,
                 "how far the clock may step back before license checks stop")
      ->envname("MACROHARD_CLOCK_TOLERANCE_S")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  app.add_option("--lease-ttl-s", config->lease_ttl_seconds, "default seat lease TTL")
      ->envname("MACROHARD_LEASE_TTL_S")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));

  std::string worker;
  app.add_option("--worker", worker, "the mh-worker program (default: beside macrohardd)")
      ->envname("MACROHARD_WORKER");
  app.add_option("--worker-threads", config->worker_threads,
                 "CPU threads per worker process (0: one per core)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--worker-sandbox", config->worker_sandbox,
                 "contain workers: Landlock, no network, seccomp, limits (true or false)")
      ->envname("MACROHARD_WORKER_SANDBOX");
  app.add_option("--worker-memory-bytes", config->worker_memory_bytes,
                 "a CPU worker's address space (0: the machine's physical memory)");
  app.add_option("--worker-file-bytes", config->worker_file_bytes,
                 "the largest file a worker may write (0: no limit)");
  app.add_option("--cpu-devices", config->cpu_devices,
                 "CPU worker slots in the pool \"default\": training jobs that run at once")
      ->envname("MACROHARD_CPU_DEVICES")
      ->check(CLI::Range(1, 4096));
  app.add_option("--slurm-pool", config->slurm_pools,
                 "a pool of Slurm nodes whose workers run as batch jobs: "
                 "NAME[@PARTITION]:NODE=GPUS[,NODE=GPUS...] (repeatable)");
  app.add_option("--slurm-conf", config->slurm_conf, "slurm.conf for the Slurm commands")
      ->envname("MACROHARD_SLURM_CONF");
  app.add_option("--preemption-min-runtime-s", config->preemption_min_runtime_s,
                 "how long a job runs before it may be preempted")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  app.add_option("--replica-max-batch", config->replica_max_batch,
                 "requests an inference replica decodes at once; more wait in per-tenant queues")
      ->check(CLI::Range(1, 4096));
  app.add_option("--replica-max-adapters", config->replica_max_adapters,
                 "LoRA adapters an inference replica keeps loaded, the most recently used")
      ->check(CLI::Range(1, 1024));
  app.add_option("--replica-prefix-cache-mb", config->replica_prefix_cache_mb,
                 "MiB of prompts' KV caches an inference replica keeps for later prompts that "
                 "begin alike (0: none)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--deployment-queue", config->deployment_queue,
                 "requests that may wait on one deployment, all tenants together")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--deployment-queue-per-tenant", config->deployment_queue_per_tenant,
                 "requests one tenant may have waiting on one deployment")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-in-flight-per-tenant", config->max_in_flight_per_tenant,
                 "requests one tenant may have in flight at once (0: no cap)")
      ->envname("MACROHARD_MAX_IN_FLIGHT_PER_TENANT")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--max-file-bytes", config->max_file_bytes, "largest uploaded file")
      ->envname("MACROHARD_MAX_FILE_BYTES")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 44));

  try {
    app.parse(argc, argv);
    if (!parse_listen(listen, &config->server.host, &config->server.port)) {
      throw CLI::ValidationError("--listen", "expected address:port, such as 127.0.0.1:8080");
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  config->data_dir = data_dir;
  config->worker = worker;
  config->port_file = port_file;
  config->admin_key_file = admin_key_file;
  config->server.idle_timeout = std::chrono::milliseconds(idle_ms);
  config->server.read_timeout = std::chrono::milliseconds(read_ms);
  config->server.write_timeout = std::chrono::milliseconds(write_ms);
  config->shutdown_grace = std::chrono::milliseconds(grace_ms);
  config->server.access_log = config->access_log != "off";
  config->server.server_name = std::string("macrohardd/") + MACROHARD_VERSION;
  config->server.max_upload_bytes = config->max_file_bytes + api::kMultipartAllowance;
  return -1;
}

}  // namespace mh::daemon
