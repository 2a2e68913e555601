#include "platform/api/jobs/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <tuple>

#include "platform/api/jobs/protocol.h"
#include "platform/api/jsonl.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"
#include "platform/engine/model.h"
#include "platform/executor/launcher.h"
#include "platform/executor/worker_contract.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

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

}  // namespace

FineTuning::FineTuning(const Context& context, Files& files, Models& models,
                       Pools& pools, JobOptions options)
    : context_(context),
      store_(context.db),
      files_(files),
      models_(models),
      pools_(pools),
      options_(std::move(options)) {}

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
  MH_ASSIGN_OR_RETURN(const std::vector<JobStore::Interrupted> interrupted,
                      store_.interrupted());
  for (const JobStore::Interrupted& job : interrupted) {
    const auto waiting = std::chrono::steady_clock::now();
    // Its worker is waited for (a Slurm job, outliving its daemon, is told to checkpoint and
    // stop first).
    const bool was_running = pools_.launcher(job.pool).reclaim(job.worker_ref,
                                                                  std::chrono::seconds(30));
    // What the attempt used up to the dead daemon's last second was accrued beside the ledger
    // and is recorded already (UsageLedger::settle_accrued, at start); here, the rest: from
    // then to when its worker was seen gone (it ran on alone while it checkpointed).
    auto now = context_.clock.now();
    if (was_running && now.ok()) {
      const double gone = static_cast<double>(unix_millis()) / 1000;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - waiting).count();
      double seconds = waited;
      if (auto seen = context_.usage.last_accrued("job", job.id); seen && *seen <= gone) {
        seconds = std::min(gone - *seen, waited + kMaxUnseenTail);  // a clock step is no usage
      }
      Status billed = context_.usage.record({job.tenant, *now, tenants::UsageDimension::kGpuSeconds,
                                      seconds * static_cast<double>(job.gpus), "job", job.id});
      if (!billed.ok()) spdlog::error("job {}: usage not recorded: {}", job.id, billed.message());
    }
  }
  MH_ASSIGN_OR_RETURN(const std::vector<JobRecord> queued, store_.requeue_interrupted());
  for (const auto& j : queued) submit_to_pools(j);
  runner_ = std::thread([this] { run(); });
  return {};
}

Result<JobRecord> FineTuning::create(const std::string& tenant, const json::object& body) {
  const licensing::Entitlements& entitlements = context_.entitlements;
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
  MH_TRY(entitlements.check(tenant, "train", now));
  MH_ASSIGN_OR_RETURN(JobRequest request, parse_job_request(body));
  JobRecord j;
  if (request.pool) {
    if (!pools_.has_pool(*request.pool)) {
      return not_found(fmt::format("pool '{}' does not exist", *request.pool));
    }
    j.pool = *request.pool;
  }
  j.gpus = request.gpus;
  if (j.gpus > 1) {
    // Data-parallel ranks, one per device, on one node.
    MH_TRY(entitlements.check(tenant, "multi_gpu", now));
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
  j.checkpoint_interval = request.checkpoint_interval;
  j.max_retries = request.max_retries;
  j.priority = request.priority;
  j.id = "ftjob-" + secure_random_base64url(18);
  j.tenant = tenant;
  j.created_at = now;
  j.model = request.model;
  MH_ASSIGN_OR_RETURN(ModelRecord base, models_.get(tenant, j.model));
  MH_TRY(check_model_params(entitlements, tenant, base.parameters));
  if (!base.base.empty()) {
    return invalid_argument(
        fmt::format("model '{}' is a LoRA adapter of '{}'; fine-tune '{}' instead (with "
                    "method.lora for another adapter)",
                    base.id, base.base, base.base),
        "model");
  }
  if (request.lora) {
    if (base.kind == "preset") {
      return invalid_argument(
          fmt::format("model '{}' trains from scratch; LoRA adapts a model with weights",
                      base.id),
          "method.lora");
    }
    if (request.method == "dpo" && request.lora->dropout > 0) {
      return invalid_argument(
          "DPO's passes run without dropout (as TRL's trainer does by default); leave out "
          "method.lora.dropout",
          "method.lora.dropout");
    }
    engine::LoraConfig lora;
    lora.target_modules = request.lora->target_modules;
    if (const auto family = engine::family_named(base.family)) {
      if (Status s = lora.check_targets(*family); !s.ok()) {
        return invalid_argument(s.message(), "method.lora.target_modules");
      }
    }
    j.lora = request.lora;
  }
  for (auto [key, id, out, bytes] :
       {std::tuple{"training_file", std::optional<std::string>(request.training_file),
                   &j.training_file, &j.training_sha256},
        std::tuple{"validation_file", request.validation_file, &j.validation_file,
                   &j.validation_sha256}}) {
    if (!id) continue;
    MH_ASSIGN_OR_RETURN(FileRecord f, files_.get(tenant, *id));
    if (f.purpose != "fine-tune") {
      return failed_precondition(
          fmt::format("{}: file '{}' has purpose '{}'; training data needs "
                      "purpose 'fine-tune'",
                      key, f.id, f.purpose));
    }
    *out = f.id;
    *bytes = f.sha256;
  }
  // The method decides what the data must hold: examples to imitate, or pairs to rank.
  const ExampleKind wanted =
      request.method == "dpo" ? ExampleKind::kPreference : ExampleKind::kSupervised;
  for (auto [key, sha] : {std::pair{"training_file", &j.training_sha256},
                          std::pair{"validation_file", &j.validation_sha256}}) {
    if (sha->empty()) continue;
    MH_ASSIGN_OR_RETURN(const fs::path path, files_.blobs().path_of(*sha));
    MH_ASSIGN_OR_RETURN(const ExampleKind kind, training_file_kind(path));
    if (kind != wanted) {
      return invalid_argument(
          fmt::format("{} holds {} examples; method.type \"{}\" trains on {} examples{}", key,
                      kind_name(kind), request.method, kind_name(wanted),
                      wanted == ExampleKind::kPreference
                          ? " (input, preferred_output, non_preferred_output)"
                          : ""),
          key);
    }
  }
  // The CUDA trainer runs neither adapters nor preference pairs yet.
  if ((request.lora || request.method == "dpo") && pools_.gpu_pool(j.pool)) {
    return invalid_argument(
        fmt::format("pool '{}' trains on GPUs, where {} jobs do not run yet; use a CPU pool",
                    j.pool, request.method == "dpo" ? "DPO" : "LoRA"),
        request.method == "dpo" ? "method.type" : "method.lora");
  }
  j.method = request.method;
  j.beta = request.beta;
  j.suffix = request.suffix;
  j.n_epochs = request.n_epochs;
  j.batch_size = request.batch_size;
  j.lr_multiplier = request.lr_multiplier;
  if (request.seed) {
    j.seed = *request.seed;
  } else {
    uint32_t r = 0;
    secure_random(&r, sizeof r);
    j.seed = r >> 1;
  }
  MH_TRY(admit_devices(entitlements, context_.usage, nullptr, tenant, "train", j.pool, "", j.gpus,
                       now));
  // The job, queued, and the events of its creation are one transaction. (The files were
  // checked line by line when they were uploaded and are the tenant's with the right purpose;
  // the worker checks that they tokenize and fill a row.)
  j.status = JobStatus::kQueued;
  MH_TRY(store_.insert(
      j, {make_event("info", "message", "Validating training file: " + j.training_file),
          make_event("info", "message", "Files validated, job queued")}));
  submit_to_pools(j);
  return j;
}

Result<JobRecord> FineTuning::get(std::string_view tenant, std::string_view id) const {
  return store_.get(tenant, id);
}

Result<std::vector<JobRecord>> FineTuning::list(std::string_view tenant, std::string_view after,
                                                int64_t limit, bool* has_more) const {
  return store_.list(tenant, after, limit, has_more);
}

void FineTuning::cancel(std::string_view tenant, std::string_view id, Cancelled done) {
  auto j = get(tenant, id);
  if (!j.ok()) return done(j.status());
  if (is_final(j->status)) {
    return done(failed_precondition(
        fmt::format("job '{}' has already {}", j->id, status_name(j->status))));
  }
  {
    // The runner claims jobs under this lock, so a job not running now cannot start meanwhile.
    std::lock_guard lock(mutex_);
    auto it = running_.find(j->id);
    if (it != running_.end() && !it->second.done) {
      it->second.cancel = true;  // its thread stops the worker (within the grace period)
      it->second.on_done.push_back([this, tenant = j->tenant, id = j->id,
                                    done = std::move(done)] { done(get(tenant, id)); });
      return;
    }
    if (Status s = finish(*j, JobStatus::kCancelled, "", "", "", std::nullopt); !s.ok()) {
      return done(s);
    }
    pools_.finish(j->id);
  }
  done(get(tenant, id));
}

Result<std::vector<JobEvent>> FineTuning::events(std::string_view tenant, std::string_view id,
                                                 std::string_view after, int64_t limit,
                                                 bool* has_more) const {
  MH_TRY(get(tenant, id).status());  // 404 for another tenant's job
  MH_ASSIGN_OR_RETURN(auto rows, store_.events(tenant, id, after, limit + 1));
  *has_more = static_cast<int64_t>(rows.size()) > limit;
  std::vector<JobEvent> out;
  for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
    out.push_back(std::move(rows[i].event));
  }
  return out;
}

void FineTuning::add_checkpoint(const JobRecord& job, int64_t step, std::optional<double> loss,
                                std::optional<double> valid_loss, const std::string& path) {
  const auto now = context_.clock.now();
  Status s = store_.add_checkpoint(job, step, loss, valid_loss, path, now.ok() ? *now : 0);
  if (!s.ok()) spdlog::error("job {}: checkpoint not recorded: {}", job.id, s.message());
}

void FineTuning::requeue(const JobRecord& job, JobStore::Requeue how, std::string_view why) {
  log_unsaved(job.id, why, store_.requeue(job.id, how));
}

Result<std::vector<JobCheckpoint>> FineTuning::checkpoints(std::string_view tenant,
                                                           std::string_view id,
                                                           std::string_view after, int64_t limit,
                                                           bool* has_more) const {
  MH_TRY(get(tenant, id).status());  // 404 for another tenant's job
  return store_.checkpoints(tenant, id, after, limit, has_more);
}

JobEvent FineTuning::make_event(std::string level, std::string type, std::string message,
                                std::string data) const {
  const auto clock = context_.clock.now();
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
  Result<int64_t> seq = store_.add_event(job, e);
  if (!seq.ok()) {
    spdlog::warn("job {}: recording an event: {}", job.id, seq.status().message());
    return;
  }
  publish(job.id, *seq, event_sse(e), false);
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
    // The job's state as of this read: a finished job's stream ends after its backlog.
    Result<JobStore::Backlog> past = store_.backlog(tenant, id, after);
    read = past.status();
    if (read.ok()) {
      for (const auto& [seq, e] : past->events) {
        backlog += event_sse(e);
        last_seq = seq;
      }
      if (past->ended) last_seq = -1;
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
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
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
  MH_ASSIGN_OR_RETURN(
      const std::vector<int64_t> seqs,
      store_.finish(job, status, error_code, error_message, model, tokens, now, closing));
  for (size_t i = 0; i < closing.size(); ++i) {
    publish(job.id, seqs[i], event_sse(closing[i]), false);
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
  Result<std::optional<JobRecord>> claimed = store_.claim(id);
  if (!claimed.ok()) spdlog::error("fine-tuning runner: {}", claimed.status().message());
  if (!claimed.ok() || !*claimed) {
    pools_.finish(id);
    return;
  }
  const std::optional<JobRecord>& job = *claimed;
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
    std::unique_lock lock(mutex_);
    if (!stopping_) {
      if (again) {
        pools_.requeue(record.id);
      } else {
        pools_.finish(record.id);
      }
    }
    Running& self = running_[record.id];
    self.done = true;
    work_ = true;
    wake_.notify_all();
    // Those waiting for it to end are told outside the lock: they read the store and write to
    // their clients.
    std::vector<std::function<void()>> waiting = std::move(self.on_done);
    lock.unlock();
    for (auto& tell : waiting) tell();
  });
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
  const fs::path work = options_.root / job.tenant / job.id;
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
  if (job.method == "dpo") {
    args.method = "dpo";
    args.dpo_beta = job.beta;
  }
  if (job.lora) {
    args.lora_rank = job.lora->rank;
    args.lora_alpha = job.lora->alpha;
    args.lora_dropout = job.lora->dropout;
    for (const std::string& t : job.lora->target_modules) {
      args.lora_targets += (args.lora_targets.empty() ? "" : ",") + t;
    }
    args.lora_base = job.model;
  }
  // Contained (locally): it reads its model and data, writes its directory; one worker alone
  // has no network at all (a group's ranks meet over loopback TCP).
  spec.sandbox = options_.sandbox;
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
  spec.cpu_threads = options_.worker_threads;
  spec.sandbox.network = job.gpus > 1;
  const executor::Launcher& launcher = pools_.launcher(job.pool);
  // CUDA maps huge ranges; a remote node's memory is its cluster's to bound.
  if (pools_.gpu_pool(job.pool) || launcher.remote()) spec.sandbox.address_space_bytes = 0;
  // On a remote pool the devices are counted (Slurm assigns them, as GRES); locally, named.
  if (pools_.gpu_pool(job.pool) || launcher.remote()) spec.gpus = allocation.devices;
  spec.argv = {options_.worker.string()};
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
      json::object data{{"step", e.step},
                        {"train_loss", e.loss},
                        {"learning_rate", e.lr},
                        {"total_steps", e.steps}};
      std::string message =
          fmt::format("Step {}/{}: training loss={:.4f}", e.step, e.steps, e.loss);
      if (e.token_accuracy) data["train_mean_token_accuracy"] = *e.token_accuracy;
      if (e.reward_margin && e.reward_accuracy) {  // DPO
        data["reward_margin"] = *e.reward_margin;
        data["reward_accuracy"] = *e.reward_accuracy;
        message += fmt::format(", reward margin={:.4f}, reward accuracy={:.2f}", *e.reward_margin,
                               *e.reward_accuracy);
      }
      add_event(job, "info", "metrics", std::move(message), json::serialize(data));
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
  context_.holdings.set(job.tenant, job.id, job.gpus);
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
      auto now = self.context_.clock.now();
      if (!now.ok() || seconds <= 0) return false;
      *out = {job.tenant, *now, tenants::UsageDimension::kGpuSeconds,
              seconds * static_cast<double>(job.gpus), "job", job.id};
      return true;
    }
    void seen() {
      tenants::UsageRecord accrued;
      if (!usage(std::chrono::steady_clock::now(), &accrued)) return;
      if (Status s = self.context_.usage.accrue(accrued); !s.ok()) {
        spdlog::warn("job {}: usage not accrued: {}", job.id, s.message());
      }
    }
    void bill() {
      const auto to = std::chrono::steady_clock::now();
      tenants::UsageRecord record;
      if (!usage(to, &record)) return;
      if (Status s = self.context_.usage.record(record); !s.ok()) {
        spdlog::error("job {}: usage not recorded yet: {}", job.id, s.message());
        return;  // billed with the next
      }
      billed_to = to;
    }
    ~Meter() {
      bill();
      self.context_.holdings.set(job.tenant, job.id, 0);
    }
  } meter{*this, job};
  Result<std::unique_ptr<executor::Worker>> worker =
      launcher.start(spec, static_cast<int>(job.gpus), allocation.node, on_event);
  if (!worker.ok()) return fail("worker_start_failed", worker.status().message());
  // Where it runs, for a daemon that restarts while it does.
  // (Unsaved, a restarted daemon cannot wait for this worker before resuming the job.)
  log_unsaved(job.id, "where its worker runs", store_.set_worker_ref(job.id, (*worker)->handle()));
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
      if (const std::string held = context_.watch.held(job.tenant); !held.empty()) {
        (*worker)->cancel(kCancelGrace);
        add_event(job, "warn", "message",
                  "Stopped: " + held + "; the job resumes from its checkpoint when its licence "
                  "allows it to run");
        requeue(job, JobStore::Requeue::kResume, "its return to the queue");
        return;
      }
    }
    std::unique_lock lock(mutex_);
    if (stopping_) {
      lock.unlock();
      // Shutting down: the worker checkpoints and the job goes back to the queue.
      (*worker)->cancel(kCancelGrace);
      requeue(job, JobStore::Requeue::kStopping, "its return to the queue");
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
      requeue(job, JobStore::Requeue::kResume, "its return to the queue");
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
      requeue(job, JobStore::Requeue::kResume, "its return to the queue");
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
      requeue(job, JobStore::Requeue::kRetry, "its retry");
      return;
    }
    return fail("worker_failed", reason);
  }
  const std::string id = fine_tuned_model_id(job);
  // A LoRA job's model is its adapter, on the model it trained on.
  auto m = models_.record_fine_tune(job.tenant, id, out, job.id, job.lora ? job.model : "");
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

}  // namespace mh::api
