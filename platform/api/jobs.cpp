#include "platform/api/jobs.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>

#include "platform/base/crypto.h"
#include "platform/base/enum_names.h"
#include "platform/base/time.h"
#include "platform/executor/launcher.h"
#include "platform/executor/worker_contract.h"
#include "tenants/roles.h"
#include "tenants/tenant_scope.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, model, training_file, validation_file, suffix, status, error_code, "
    "error_message, fine_tuned_model, n_epochs, batch_size, lr_multiplier, seed, trained_tokens, "
    "created_at, finished_at, pool, gpus, checkpoint_interval, max_retries, attempts, priority, "
    "training_sha256, validation_sha256";
constexpr double kBaseLearningRate = 1e-3;  // times learning_rate_multiplier
constexpr int64_t kMaxSeqLen = 512;
constexpr auto kCancelGrace = std::chrono::seconds(10);
constexpr auto kMetricsInterval = std::chrono::milliseconds(200);

// A job runner's write the store refused: the job stays as the store last had it (running),
// and the next daemon start requeues it from its checkpoint.
void log_unsaved(const std::string& job, std::string_view what, const Status& s) {
  if (s.ok()) return;
  spdlog::error("job {}: the store refused {}; the next start takes the job up from its "
                "checkpoint: {}", job, what, s.message());
}
// How often a running job's device-seconds are written to the usage ledger, and how often its
// licence is looked at (docs/tenants.md gives the bound these make).
constexpr auto kMeterEvery = std::chrono::seconds(5);
// The most an interrupted attempt's worker is believed to have run between its daemon's last
// accrual and the next daemon's start (its checkpoint on the way out takes up to 10 s).
constexpr double kMaxUnseenTail = 30;
constexpr auto kLicenceCheckEvery = std::chrono::seconds(1);

JobRecord from_row(const store::Row& r) {
  auto text = [&](size_t i) { return r.is_null(i) ? std::string() : r.text(i); };
  auto opt = [&](size_t i) {
    return r.is_null(i) ? std::optional<int64_t>() : std::optional<int64_t>(r.integer(i));
  };
  JobRecord j;
  j.id = r.text(0);
  j.tenant = r.text(1);
  j.model = r.text(2);
  j.training_file = r.text(3);
  j.validation_file = text(4);
  j.suffix = text(5);
  // A name the store holds that is none (a newer daemon's) reads as queued: the job runs.
  j.status = parse_job_status(r.text(6)).value_or(JobStatus::kQueued);
  j.error_code = text(7);
  j.error_message = text(8);
  j.fine_tuned_model = text(9);
  j.n_epochs = r.integer(10);
  j.batch_size = r.integer(11);
  j.lr_multiplier = std::get<double>(r.value(12));
  j.seed = r.integer(13);
  j.trained_tokens = opt(14);
  j.finished_at = opt(16);
  j.created_at = r.integer(15);
  j.pool = r.text(17);
  j.gpus = r.integer(18);
  j.checkpoint_interval = r.integer(19);
  j.max_retries = r.integer(20);
  j.attempts = r.integer(21);
  j.priority = r.integer(22);
  j.training_sha256 = r.text(23);
  j.validation_sha256 = text(24);
  return j;
}

// Records the event in the session's transaction; its seq orders it among the job's events.
Result<int64_t> insert_event(store::Session& session, const JobRecord& job, const JobEvent& e) {
  MH_TRY(session
             .exec("INSERT INTO fine_tuning_events (id, job_id, tenant_id, created_at, level, "
                   "message, type, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   {e.id, job.id, job.tenant, e.created_at, e.level, e.message, e.type,
                    store::text_or_null(e.data)})
             .status());
  MH_ASSIGN_OR_RETURN(auto rows,
                      session.query("SELECT seq FROM fine_tuning_events WHERE id = ?", {e.id}));
  return rows.empty() ? int64_t{0} : rows[0].integer(0);
}

// The model a job makes: ft:<base>:<suffix, or the tenant>:<the job id's first 8 characters>.
std::string fine_tuned_model_id(const JobRecord& job) {
  return fmt::format("ft:{}:{}:{}", job.model, job.suffix.empty() ? job.tenant : job.suffix,
                     job.id.substr(6, 8));
}

json::value or_null(const std::optional<int64_t>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::object job_json(const JobRecord& j) {
  json::object o{
      {"object", "fine_tuning.job"},
      {"id", j.id},
      {"model", j.model},
      {"created_at", j.created_at},
      {"finished_at", or_null(j.finished_at)},
      {"fine_tuned_model",
       j.fine_tuned_model.empty() ? json::value(nullptr) : json::value(j.fine_tuned_model)},
      {"organization_id", j.tenant},
      {"result_files", json::array()},
      {"status", status_name(j.status)},
      {"training_file", j.training_file},
      {"validation_file",
       j.validation_file.empty() ? json::value(nullptr) : json::value(j.validation_file)},
      {"hyperparameters",
       {{"n_epochs", j.n_epochs},
        {"batch_size", j.batch_size},
        {"learning_rate_multiplier", j.lr_multiplier}}},
      {"trained_tokens", or_null(j.trained_tokens)},
      {"seed", j.seed},
      {"user_provided_suffix", j.suffix.empty() ? json::value(nullptr) : json::value(j.suffix)},
      {"pool", j.pool},
      {"gpus", j.gpus},
      {"checkpoint_interval", j.checkpoint_interval},
      {"max_retries", j.max_retries},
      {"priority", j.priority},
      {"attempts", j.attempts}};
  o["error"] = j.error_code.empty()
                   ? json::value(nullptr)
                   : json::value(json::object{
                         {"code", j.error_code}, {"message", j.error_message}, {"param", nullptr}});
  return o;
}

json::object event_json(const JobEvent& e) {
  json::object o{{"object", "fine_tuning.job.event"},
                 {"id", e.id},
                 {"created_at", e.created_at},
                 {"level", e.level},
                 {"message", e.message},
                 {"type", e.type}};
  o["data"] = e.data.empty() ? json::value(json::object()) : json::parse(e.data);
  return o;
}

// The job's events after the event `after` ("" for all), oldest first, at most `limit` (-1: all),
// each with its sequence number.
Result<std::vector<std::pair<int64_t, JobEvent>>> read_events(store::Session& s,
                                                              std::string_view tenant,
                                                              std::string_view job,
                                                              std::string_view after,
                                                              int64_t limit) {
  int64_t after_seq = 0;
  if (!after.empty()) {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query("SELECT seq FROM fine_tuning_events WHERE id = ? AND job_id = ?",
                                {std::string(after), std::string(job)}));
    if (rows.empty()) return invalid_argument("\"after\" is not an event of this job", "after");
    after_seq = rows[0].integer(0);
  }
  MH_ASSIGN_OR_RETURN(auto rows,
                      s.query("SELECT id, created_at, level, message, type, data, seq FROM "
                              "fine_tuning_events WHERE job_id = ? AND tenant_id = ? AND seq > ? "
                              "ORDER BY seq LIMIT ?",
                              {std::string(job), std::string(tenant), after_seq, limit}));
  std::vector<std::pair<int64_t, JobEvent>> out;
  for (const auto& r : rows) {
    out.push_back({r.integer(6), JobEvent{r.text(0), r.integer(1), r.text(2), r.text(3), r.text(4),
                                          r.is_null(5) ? std::string() : r.text(5)}});
  }
  return out;
}

// A hyperparameter: absent or "auto" gives `fallback`; otherwise a number in [lo, hi].
Result<double> hyper(const json::object& h, const char* key, double fallback, double lo, double hi,
                     bool integer) {
  const json::value* v = h.if_contains(key);
  if (v == nullptr || (v->is_string() && v->as_string() == "auto")) return fallback;
  const std::string param = std::string("hyperparameters.") + key;
  if (!v->is_number() || (integer && !v->is_int64() && !v->is_uint64())) {
    return invalid_argument(
        param + " must be " + (integer ? "an integer" : "a number") + " or \"auto\"", param);
  }
  const double d = v->to_number<double>();
  if (!(d >= lo && d <= hi)) {
    return invalid_argument(fmt::format("{} must be in [{}, {}]", param, lo, hi), param);
  }
  return d;
}

}  // namespace

namespace {
constexpr EnumNames<JobStatus, 6> kJobStatusNames(
    {"validating_files", "queued", "running", "succeeded", "failed", "cancelled"});
}  // namespace

std::string_view status_name(JobStatus status) { return kJobStatusNames.name(status); }

std::optional<JobStatus> parse_job_status(std::string_view name) {
  return kJobStatusNames.parse(name);
}

bool is_final(JobStatus status) {
  return status == JobStatus::kSucceeded || status == JobStatus::kFailed ||
         status == JobStatus::kCancelled;
}

FineTuning::FineTuning(store::Database& db, FileStore& files, ModelStore& models,
                       const licensing::Entitlements& entitlements, tenants::UsageLedger& ledger,
                       DeviceHoldings& holdings, LicenceWatch& watch, Pools& pools,
                       licensing::TrustedClock& clock, fs::path root, fs::path worker,
                       int worker_threads)
    : db_(db),
      files_(files),
      models_(models),
      entitlements_(entitlements),
      ledger_(ledger),
      holdings_(holdings),
      watch_(watch),
      pools_(pools),
      clock_(clock),
      root_(std::move(root)),
      worker_(std::move(worker)),
      worker_threads_(worker_threads) {}

FineTuning::~FineTuning() {
  pools_.stop();  // no admission reaches this object from here on
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (runner_.joinable()) runner_.join();
  // Running jobs see stopping_, checkpoint and go back to the queue.
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, r] : running_) threads.push_back(std::move(r.thread));
  }
  for (auto& t : threads) t.join();
  std::lock_guard lock(channels_mutex_);
  for (auto& [job, c] : channels_) {
    std::lock_guard channel_lock(c->mutex);
    for (auto& sub : c->subscribers) sub.out->end();  // the job goes on after a restart
  }
}

Status FineTuning::start() {
  // A previous daemon's workers were told to stop when it died (they checkpoint first): wait
  // for them to be gone before their jobs run again from that checkpoint.
  struct Interrupted {
    std::string id, tenant, ref, pool;
    int64_t gpus = 0;
  };
  std::vector<Interrupted> interrupted;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query("SELECT id, tenant_id, gpus, COALESCE(worker_ref, ''), pool FROM "
                                "fine_tuning_jobs WHERE status = 'running'"));
    for (const auto& r : rows) {
      interrupted.push_back({r.text(0), r.text(1), r.text(3), r.text(4), r.integer(2)});
    }
    return {};
  }));
  for (const Interrupted& job : interrupted) {
    const auto waiting = std::chrono::steady_clock::now();
    // Its worker is waited for (a Slurm job, outliving its daemon, is told to checkpoint and
    // stop first).
    const bool was_running = pools_.launcher(job.pool).reclaim(job.ref, std::chrono::seconds(30));
    // What the attempt used up to the dead daemon's last second was accrued beside the ledger
    // and is recorded already (UsageLedger::settle_accrued, at start); here, the rest: from
    // then to when its worker was seen gone (it ran on alone while it checkpointed).
    auto now = clock_.now();
    if (was_running && now.ok()) {
      const double gone = static_cast<double>(unix_millis()) / 1000;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - waiting).count();
      double seconds = waited;
      if (auto seen = ledger_.last_accrued("job", job.id); seen && *seen <= gone) {
        seconds = std::min(gone - *seen, waited + kMaxUnseenTail);  // a clock step is no usage
      }
      Status billed = ledger_.record({job.tenant, *now, tenants::UsageDimension::kGpuSeconds,
                                      seconds * static_cast<double>(job.gpus), "job", job.id});
      if (!billed.ok()) spdlog::error("job {}: usage not recorded: {}", job.id, billed.message());
    }
  }
  std::vector<JobRecord> queued;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_TRY(s.exec("UPDATE fine_tuning_jobs SET status = 'queued', worker_ref = NULL WHERE status "
                  "= 'running'")
               .status());
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT {} FROM fine_tuning_jobs WHERE status = "
                                            "'queued' ORDER BY created_at, rowid",
                                            kColumns)));
    for (const auto& r : rows) queued.push_back(from_row(r));
    return {};
  }));
  for (const auto& j : queued) submit_to_pools(j);
  runner_ = std::thread([this] { run(); });
  return {};
}

Result<JobRecord> FineTuning::create(const std::string& tenant, const json::object& body) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  MH_TRY(entitlements_.check(tenant, "train", now));
  JobRecord j;
  auto small_int = [&](const char* key, int64_t fallback, int64_t lo,
                       int64_t hi) -> Result<int64_t> {
    const json::value* v = body.if_contains(key);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_int64() || v->as_int64() < lo || v->as_int64() > hi) {
      return invalid_argument(fmt::format("\"{}\" must be an integer in [{}, {}]", key, lo, hi),
                              key);
    }
    return v->as_int64();
  };
  if (const json::value* v = body.if_contains("pool"); v != nullptr && !v->is_null()) {
    if (!v->is_string()) return invalid_argument("\"pool\" must be a pool's name", "pool");
    if (!pools_.has_pool(v->as_string())) {
      return not_found(fmt::format("pool '{}' does not exist", std::string_view(v->as_string())));
    }
    j.pool = std::string(v->as_string());
  }
  MH_ASSIGN_OR_RETURN(j.gpus, small_int("gpus", 1, 1, 64));
  if (j.gpus > 1) {
    // Data-parallel ranks, one per device, on one node.
    MH_TRY(entitlements_.check(tenant, "multi_gpu", now));
    if (const executor::Launcher& launcher = pools_.launcher(j.pool);
        j.gpus > launcher.max_ranks()) {
      return invalid_argument(
          fmt::format("pool '{}' runs jobs through {}, where a job trains on at most {} "
                      "device(s); multi-device jobs run on local pools",
                      j.pool, launcher.name(), launcher.max_ranks()),
          "gpus");
    }
    if (const int most = pools_.largest_node(j.pool); j.gpus > most) {
      return failed_precondition(
          fmt::format("a job's ranks run on one node, and the largest node of pool '{}' has {} "
                      "devices; this job asks for {}",
                      j.pool, most, j.gpus));
    }
  }
  MH_ASSIGN_OR_RETURN(j.checkpoint_interval, small_int("checkpoint_interval", 50, 1, 1'000'000));
  MH_ASSIGN_OR_RETURN(j.max_retries, small_int("max_retries", 0, 0, 10));
  MH_ASSIGN_OR_RETURN(j.priority, small_int("priority", 0, -100, 100));
  j.id = "ftjob-" + secure_random_base64url(18);
  j.tenant = tenant;
  j.created_at = now;
  const json::value* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return invalid_argument("\"model\" must name one of your models", "model");
  }
  j.model = std::string(model->as_string());
  MH_ASSIGN_OR_RETURN(ModelRecord base, models_.get(tenant, j.model));
  MH_TRY(check_model_params(entitlements_, tenant, base.parameters));
  for (auto [key, out, bytes, required] :
       {std::tuple{"training_file", &j.training_file, &j.training_sha256, true},
        std::tuple{"validation_file", &j.validation_file, &j.validation_sha256, false}}) {
    const json::value* v = body.if_contains(key);
    if (v == nullptr || v->is_null()) {
      if (required) return invalid_argument(std::string("\"") + key + "\" is required", key);
      continue;
    }
    if (!v->is_string())
      return invalid_argument(std::string("\"") + key + "\" must be a file id", key);
    MH_ASSIGN_OR_RETURN(FileRecord f, files_.get(tenant, v->as_string()));
    if (f.purpose != "fine-tune") {
      return failed_precondition(
          fmt::format("{}: file '{}' has purpose '{}'; training data needs "
                      "purpose 'fine-tune'",
                      key, f.id, f.purpose));
    }
    *out = f.id;
    *bytes = f.sha256;
  }
  if (const json::value* v = body.if_contains("suffix"); v != nullptr && !v->is_null()) {
    const bool ok = v->is_string() && !v->as_string().empty() && v->as_string().size() <= 40 &&
                    std::all_of(v->as_string().begin(), v->as_string().end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                    });
    if (!ok) return invalid_argument("\"suffix\" must be 1-40 characters of a-z 0-9 -", "suffix");
    j.suffix = std::string(v->as_string());
  }
  json::object none;
  const json::object* h = &none;
  if (const json::value* v = body.if_contains("hyperparameters"); v != nullptr && !v->is_null()) {
    if (!v->is_object())
      return invalid_argument("\"hyperparameters\" must be an object", "hyperparameters");
    h = &v->as_object();
  }
  MH_ASSIGN_OR_RETURN(double epochs, hyper(*h, "n_epochs", 1, 1, 50, true));
  MH_ASSIGN_OR_RETURN(double batch, hyper(*h, "batch_size", 4, 1, 256, true));
  MH_ASSIGN_OR_RETURN(double lr, hyper(*h, "learning_rate_multiplier", 1.0, 1e-3, 100, false));
  j.n_epochs = static_cast<int64_t>(epochs);
  j.batch_size = static_cast<int64_t>(batch);
  if (j.batch_size % j.gpus != 0) {
    return invalid_argument(
        fmt::format("hyperparameters.batch_size {} must be a multiple of gpus {}: each device "
                    "trains an equal share of every step's rows",
                    j.batch_size, j.gpus),
        "hyperparameters.batch_size");
  }
  j.lr_multiplier = lr;
  if (const json::value* v = body.if_contains("seed"); v != nullptr && !v->is_null()) {
    if (!v->is_int64() || v->as_int64() < 0) {
      return invalid_argument("\"seed\" must be a non-negative integer", "seed");
    }
    j.seed = v->as_int64();
  } else {
    uint32_t r = 0;
    secure_random(&r, sizeof r);
    j.seed = r >> 1;
  }
  MH_TRY(admit_devices(entitlements_, ledger_, nullptr, tenant, "train", j.pool, "", j.gpus, now));
  // The job, queued, and the events of its creation are one transaction: a daemon killed
  // mid-way leaves either no job or a queued one. (The files were checked line by line when
  // they were uploaded and are the tenant's with the right purpose; the worker checks that they
  // tokenize and fill a row.)
  j.status = JobStatus::kQueued;
  const std::vector<JobEvent> created = {
      make_event("info", "message", "Validating training file: " + j.training_file),
      make_event("info", "message", "Files validated, job queued")};
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_TRY(s.exec(fmt::format("INSERT INTO fine_tuning_jobs ({}) VALUES (?, ?, ?, ?, ?, ?, ?, "
                              "NULL, NULL, NULL, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, ?, 0, ?, ?, "
                              "?)",
                              kColumns),
                  {j.id, j.tenant, j.model, j.training_file,
                   store::text_or_null(j.validation_file), store::text_or_null(j.suffix),
                   std::string(status_name(j.status)), j.n_epochs, j.batch_size, j.lr_multiplier,
                   j.seed, j.created_at, j.pool, j.gpus, j.checkpoint_interval, j.max_retries,
                   j.priority,
                   j.training_sha256, store::text_or_null(j.validation_sha256)})
               .status());
    for (const JobEvent& e : created) MH_TRY(insert_event(s, j, e).status());
    return {};
  }));
  submit_to_pools(j);
  return j;
}

Result<JobRecord> FineTuning::get(std::string_view tenant, std::string_view id) const {
  JobRecord j;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("fine_tuning_jobs", kColumns, id, "fine-tuning job"));
    j = from_row(row);
    return {};
  }));
  return j;
}

Result<std::vector<JobRecord>> FineTuning::list(std::string_view tenant, std::string_view after,
                                                int64_t limit, bool* has_more) const {
  std::vector<JobRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows,
                        scope.page("fine_tuning_jobs", kColumns, after, limit, has_more));
    for (const auto& r : rows) out.push_back(from_row(r));
    return {};
  }));
  return out;
}

Result<JobRecord> FineTuning::cancel(std::string_view tenant, std::string_view id) {
  MH_ASSIGN_OR_RETURN(JobRecord j, get(tenant, id));
  if (is_final(j.status)) {
    return failed_precondition(
        fmt::format("job '{}' has already {}", j.id, status_name(j.status)));
  }
  // The runner claims jobs under this lock, so a job not running now cannot start meanwhile.
  std::unique_lock lock(mutex_);
  auto it = running_.find(j.id);
  if (it != running_.end() && !it->second.done) {
    it->second.cancel = true;  // its thread stops the worker (within the grace period)
    idle_.wait_for(lock, kCancelGrace + std::chrono::seconds(5), [&] {
      auto r = running_.find(j.id);
      return r == running_.end() || r->second.done;
    });
  } else {
    MH_TRY(finish(j, JobStatus::kCancelled, "", "", "", std::nullopt));
    pools_.finish(j.id);
  }
  lock.unlock();
  return get(tenant, id);
}

Result<std::vector<JobEvent>> FineTuning::events(std::string_view tenant, std::string_view id,
                                                 std::string_view after, int64_t limit,
                                                 bool* has_more) const {
  MH_TRY(get(tenant, id).status());  // 404 for another tenant's job
  std::vector<JobEvent> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, read_events(s, tenant, id, after, limit + 1));
    *has_more = static_cast<int64_t>(rows.size()) > limit;
    for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
      out.push_back(std::move(rows[i].second));
    }
    return {};
  }));
  return out;
}

void FineTuning::add_checkpoint(const JobRecord& job, int64_t step, std::optional<double> loss,
                                std::optional<double> valid_loss, const std::string& path) {
  const auto clock = clock_.now();
  Status s = db_.write([&](store::Session& session) -> Status {
    return session
        .exec(
            "INSERT INTO fine_tuning_checkpoints (id, job_id, tenant_id, step, train_loss, "
            "valid_loss, path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, "
            "step) DO NOTHING",
            {"ftckpt-" + secure_random_base64url(18), job.id, job.tenant, step,
             loss ? store::Value(*loss) : store::Value(std::monostate()),
             valid_loss ? store::Value(*valid_loss) : store::Value(std::monostate()), path,
             clock.ok() ? *clock : 0})
        .status();
  });
  if (!s.ok()) spdlog::error("job {}: checkpoint not recorded: {}", job.id, s.message());
}

Result<std::vector<JobCheckpoint>> FineTuning::checkpoints(std::string_view tenant,
                                                           std::string_view id,
                                                           std::string_view after, int64_t limit,
                                                           bool* has_more) const {
  MH_TRY(get(tenant, id).status());  // 404 for another tenant's job
  std::vector<JobCheckpoint> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    int64_t before_step = INT64_MAX;
    if (!after.empty()) {
      MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT step FROM fine_tuning_checkpoints WHERE id = "
                                             "? AND job_id = ?",
                                             {std::string(after), std::string(id)}));
      if (rows.empty())
        return invalid_argument("\"after\" is not a checkpoint of this job", "after");
      before_step = rows[0].integer(0);
    }
    MH_ASSIGN_OR_RETURN(
        auto rows, s.query("SELECT id, step, train_loss, created_at, valid_loss FROM "
                           "fine_tuning_checkpoints "
                           "WHERE job_id = ? AND tenant_id = ? AND step < ? ORDER BY step DESC "
                           "LIMIT ?",
                           {std::string(id), std::string(tenant), before_step, limit + 1}));
    *has_more = static_cast<int64_t>(rows.size()) > limit;
    for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
      const auto& r = rows[i];
      auto real = [&](size_t i) {
        return r.is_null(i) ? std::optional<double>()
                            : std::optional<double>(std::get<double>(r.value(i)));
      };
      out.push_back({r.text(0), std::string(id), r.integer(1), real(2), real(4), r.integer(3)});
    }
    return {};
  }));
  return out;
}

JobEvent FineTuning::make_event(std::string level, std::string type, std::string message,
                                std::string data) const {
  const auto clock = clock_.now();
  return JobEvent{"ftevent-" + secure_random_base64url(18),
                  clock.ok() ? *clock : 0,
                  std::move(level),
                  std::move(message),
                  std::move(type),
                  std::move(data)};
}


void FineTuning::add_event(const JobRecord& job, std::string level, std::string type,
                           std::string message, std::string data) {
  const JobEvent e =
      make_event(std::move(level), std::move(type), std::move(message), std::move(data));
  int64_t seq = 0;
  Status s = db_.write([&](store::Session& session) -> Status {
    MH_ASSIGN_OR_RETURN(seq, insert_event(session, job, e));
    return {};
  });
  if (!s.ok()) {
    spdlog::warn("job {}: recording an event: {}", job.id, s.message());
    return;
  }
  publish(job.id, seq, "data: " + json::serialize(event_json(e)) + "\n\n", false);
}

std::shared_ptr<FineTuning::Channel> FineTuning::channel(const std::string& job_id, bool create) {
  std::lock_guard lock(channels_mutex_);
  auto it = channels_.find(job_id);
  if (it != channels_.end()) return it->second;
  if (!create) return nullptr;
  return channels_.emplace(job_id, std::make_shared<Channel>()).first->second;
}

void FineTuning::publish(const std::string& job_id, int64_t seq, const std::string& text,
                         bool last) {
  const std::shared_ptr<Channel> c = channel(job_id, false);
  if (!c) return;
  {
    std::lock_guard lock(c->mutex);
    std::erase_if(c->subscribers, [&](Subscriber& sub) {
      if (sub.out->cancelled()) return true;
      if (seq > sub.last_seq) {  // the backlog it was sent may already hold this one
        sub.out->write(text);
        sub.last_seq = seq;
      }
      if (!last) return false;
      sub.out->write("data: [DONE]\n\n");
      sub.out->end();
      return true;
    });
  }
  // The job is over: no stream joins its channel again (one opened from now reads the job
  // finished and ends after its backlog).
  if (last) {
    std::lock_guard lock(channels_mutex_);
    if (auto it = channels_.find(job_id); it != channels_.end() && it->second == c) {
      channels_.erase(it);
    }
  }
}

Response FineTuning::stream_events(std::string_view tenant, std::string_view id,
                                   std::string_view after) {
  auto job = get(tenant, id);
  if (!job.ok()) return Response::error(job.status());
  auto out = std::make_shared<ResponseStream>();
  const std::string job_id(id);
  const std::shared_ptr<Channel> c = channel(job_id, true);
  bool ended = false;
  Status read;
  {
    // Under the job's channel lock: an event recorded after the backlog's query is published
    // to this subscriber, and one recorded before it is in the backlog (seq tells them apart).
    std::lock_guard lock(c->mutex);
    int64_t last_seq = 0;
    std::string backlog;
    read = db_.read([&](store::Session& s) -> Status {
      MH_ASSIGN_OR_RETURN(auto rows, read_events(s, tenant, id, after, -1));
      for (const auto& [seq, e] : rows) {
        backlog += "data: " + json::serialize(event_json(e)) + "\n\n";
        last_seq = seq;
      }
      // The job's state as of this read: a finished job's stream ends after its backlog.
      MH_ASSIGN_OR_RETURN(auto status, s.query("SELECT status FROM fine_tuning_jobs WHERE id = ?",
                                               {job_id}));
      const auto state = status.empty() ? std::nullopt : parse_job_status(status[0].text(0));
      if (state && is_final(*state)) last_seq = -1;
      return {};
    });
    if (read.ok()) {
      out->begin(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
      out->write(std::move(backlog));
      if (last_seq < 0) {
        out->write("data: [DONE]\n\n");
        out->end();
        ended = true;
      } else {
        c->subscribers.push_back(Subscriber{out, last_seq});
      }
    }
  }
  if (ended) {  // a channel made for a finished job goes again (no stream joins it now)
    std::lock_guard lock(channels_mutex_);
    if (auto it = channels_.find(job_id); it != channels_.end() && it->second == c) {
      std::lock_guard channel_lock(c->mutex);
      if (c->subscribers.empty()) channels_.erase(it);
    }
  }
  if (!read.ok()) return Response::error(read);
  return Response::streamed(out);
}

Status FineTuning::finish(const JobRecord& job, JobStatus status,
                          const std::string& error_code, const std::string& error_message,
                          const std::string& model, std::optional<int64_t> tokens) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  // The end and the events that tell it are one transaction: whoever sees the job finished
  // sees them too (a stream that reads a finished job ends after its backlog).
  std::vector<JobEvent> closing;
  if (status == JobStatus::kSucceeded) {
    closing.push_back(make_event("info", "message", "New fine-tuned model created: " + model));
    closing.push_back(make_event("info", "message", "The job has successfully completed"));
  } else if (status == JobStatus::kCancelled) {
    closing.push_back(make_event("info", "message", "Job cancelled"));
  } else {
    closing.push_back(make_event("error", "message", "Job failed: " + error_message));
  }
  std::vector<int64_t> seqs;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    seqs.clear();
    MH_TRY(s.exec("UPDATE fine_tuning_jobs SET status = ?, error_code = ?, error_message = ?, "
                  "fine_tuned_model = ?, trained_tokens = ?, finished_at = ? WHERE id = ?",
                  {std::string(status_name(status)), store::text_or_null(error_code),
                   store::text_or_null(error_message),
                   store::text_or_null(model),
                   tokens ? store::Value(*tokens) : store::Value(std::monostate()), now, job.id})
               .status());
    for (const JobEvent& e : closing) {
      MH_ASSIGN_OR_RETURN(int64_t seq, insert_event(s, job, e));
      seqs.push_back(seq);
    }
    return {};
  }));
  for (size_t i = 0; i < closing.size(); ++i) {
    publish(job.id, seqs[i], "data: " + json::serialize(event_json(closing[i])) + "\n\n", false);
  }
  publish(job.id, 0, "", true);  // the job is over: its live streams end
  // Its files' bytes are not needed any more unless a file (or another job) still has them.
  for (const std::string* sha : {&job.training_sha256, &job.validation_sha256}) {
    if (sha->empty()) continue;
    if (Status gc = files_.collect(*sha); !gc.ok()) {
      spdlog::warn("job {}: freeing its data: {}", job.id, gc.message());
    }
  }
  return {};
}

void FineTuning::run() {
  for (;;) {
    std::vector<std::thread> finished;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || work_; });
      if (stopping_) return;
      work_ = false;
      for (auto it = running_.begin(); it != running_.end();) {
        if (it->second.done) {
          finished.push_back(std::move(it->second.thread));
          it = running_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& t : finished) t.join();
  }
}

void FineTuning::submit_to_pools(const JobRecord& j) {
  pools_.submit(
      {j.id, j.tenant, j.pool, static_cast<int>(j.gpus), static_cast<int>(j.priority), j.created_at,
       true},
      [this, id = j.id](Allocation allocation) { admit(id, allocation); },
      [this, id = j.id] { preempt(id); },
      [this, job = j](const std::string& reason) {
        add_event(job, "info", "message", "Waiting for devices: " + reason);
      });
}

void FineTuning::preempt(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (auto it = running_.find(id); it != running_.end()) it->second.preempt = true;
}

void FineTuning::admit(const std::string& id, const Allocation& allocation) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;  // it stays queued for the next daemon
  // Claimed under the lock (see cancel()): a job cancelled since it was queued stays so.
  std::optional<JobRecord> job;
  Status claimed = db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT {} FROM fine_tuning_jobs WHERE id = ? AND "
                                            "status = 'queued'",
                                            kColumns),
                                {id}));
    if (rows.empty()) return {};
    job = from_row(rows[0]);
    return s.exec("UPDATE fine_tuning_jobs SET status = 'running' WHERE id = ?", {job->id})
        .status();
  });
  if (!claimed.ok()) spdlog::error("fine-tuning runner: {}", claimed.message());
  if (!claimed.ok() || !job) {
    pools_.finish(id);
    return;
  }
  job->status = JobStatus::kRunning;
  Running& r = running_[job->id];
  // An earlier attempt's thread (preempted or retried) has marked itself done under this lock
  // and needs it no more: it is joined before its slot is reused.
  if (r.thread.joinable()) r.thread.join();
  r = Running{};
  r.thread = std::thread([this, record = *job, allocation] {
    execute(record, allocation);
    // The job's row says how it ended: back in the queue, or over.
    auto now = get(record.tenant, record.id);
    const bool again = now.ok() && now->status == JobStatus::kQueued;
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      if (again) {
        pools_.requeue(record.id);
      } else {
        pools_.finish(record.id);
      }
    }
    running_[record.id].done = true;
    work_ = true;
    wake_.notify_all();
    idle_.notify_all();
  });
}

void FineTuning::back_to_queue(const JobRecord& job) {
  Status s = db_.write([&](store::Session& session) -> Status {
    return session
        .exec("UPDATE fine_tuning_jobs SET status = 'queued', worker_ref = NULL WHERE id = ?",
              {job.id})
        .status();
  });
  if (!s.ok()) spdlog::error("job {}: back to the queue: {}", job.id, s.message());
}

void FineTuning::execute(const JobRecord& job, const Allocation& allocation) {
  auto fail = [&](const std::string& code, const std::string& message) {
    log_unsaved(job.id, "its failure",
                finish(job, JobStatus::kFailed, code, message, "", std::nullopt));
  };
  auto model = models_.get(job.tenant, job.model);
  auto data = files_.blobs().path_of(job.training_sha256);
  if (!model.ok() || !data.ok()) {
    return fail("invalid_training_inputs",
                !model.ok() ? model.status().message() : data.status().message());
  }
  const fs::path work = root_ / job.tenant / job.id;
  const fs::path out = work / "out";
  // A job requeued by a restart resumes from its newest checkpoint.
  fs::path resume;
  int64_t newest = -1;
  std::error_code ec;
  if (fs::exists(out, ec)) {
    for (const auto& e : fs::directory_iterator(out, ec)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with("checkpoint-") && fs::exists(e.path() / "trainer_state.json")) {
        const int64_t step = std::atoll(name.c_str() + 11);
        if (step > newest) newest = step, resume = e.path();
      }
    }
  }
  executor::WorkerSpec spec;
  executor::TrainArgs args;
  args.model = model->directory;
  args.data = fs::absolute(*data).string();
  args.out = out.string();
  args.epochs = static_cast<double>(job.n_epochs);
  args.batch_size = job.batch_size / job.gpus;  // per rank: the step's rows are shared
  args.seq_len = std::min<int64_t>(kMaxSeqLen, model->context_length);
  args.lr = kBaseLearningRate * job.lr_multiplier;
  args.seed = job.seed;
  args.checkpoint_every = job.checkpoint_interval;
  args.log_every = 10;
  args.device = pools_.worker_device(job.pool);
  // Contained (locally): it reads its model and data, writes its directory; one worker alone
  // has no network at all (a group's ranks meet over loopback TCP).
  spec.sandbox = sandbox_;
  spec.sandbox.read = {model->directory, *data};
  if (!job.validation_file.empty()) {
    auto validation = files_.blobs().path_of(job.validation_sha256);
    if (!validation.ok()) return fail("invalid_validation_file", validation.status().message());
    args.validation_data = fs::absolute(*validation).string();
    spec.sandbox.read.push_back(*validation);
  }
  if (!resume.empty()) {
    args.resume = resume.string();
    add_event(job, "info", "message", "Resuming from " + resume.filename().string());
  }
  spec.work_dir = work;
  spec.cpu_threads = worker_threads_;
  spec.sandbox.network = job.gpus > 1;
  const executor::Launcher& launcher = pools_.launcher(job.pool);
  // CUDA maps huge ranges; a remote node's memory is its cluster's to bound.
  if (pools_.gpu_pool(job.pool) || launcher.remote()) spec.sandbox.address_space_bytes = 0;
  // On a remote pool the devices are counted (Slurm assigns them, as GRES); locally, named.
  if (pools_.gpu_pool(job.pool) || launcher.remote()) spec.gpus = allocation.devices;
  spec.argv = {worker_.string()};
  for (std::string& arg : executor::to_argv(args)) spec.argv.push_back(std::move(arg));
  bool done = false;
  int64_t last_step = 0;
  std::optional<double> final_valid_loss;
  std::optional<int64_t> trained_tokens;
  std::optional<double> last_loss;
  std::chrono::steady_clock::time_point last_metrics{};
  // The worker's events (platform/executor/worker_contract.h): a line that is not one is dropped
  // and logged, and a checkpoint is taken only inside the job's own output directory.
  auto on_event = [&](std::string_view line) {
    auto parsed = executor::parse_worker_event(line);
    if (!parsed.ok()) {
      spdlog::warn("job {}: {}", job.id, parsed.status().message());
      return;
    }
    const executor::WorkerEvent& e = *parsed;
    if (e.kind == executor::WorkerEvent::Kind::kStep) {
      // Every event is a durable write: small models step hundreds of times a second, so
      // metrics are kept at most every kMetricsInterval, and always the first and the last.
      last_loss = e.loss;
      const auto now = std::chrono::steady_clock::now();
      if (e.step != 1 && e.step != e.steps && now - last_metrics < kMetricsInterval) return;
      last_metrics = now;
      add_event(job, "info", "metrics",
                fmt::format("Step {}/{}: training loss={:.4f}", e.step, e.steps, e.loss),
                json::serialize(json::object{{"step", e.step},
                                             {"train_loss", e.loss},
                                             {"learning_rate", e.lr},
                                             {"total_steps", e.steps}}));
    } else if (e.kind == executor::WorkerEvent::Kind::kCheckpoint) {
      const fs::path path = fs::path(e.path).lexically_normal();
      const fs::path within = path.lexically_relative(out);
      if (within.empty() || *within.begin() == ".." || within == ".") {
        spdlog::warn("job {}: a checkpoint outside its output directory was ignored: {}", job.id,
                     e.path);
        return;
      }
      add_checkpoint(job, e.step, last_loss, e.valid_loss, path.string());
      add_event(job, "info", "message",
                e.valid_loss ? fmt::format("Checkpoint saved at step {}: validation loss={:.4f}",
                                           e.step, *e.valid_loss)
                             : fmt::format("Checkpoint saved at step {}", e.step));
    } else if (e.kind == executor::WorkerEvent::Kind::kDone) {
      done = true;
      last_step = e.step;
      final_valid_loss = e.valid_loss;
      trained_tokens = e.trained_tokens;
    }
  };
  add_event(job, "info", "message", "Fine-tuning job started");
  // The job holds its devices while its worker runs; their seconds go to the usage ledger as
  // they are used (every kMeterEvery, so a daemon killed mid-job loses at most that much), and
  // the rest when it stops.
  holdings_.set(job.tenant, job.id, job.gpus);
  // Between two bills, what it has used since the last is accrued beside the ledger every
  // second: a daemon killed mid-job loses at most that second, and the next one records the
  // rest (UsageLedger::settle_accrued).
  struct Meter {
    FineTuning& self;
    const JobRecord& job;
    std::chrono::steady_clock::time_point billed_to = std::chrono::steady_clock::now();
    // Since the last bill, as the ledger records it; false when the clock cannot say when.
    bool usage(std::chrono::steady_clock::time_point to, tenants::UsageRecord* out) const {
      const double seconds = std::chrono::duration<double>(to - billed_to).count();
      auto now = self.clock_.now();
      if (!now.ok() || seconds <= 0) return false;
      *out = {job.tenant, *now, tenants::UsageDimension::kGpuSeconds,
              seconds * static_cast<double>(job.gpus), "job", job.id};
      return true;
    }
    void seen() {
      tenants::UsageRecord accrued;
      if (!usage(std::chrono::steady_clock::now(), &accrued)) return;
      if (Status s = self.ledger_.accrue(accrued); !s.ok()) {
        spdlog::warn("job {}: usage not accrued: {}", job.id, s.message());
      }
    }
    void bill() {
      const auto to = std::chrono::steady_clock::now();
      tenants::UsageRecord record;
      if (!usage(to, &record)) return;
      if (Status s = self.ledger_.record(record); !s.ok()) {
        spdlog::error("job {}: usage not recorded yet: {}", job.id, s.message());
        return;  // billed with the next
      }
      billed_to = to;
    }
    ~Meter() {
      bill();
      self.holdings_.set(job.tenant, job.id, 0);
    }
  } meter{*this, job};
  Result<std::unique_ptr<executor::Worker>> worker =
      launcher.start(spec, static_cast<int>(job.gpus), allocation.node, on_event);
  if (!worker.ok()) return fail("worker_start_failed", worker.status().message());
  // Where it runs, for a daemon that restarts while it does.
  // (Unsaved, a restarted daemon cannot wait for this worker before resuming the job.)
  log_unsaved(job.id, "where its worker runs", db_.write([&](store::Session& s) -> Status {
    return s
        .exec("UPDATE fine_tuning_jobs SET worker_ref = ? WHERE id = ?",
              {(*worker)->handle(), job.id})
        .status();
  }));
  std::optional<executor::WorkerExit> exit;
  auto next_bill = std::chrono::steady_clock::now() + kMeterEvery;
  auto next_seen = std::chrono::steady_clock::now();
  auto next_licence_check = std::chrono::steady_clock::now();
  while (!exit) {
    exit = (*worker)->wait(std::chrono::milliseconds(100));
    if (exit) break;
    const auto tick = std::chrono::steady_clock::now();
    if (tick >= next_bill) {
      meter.bill();
      next_bill = tick + kMeterEvery;
    } else if (tick >= next_seen) {
      meter.seen();
      next_seen = tick + std::chrono::seconds(1);
    }
    if (tick >= next_licence_check) {
      next_licence_check = tick + kLicenceCheckEvery;
      // The licence binds running work: revoked, expired past its grace, the tenant suspended
      // or the month's GPU-hours spent, the job checkpoints and waits until it may run again.
      if (const std::string held = watch_.held(job.tenant); !held.empty()) {
        (*worker)->cancel(kCancelGrace);
        add_event(job, "warn", "message",
                  "Stopped: " + held + "; the job resumes from its checkpoint when its licence "
                  "allows it to run");
        back_to_queue(job);
        return;
      }
    }
    std::unique_lock lock(mutex_);
    if (stopping_) {
      lock.unlock();
      // Shutting down: the worker checkpoints and the job goes back to the queue.
      (*worker)->cancel(kCancelGrace);
      log_unsaved(job.id, "its return to the queue", db_.write([&](store::Session& s) -> Status {
        return s.exec("UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ?", {job.id})
            .status();
      }));
      return;
    }
    const Running& self = running_[job.id];
    if (self.cancel) {
      lock.unlock();
      (*worker)->cancel(kCancelGrace);
      log_unsaved(job.id, "its cancellation",
                  finish(job, JobStatus::kCancelled, "", "", "", std::nullopt));
      return;
    }
    if (self.preempt) {
      lock.unlock();
      // Its devices go to another tenant's guarantee: it checkpoints, waits, and resumes.
      (*worker)->cancel(kCancelGrace);
      add_event(job, "warn", "message",
                "Preempted: its devices are needed elsewhere (a tenant within its guarantee, "
                "or a node being drained); the job resumes from its checkpoint when devices "
                "are free");
      back_to_queue(job);
      return;
    }
  }
  if (!exit->ok() || !done) {
    const std::string reason = exit->ok() ? "the worker ended without a model" : exit->reason;
    if (!exit->ok() && executor::device_failure(reason) &&
        (pools_.gpu_pool(job.pool) || launcher.remote())) {
      // Not the job's fault: the node is drained, and the job waits to run elsewhere from its
      // last checkpoint, without spending a retry.
      add_event(job, "error", "message",
                fmt::format("Device failure on node {} ({}); the node is drained and the job "
                            "resumes elsewhere from its last checkpoint",
                            allocation.node, reason));
      back_to_queue(job);
      if (Status s = pools_.set_draining(job.pool, allocation.node, true); !s.ok()) {
        spdlog::error("draining {}/{}: {}", job.pool, allocation.node, s.message());
      }
      return;
    }
    if (job.attempts < job.max_retries) {  // the policy says: again, from the last checkpoint
      add_event(
          job, "warn", "message",
          fmt::format("Worker failed ({}); retrying from the last checkpoint (retry {} of {})",
                      reason, job.attempts + 1, job.max_retries));
      log_unsaved(job.id, "its retry", db_.write([&](store::Session& s) -> Status {
        return s
            .exec(
                "UPDATE fine_tuning_jobs SET status = 'queued', attempts = attempts + 1, "
                "worker_ref = NULL WHERE id = ?",
                {job.id})
            .status();
      }));
      return;
    }
    return fail("worker_failed", reason);
  }
  const std::string id = fine_tuned_model_id(job);
  auto m = models_.record_fine_tune(job.tenant, id, out, job.id);
  if (!m.ok()) return fail("model_registration_failed", m.status().message());
  add_checkpoint(job, last_step, last_loss, final_valid_loss, out.string());  // the final model
  log_unsaved(job.id, "its success",
              finish(job, JobStatus::kSucceeded, "", "", m->id, trained_tokens));
}

json::object FineTuning::describe(const JobRecord& j) const {
  json::object o = job_json(j);
  if (j.status == JobStatus::kQueued) {
    if (auto info = pools_.pending(j.id)) {
      o["queue"] = {{"position", info->position}, {"reason", info->reason}};
    }
  }
  return o;
}

void add_fine_tuning_routes(Router& router, FineTuning& jobs) {
  using tenants::Permission;
  router.add("POST", "/v1/fine_tuning/jobs", Access::tenant(Permission::kWrite),
             [&jobs](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               auto j = jobs.create(request.principal.tenant, *body);
               if (!j.ok()) return Response::error(j.status());
               return Response::json(200, jobs.describe(*j));
             });
  router.add("GET", "/v1/fine_tuning/jobs", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto page = parse_page(request, 20, 100);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               auto list = jobs.list(request.principal.tenant, page->after, page->limit, &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& j : *list) data.push_back(jobs.describe(j));
               return list_response(std::move(data), has_more);
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto j = jobs.get(request.principal.tenant, request.param("id"));
               if (!j.ok()) return Response::error(j.status());
               return Response::json(200, jobs.describe(*j));
             });
  router.add("POST", "/v1/fine_tuning/jobs/{id}/cancel", Access::tenant(Permission::kWrite),
             [&jobs](Request& request) {
               auto j = jobs.cancel(request.principal.tenant, request.param("id"));
               if (!j.ok()) return Response::error(j.status());
               return Response::json(200, jobs.describe(*j));
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}/checkpoints", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto page = parse_page(request, 10, 100);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               const std::string id(request.param("id"));
               auto job = jobs.get(request.principal.tenant, id);
               if (!job.ok()) return Response::error(job.status());
               auto list = jobs.checkpoints(request.principal.tenant, id, page->after, page->limit,
                                            &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& c : *list) {
                 json::object metrics{{"step", c.step}};
                 if (c.train_loss) metrics["train_loss"] = *c.train_loss;
                 if (c.valid_loss) metrics["valid_loss"] = *c.valid_loss;
                 // The checkpoint's name, after the model the job makes (or made).
                 const std::string model = job->fine_tuned_model.empty() ? fine_tuned_model_id(*job)
                                                                         : job->fine_tuned_model;
                 data.push_back(json::object{
                     {"object", "fine_tuning.job.checkpoint"},
                     {"id", c.id},
                     {"created_at", c.created_at},
                     {"fine_tuned_model_checkpoint", fmt::format("{}:ckpt-step-{}", model, c.step)},
                     {"fine_tuning_job_id", c.job_id},
                     {"metrics", std::move(metrics)},
                     {"step_number", c.step}});
               }
               return list_response(std::move(data), has_more);
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}/events", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               // ?stream=true: the events so far, then each new one as it happens, as
               // server-sent events, until the job ends ("data: [DONE]").
               if (request.query_param("stream").value_or("") == "true") {
                 return jobs.stream_events(request.principal.tenant, request.param("id"),
                                           request.query_param("after").value_or(""));
               }
               auto page = parse_page(request, 20, 1000);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               auto list = jobs.events(request.principal.tenant, request.param("id"), page->after,
                                       page->limit, &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& e : *list) data.push_back(event_json(e));
               return list_response(std::move(data), has_more);
             });
}

}  // namespace mh::api
