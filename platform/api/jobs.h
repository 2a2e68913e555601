// Fine-tuning jobs, OpenAI-compatible paths, fields and states:
//   validating_files -> queued -> running -> succeeded | failed | cancelled
// A job trains one of the tenant's models on a JSONL file it uploaded (purpose "fine-tune") in an
// mh-worker process started through the executor; the worker's progress becomes the job's
// events, and its result a new model, "ft:<base>:<suffix>:<job>", in the tenant's registry.
// The scheduler (Pools) decides when and where each job runs: several run at once, each on
// its own devices; a job preempted for another tenant's guarantee checkpoints, waits again and
// resumes. A daemon that restarts puts running jobs back in the queue, and they resume from
// their last checkpoint.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "licensing/entitlements.h"
#include "platform/api/admission.h"
#include "platform/api/files.h"
#include "platform/api/models.h"
#include "platform/api/pools.h"
#include "platform/api/transport.h"
#include "licensing/trusted_clock.h"
#include "platform/executor/sandbox.h"
#include "platform/store/database.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

// A fine-tuning job's status, as OpenAI names them. (A job is created queued: its files were
// validated when they were uploaded.)
enum class JobStatus { kValidatingFiles, kQueued, kRunning, kSucceeded, kFailed, kCancelled };

std::string_view status_name(JobStatus status);
// The status stored as `name`; nullopt for a name that is none.
std::optional<JobStatus> parse_job_status(std::string_view name);
// Succeeded, failed or cancelled: the job will not run again.
bool is_final(JobStatus status);

struct JobRecord {
  std::string id;  // "ftjob-…"
  std::string tenant, model, training_file, validation_file, suffix;
  // The bytes the job trains on (blobs), kept while it may run even if the files are deleted.
  std::string training_sha256, validation_sha256;
  JobStatus status = JobStatus::kQueued;
  std::string error_code, error_message;
  std::string fine_tuned_model;
  int64_t n_epochs = 1, batch_size = 4;
  double lr_multiplier = 1.0;
  int64_t seed = 0;
  std::string pool = "default";
  int64_t gpus = 1, checkpoint_interval = 50, max_retries = 0, attempts = 0, priority = 0;
  std::optional<int64_t> trained_tokens, finished_at;
  int64_t created_at = 0;
};

struct JobCheckpoint {
  std::string id;  // "ftckpt-…"
  std::string job_id;
  int64_t step = 0;
  std::optional<double> train_loss, valid_loss;
  int64_t created_at = 0;
};

struct JobEvent {
  std::string id;  // "ftevent-…"
  int64_t created_at = 0;
  std::string level, message, type, data;  // data: JSON text or empty
};

class FineTuning {
 public:
  FineTuning(store::Database& db, FileStore& files, ModelStore& models,
             const licensing::Entitlements& entitlements, tenants::UsageLedger& ledger,
             DeviceHoldings& holdings, LicenceWatch& watch, Pools& pools,
             licensing::TrustedClock& clock, std::filesystem::path root,
             std::filesystem::path worker, int worker_threads);
  ~FineTuning();  // stops the runner; a running worker is stopped and its job requeued
  FineTuning(const FineTuning&) = delete;
  FineTuning& operator=(const FineTuning&) = delete;

  // What contains a local worker: enabled and the limits (each job adds its inputs). Set
  // before start().
  void contain_workers(const executor::Sandbox& sandbox) { sandbox_ = sandbox; }
  // Requeues jobs a previous daemon left running, then starts running queued jobs.
  Status start();

  Result<JobRecord> create(const std::string& tenant, const boost::json::object& body);
  // The API object: OpenAI's fields, Macrohard's, and for a queued job "queue": {"position",
  // "reason"} (why it waits, from the scheduler's last pass).
  boost::json::object describe(const JobRecord& j) const;
  Result<JobRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<JobRecord>> list(std::string_view tenant, std::string_view after,
                                      int64_t limit, bool* has_more) const;
  Result<JobRecord> cancel(std::string_view tenant, std::string_view id);
  Result<std::vector<JobEvent>> events(std::string_view tenant, std::string_view id,
                                       std::string_view after, int64_t limit, bool* has_more) const;
  // The job's events after `after` as server-sent events, then each new one as it is recorded,
  // ending with "data: [DONE]" once the job has ended.
  Response stream_events(std::string_view tenant, std::string_view id, std::string_view after);
  // Newest first, as OpenAI lists them.
  Result<std::vector<JobCheckpoint>> checkpoints(std::string_view tenant, std::string_view id,
                                                 std::string_view after, int64_t limit,
                                                 bool* has_more) const;

 private:
  void run();  // joins the threads of jobs that ended
  void submit_to_pools(const JobRecord& j);
  // The scheduler's word: run this job on these devices; give its devices back.
  void admit(const std::string& id, const Allocation& allocation);
  void preempt(const std::string& id);
  void execute(const JobRecord& job, const Allocation& allocation);
  // Its worker stopped short (preempted, licence held, device failure): it waits to resume from
  // its last checkpoint.
  void back_to_queue(const JobRecord& job);
  // Sends an event (seq, SSE text) to the job's live streams; `last` ends them.
  void publish(const std::string& job_id, int64_t seq, const std::string& text, bool last);
  void add_checkpoint(const JobRecord& job, int64_t step, std::optional<double> loss,
                      std::optional<double> valid_loss, const std::string& path);
  JobEvent make_event(std::string level, std::string type, std::string message,
                      std::string data = {}) const;
  void add_event(const JobRecord& job, std::string level, std::string type, std::string message,
                 std::string data = {});
  Status finish(const JobRecord& job, JobStatus status, const std::string& error_code,
                const std::string& error_message, const std::string& model,
                std::optional<int64_t> tokens);

  store::Database& db_;
  FileStore& files_;
  ModelStore& models_;
  const licensing::Entitlements& entitlements_;
  tenants::UsageLedger& ledger_;
  DeviceHoldings& holdings_;
  LicenceWatch& watch_;
  Pools& pools_;
  licensing::TrustedClock& clock_;
  const std::filesystem::path root_, worker_;
  const int worker_threads_;
  executor::Sandbox sandbox_;

  std::mutex mutex_;
  std::condition_variable wake_;  // the runner: work to look at, or stop
  std::condition_variable idle_;  // a job finished running
  bool stopping_ = false;
  bool work_ = true;  // something changed: a pass is due
  struct Running {
    std::thread thread;
    bool cancel = false;   // the tenant cancelled it
    bool preempt = false;  // the scheduler wants its devices back
    bool done = false;
  };
  std::map<std::string, Running> running_;  // by job id
  std::thread runner_;

  struct Subscriber {
    std::shared_ptr<ResponseStream> out;
    int64_t last_seq = 0;  // the newest event it has been sent
  };
  // A job's live streams, with a lock of their own: reading one job's history for a new stream
  // holds up that job's events only, never another's.
  struct Channel {
    std::mutex mutex;
    std::vector<Subscriber> subscribers;
  };
  std::shared_ptr<Channel> channel(const std::string& job_id, bool create);
  std::mutex channels_mutex_;  // only while a channel is found, made or dropped
  std::map<std::string, std::shared_ptr<Channel>> channels_;  // by job id
};

// POST/GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id}, POST …/{id}/cancel,
// GET …/{id}/events, GET …/{id}/checkpoints.
void add_fine_tuning_routes(Router& router, FineTuning& jobs);

}  // namespace mh::api
