#include "platform/main/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>

#include "licensing/entitlements.h"
#include "licensing/keys.h"
#include "licensing/trusted_clock.h"
#include "platform/api/audit/routes.h"
#include "platform/api/auth.h"
#include "platform/api/context.h"
#include "platform/api/deployments/routes.h"
#include "platform/api/files/routes.h"
#include "platform/api/jobs/routes.h"
#include "platform/api/keys/routes.h"
#include "platform/api/leases/routes.h"
#include "platform/api/licenses/routes.h"
#include "platform/api/models/routes.h"
#include "platform/api/pools/routes.h"
#include "platform/api/system/routes.h"
#include "platform/api/tenants/routes.h"
#include "platform/api/usage/routes.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "platform/base/version.h"
#include "platform/blobs/blob_store.h"
#include "platform/engine/devices.h"
#include "platform/http/http_server.h"
#include "platform/http/metrics.h"
#include "platform/http/router.h"
#include "platform/store/audit_log.h"
#include "platform/store/sqlite_database.h"

namespace mh::daemon {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// Holds an exclusive lock on the data directory for the life of the process, so two daemons
// can never share (and corrupt) one store.
class DataDirLock {
 public:
  Status acquire(const fs::path& dir) {
    fs::path path = dir / "macrohardd.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0)
      return internal_error(fmt::format("opening {}: {}", path.string(), strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {};
      ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
      return unavailable(fmt::format("another macrohardd (pid {}) is using the data directory {}",
                                     n > 0 ? std::string(pid, strcspn(pid, "\n")) : "unknown",
                                     dir.string()));
    }
    std::string me = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
      return internal_error(fmt::format("writing {}: {}", path.string(), strerror(errno)));
    }
    return {};
  }
  ~DataDirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

Status setup_logging(const DaemonConfig& config) {
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  if (config.access_log == "off") return {};
  spdlog::init_thread_pool(16384, 1);
  spdlog::sink_ptr sink;
  try {
    if (config.access_log == "stdout") {
      sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(config.access_log);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return invalid_argument(fmt::format("access log {}: {}", config.access_log, e.what()));
  }
  // Asynchronous so that I/O threads never wait on the log's disk; block rather than drop.
  auto logger = std::make_shared<spdlog::async_logger>("access", sink, spdlog::thread_pool(),
                                                       spdlog::async_overflow_policy::block);
  logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","log":"access",%v)",
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::info);
  spdlog::register_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
  return {};
}

// This machine's pools — "default" of CPU worker slots, "gpu" of its CUDA devices when it has
// any — and the Slurm pools configured ("NAME[@PARTITION]:NODE=GPUS[,NODE=GPUS...]").
Result<std::vector<api::PoolConfig>> pools_of(const DaemonConfig& config,
                                              const engine::DeviceProbe& probe) {
  std::vector<api::PoolConfig> pools;
  api::PoolConfig cpu;
  cpu.name = "default";
  cpu.nodes = {{"local", config.cpu_devices, 0}};
  pools.push_back(std::move(cpu));
  if (!probe.devices.empty()) {
    api::PoolConfig gpu;
    gpu.name = "gpu";
    gpu.nodes = {{"local", static_cast<int32_t>(probe.devices.size()), 0}};
    gpu.gpus = true;
    pools.push_back(std::move(gpu));
  }
  for (const std::string& spec : config.slurm_pools) {
    auto bad = [&](std::string_view why) {
      return invalid_argument(fmt::format(
          "--slurm-pool '{}': {} (expected NAME[@PARTITION]:NODE=GPUS[,NODE=GPUS...])", spec, why));
    };
    const size_t colon = spec.find(':');
    if (colon == std::string::npos || colon == 0) return bad("no pool name");
    api::PoolConfig p;
    p.name = spec.substr(0, colon);
    if (const size_t at = p.name.find('@'); at != std::string::npos) {
      p.slurm_options.partition = p.name.substr(at + 1);
      p.name = p.name.substr(0, at);
    }
    if (p.name.empty()) return bad("no pool name");
    for (const auto& existing : pools) {
      if (existing.name == p.name) return bad("a pool of that name exists");
    }
    p.gpus = true;
    p.slurm = true;
    if (!config.slurm_conf.empty()) p.slurm_options.env["SLURM_CONF"] = config.slurm_conf;
    std::string_view nodes(spec);
    nodes.remove_prefix(colon + 1);
    while (!nodes.empty()) {
      const size_t comma = nodes.find(',');
      const std::string_view item = nodes.substr(0, comma);
      const size_t eq = item.find('=');
      const int count =
          eq == std::string_view::npos ? 0 : std::atoi(std::string(item.substr(eq + 1)).c_str());
      if (eq == 0 || eq == std::string_view::npos || count < 1 || count > 64) {
        return bad("each node is NODE=GPUS, with 1 to 64 GPUs");
      }
      p.nodes.push_back(
          {std::string(item.substr(0, eq)), count, static_cast<int32_t>(p.nodes.size())});
      nodes = comma == std::string_view::npos ? std::string_view() : nodes.substr(comma + 1);
    }
    if (p.nodes.empty()) return bad("no nodes");
    pools.push_back(std::move(p));
  }
  return pools;
}

// The mh-worker program: as configured, else beside this executable (an installed tree), else
// where the build tree puts it (platform/worker/ beside platform/main/).
fs::path resolve_worker(const fs::path& configured) {
  if (!configured.empty()) return configured;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& p : {self.parent_path() / "mh-worker",
                              self.parent_path().parent_path() / "worker" / "mh-worker"}) {
      if (fs::exists(p, ec)) return p;
    }
  }
  return "mh-worker";
}

}  // namespace

int run_daemon(const DaemonConfig& config) {
  std::signal(SIGPIPE, SIG_IGN);
  auto fail = [](const Status& status) {
    spdlog::critical("macrohardd cannot start: {}", status.message());
    spdlog::shutdown();
    return 1;
  };
  if (Status s = setup_logging(config); !s.ok()) return fail(s);

  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  if (ec)
    return fail(internal_error(
        fmt::format("creating data directory {}: {}", config.data_dir.string(), ec.message())));
  fs::permissions(config.data_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  DataDirLock lock;
  if (Status s = lock.acquire(config.data_dir); !s.ok()) return fail(s);

  auto db = store::open_sqlite(config.data_dir / "macrohard.db");
  if (!db.ok()) return fail(db.status());
  auto blobs = blobs::BlobStore::open(config.data_dir / "blobs");
  if (!blobs.ok()) return fail(blobs.status());

  licensing::KeyRing keys;
  for (const std::string& file : config.license_public_keys) {
    auto text = read_small_file(file, 64 * 1024);
    if (!text.ok()) return fail(text.status());
    auto key = licensing::parse_public_key(*text);
    if (!key.ok()) return fail(invalid_argument(file + ": " + key.status().message()));
    if (Status s = keys.add(std::move(*key)); !s.ok()) return fail(s);
  }
  if (keys.empty()) {
    spdlog::warn("no --license-public-key given: no license can be installed");
  }
  store::AuditLog audit(**db);
  licensing::TrustedClock clock(**db, config.clock_tolerance_seconds);
  if (Status s = clock.load(); !s.ok()) return fail(s);
  if (auto now = clock.now(); !now.ok()) spdlog::error("{}", now.status().message());
  licensing::Entitlements entitlements;
  licensing::LicenseRegistry licenses(**db, keys, entitlements, clock);
  if (Status s = licenses.load(); !s.ok()) return fail(s);
  licensing::SeatLeases leases(**db, entitlements, clock, audit, config.lease_ttl_seconds);

  tenants::AdminKeys admin_keys(**db);
  auto bootstrap = admin_keys.bootstrap();
  if (!bootstrap.ok()) return fail(bootstrap.status());
  if (*bootstrap) {
    const std::string& secret = (*bootstrap)->secret;
    std::printf(
        "\nmacrohardd: this is the platform's first start. Its admin API key is shown once, here,\n"
        "and stored only as a hash. Keep it safe; create more with POST /v1/admin/keys.\n\n"
        "    %s\n\n",
        secret.c_str());
    std::fflush(stdout);
    if (!config.admin_key_file.empty()) {
      if (Status s = write_file_atomically(config.admin_key_file, secret + "\n", 0600); !s.ok()) {
        return fail(s);
      }
    }
  }

  asio::io_context ioc;
  http::Router router;
  http::HttpMetrics metrics;
  http::HttpServer server(ioc, config.server, router, metrics);

  api::SystemContext system;
  system.db = db->get();
  system.blobs = blobs->get();
  system.data_dir = config.data_dir;
  system.started_at = unix_seconds();
  system.devices = engine::probe_devices();
  system.open_connections = [&server] { return server.open_connections(); };
  system.stopping = [&server] { return server.stopping(); };
  system.tls = !config.server.tls_cert_file.empty();

  tenants::TenantRegistry tenant_registry(**db);
  tenants::TenantKeys tenant_keys(**db);
  tenants::RateLimiter rate_limiter;
  router.set_authenticator(
      api::make_authenticator(admin_keys, tenant_keys, tenant_registry, rate_limiter));
  router.set_tenant_in_flight_limit(static_cast<size_t>(config.max_in_flight_per_tenant));
  api::add_system_routes(router, metrics, system);
  api::add_license_routes(router, licenses, clock);
  api::add_lease_routes(router, leases);
  api::add_audit_routes(router, audit);
  api::add_tenant_routes(router, tenant_registry, entitlements, clock);
  api::add_key_routes(router, admin_keys, tenant_keys);
  tenants::UsageLedger usage(**db);
  // What a killed daemon's running jobs and replicas used since they last recorded it.
  if (auto settled = usage.settle_accrued(); !settled.ok()) {
    return fail(settled.status());
  } else if (*settled > 0) {
    spdlog::info("recorded {} usage amounts a previous run accrued but never recorded", *settled);
  }
  api::add_usage_routes(router, usage);
  api::DeviceHoldings holdings;
  api::LicenceWatch watch(entitlements, usage, tenant_registry, clock);
  // What every service below is built on.
  const api::Context context{**db,  **blobs, tenant_registry, entitlements,
                             clock, usage,   holdings,        watch};
  api::Files files(context, config.max_file_bytes);
  // Bytes a crash left behind, written but never recorded or freed but not yet removed.
  if (auto orphans = files.collect_orphans(); !orphans.ok()) {
    return fail(orphans.status());
  } else if (*orphans > 0) {
    spdlog::info("removed {} stored blobs nothing refers to", *orphans);
  }
  api::add_file_routes(router, files);
  const fs::path worker = resolve_worker(config.worker);
  // What contains workers (platform/executor/sandbox.h): on, with the limits configured.
  executor::Sandbox sandbox;
  sandbox.enabled = config.worker_sandbox;
  sandbox.address_space_bytes =
      config.worker_memory_bytes > 0
          ? config.worker_memory_bytes
          : static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  sandbox.file_size_bytes = config.worker_file_bytes;
  api::Models models(context, files, config.data_dir / "models", config.data_dir / "base-models");
  models.inspect_with(worker, sandbox, config.data_dir / "inspections");
  if (Status s = models.load_catalogue(); !s.ok()) return fail(s);
  api::add_model_routes(router, models);

  scheduler::Options scheduling;
  scheduling.min_runtime_seconds = config.preemption_min_runtime_s;
  auto pool_configs = pools_of(config, system.devices);
  if (!pool_configs.ok()) return fail(pool_configs.status());
  api::Pools pools(context, std::move(*pool_configs), scheduling);
  if (!config.slurm_conf.empty()) pools.set_slurm_env({{"SLURM_CONF", config.slurm_conf}});
  if (Status s = pools.start(); !s.ok()) return fail(s);
  api::add_pool_routes(router, pools);
  api::JobOptions job_options;
  job_options.root = config.data_dir / "jobs";
  job_options.worker = worker;
  job_options.worker_threads = config.worker_threads;
  job_options.sandbox = sandbox;
  api::FineTuning jobs(context, files, models, pools, std::move(job_options));
  api::add_fine_tuning_routes(router, jobs);
  if (Status s = jobs.start(); !s.ok()) return fail(s);
  api::DeploymentOptions deployment_options;
  deployment_options.root = config.data_dir / "deployments";
  deployment_options.worker = worker;
  deployment_options.threads_per_replica = config.worker_threads;
  deployment_options.max_batch = config.replica_max_batch;
  deployment_options.max_adapters = config.replica_max_adapters;
  deployment_options.prefix_cache_mb = config.replica_prefix_cache_mb;
  deployment_options.max_queue = config.deployment_queue;
  deployment_options.max_queue_per_tenant = config.deployment_queue_per_tenant;
  deployment_options.sandbox = sandbox;
  deployment_options.adapter_roots = {fs::absolute(config.data_dir / "jobs"),
                                      fs::absolute(config.data_dir / "models")};
  api::Deployments deployments(context, models, pools, ioc, deployment_options);
  api::add_deployment_routes(router, deployments);
  if (Status s = deployments.start(); !s.ok()) return fail(s);
  metrics.add_gauge("mh_http_open_connections", "Open client connections.",
                    [&server] { return static_cast<double>(server.open_connections()); });
  metrics.add_gauge("mh_uptime_seconds", "Seconds since the daemon started.",
                    [&system] { return static_cast<double>(unix_seconds() - system.started_at); });

  // Signals are caught from before the port is open: a stop sent as soon as the daemon answers
  // is a graceful one (asio queues it until the wait below is set up).
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  if (Status s = server.start(); !s.ok()) return fail(s);
  spdlog::info("macrohardd {} serving {}://{}:{} from {}", MACROHARD_VERSION,
               server.tls() ? "https" : "http", config.server.host, server.port(),
               config.data_dir.string());
  if (system.devices.devices.empty()) {
    spdlog::info("computing on the CPU: {} worker slots in pool \"default\" (no GPU in use: {})",
                 config.cpu_devices, system.devices.note);
  } else {
    spdlog::info("computing on {} CUDA devices in pool \"gpu\" and {} CPU worker slots in pool "
                 "\"default\"",
                 system.devices.devices.size(), config.cpu_devices);
  }
  if (!config.port_file.empty()) {
    if (Status s =
            write_file_atomically(config.port_file, std::to_string(server.port()) + "\n", 0644);
        !s.ok()) {
      return fail(s);
    }
  }

  // Graceful stop: the first signal stops accepting and lets requests in flight finish within
  // the grace period; a second signal, or the period's end, stops at once.
  asio::steady_timer grace(ioc);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& error, int signal) {
        if (error) return;
        if (server.stopping()) {
          spdlog::warn("second signal: stopping now");
          ioc.stop();
          return;
        }
        spdlog::info("signal {}: stopping; {} connections open", signal, server.open_connections());
        grace.expires_after(config.shutdown_grace);
        grace.async_wait([&](const boost::system::error_code& e) {
          if (e) return;
          spdlog::warn("grace period over: closing {} connections", server.open_connections());
          ioc.stop();
        });
        signals.async_wait(on_signal);
        server.shutdown([&] {
          asio::post(ioc, [&] {
            grace.cancel();
            signals.cancel();
          });
        });
      };
  signals.async_wait(on_signal);

  int thread_count =
      config.threads > 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (int i = 1; i < thread_count; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  server.join_handlers();  // before the services they call are destroyed
  spdlog::info("macrohardd stopped");
  spdlog::shutdown();
  return 0;
}

}  // namespace mh::daemon
