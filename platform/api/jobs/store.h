// JobStore: the fine-tuning jobs' typed queries over store::Database, and the only place their
// SQL is written (fine_tuning_jobs, fine_tuning_events, fine_tuning_checkpoints). A tenant's
// reads are scoped to the tenant: another tenant's job is not found.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/api/jobs/job.h"
#include "platform/base/status.h"
#include "platform/store/database.h"

namespace mh::api {

class JobStore {
 public:
  explicit JobStore(store::Database& db) : db_(db) {}

  // The job, queued, and the events of its creation, in one transaction: a daemon killed
  // mid-way leaves either no job or a queued one with its events.
  Status insert(const JobRecord& job, const std::vector<JobEvent>& events);
  Result<JobRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<JobRecord>> list(std::string_view tenant, std::string_view after,
                                      int64_t limit, bool* has_more) const;

  // A job a previous daemon left running, and where its worker ran.
  struct Interrupted {
    std::string id, tenant, worker_ref, pool;
    int64_t gpus = 0;
  };
  Result<std::vector<Interrupted>> interrupted() const;
  // Puts the interrupted jobs back in the queue; every queued job, oldest first.
  Result<std::vector<JobRecord>> requeue_interrupted();
  // Moves a queued job to running: the job as it now is, or nullopt when it is not queued
  // (cancelled since it was).
  Result<std::optional<JobRecord>> claim(std::string_view id);
  // Where the job's worker runs (a launcher's handle), for a daemon that restarts meanwhile.
  Status set_worker_ref(std::string_view id, const std::string& ref);
  enum class Requeue {
    kResume,    // stopped short (preempted, licence held, device failure): resumes later
    kStopping,  // the daemon stops: the next one waits for the worker it names, then resumes
    kRetry,     // the worker failed and the job has a retry left: one more attempt counted
  };
  Status requeue(std::string_view id, Requeue how);
  // The job's end and the events that tell it, in one transaction; the events' sequence
  // numbers, in order.
  Result<std::vector<int64_t>> finish(const JobRecord& job, JobStatus status,
                                      const std::string& error_code,
                                      const std::string& error_message, const std::string& model,
                                      std::optional<int64_t> trained_tokens, int64_t now,
                                      const std::vector<JobEvent>& events);

  // An event recorded; its sequence number orders it among the job's events.
  Result<int64_t> add_event(const JobRecord& job, const JobEvent& event);
  struct NumberedEvent {
    int64_t seq = 0;
    JobEvent event;
  };
  // The job's events after the event `after` ("" for all), oldest first, at most `limit`
  // (-1: all); invalid_argument when `after` is not one of the job's.
  Result<std::vector<NumberedEvent>> events(std::string_view tenant, std::string_view job,
                                            std::string_view after, int64_t limit) const;
  // The same (all of them), and whether the job had ended, as of one read.
  struct Backlog {
    std::vector<NumberedEvent> events;
    bool ended = false;
  };
  Result<Backlog> backlog(std::string_view tenant, std::string_view job,
                          std::string_view after) const;

  // A checkpoint at `step` (a second one at the same step is ignored).
  Status add_checkpoint(const JobRecord& job, int64_t step, std::optional<double> train_loss,
                        std::optional<double> valid_loss, const std::string& path, int64_t now);
  // Newest first, before the checkpoint `after` ("" for the newest).
  Result<std::vector<JobCheckpoint>> checkpoints(std::string_view tenant, std::string_view id,
                                                 std::string_view after, int64_t limit,
                                                 bool* has_more) const;

 private:
  store::Database& db_;
};

}  // namespace mh::api
