// FineTuning: the fine-tuning jobs service (records in job.h, SQL in store.h, the wire format
// in protocol.h, the HTTP routes in routes.h). A job trains one of the tenant's models on a
// JSONL file it uploaded (purpose "fine-tune") in an mh-worker process started through the
// executor; the worker's progress becomes the job's events, and its result a new model,
// "ft:<base>:<suffix>:<job>", in the tenant's registry. The scheduler (Pools) decides when and
// where each job runs: several run at once, each on its own devices; a job preempted for
// another tenant's guarantee checkpoints, waits again and resumes. A daemon that restarts puts
// running jobs back in the queue, and they resume from their last checkpoint.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json/object.hpp>

#include "platform/api/context.h"
#include "platform/api/files/service.h"
#include "platform/api/jobs/job.h"
#include "platform/api/jobs/store.h"
#include "platform/api/models/service.h"
#include "platform/api/pools/service.h"
#include "platform/api/transport.h"
#include "platform/executor/sandbox.h"

namespace mh::api {

struct JobOptions {
  std::filesystem::path root;    // jobs' working directories: root/<tenant>/<job>/
  std::filesystem::path worker;  // mh-worker
  int worker_threads = 0;        // CPU threads per worker (MH_THREADS); 0: the worker decides
  // What contains a local worker: enabled and the limits (each job adds its inputs).
  executor::Sandbox sandbox;
};

class FineTuning {
 public:
  FineTuning(const Context& context, Files& files, Models& models, Pools& pools,
             JobOptions options);
  ~FineTuning();  // stops the runner; a running worker is stopped and its job requeued
  FineTuning(const FineTuning&) = delete;
  FineTuning& operator=(const FineTuning&) = delete;

  // Requeues jobs a previous daemon left running, then starts running queued jobs.
  Status start();

  Result<JobRecord> create(const std::string& tenant, const boost::json::object& body);
  // The API object: OpenAI's fields, Macrohard's, and for a queued job "queue": {"position",
  // "reason"} (why it waits, from the scheduler's last pass).
  boost::json::object describe(const JobRecord& j) const;
  Result<JobRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<JobRecord>> list(std::string_view tenant, std::string_view after,
                                      int64_t limit, bool* has_more) const;
  // Cancels the job. `done` gets the job as it ended: at once for a queued job (on this
  // thread), or once a running job's worker has stopped, within the grace period (on the job's
  // thread). The caller holds no thread meanwhile.
  using Cancelled = std::function<void(Result<JobRecord>)>;
  void cancel(std::string_view tenant, std::string_view id, Cancelled done);
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
  // Sends an event (seq, SSE text) to the job's live streams; `last` ends them.
  void publish(const std::string& job_id, int64_t seq, const std::string& text, bool last);
  void add_checkpoint(const JobRecord& job, int64_t step, std::optional<double> loss,
                      std::optional<double> valid_loss, const std::string& path);
  // Puts the job back in the queue (logged if the store refuses): kResume when its worker stopped
  // short (preempted, licence held, device failure) and it resumes from its last checkpoint.
  void requeue(const JobRecord& job, JobStore::Requeue how, std::string_view why);
  JobEvent make_event(std::string level, std::string type, std::string message,
                      std::string data = {}) const;
  void add_event(const JobRecord& job, std::string level, std::string type, std::string message,
                 std::string data = {});
  Status finish(const JobRecord& job, JobStatus status, const std::string& error_code,
                const std::string& error_message, const std::string& model,
                std::optional<int64_t> tokens);

  const Context context_;
  JobStore store_;
  Files& files_;
  Models& models_;
  Pools& pools_;
  const JobOptions options_;

  std::mutex mutex_;
  std::condition_variable wake_;  // the runner: work to look at, or stop
  bool stopping_ = false;
  bool work_ = true;  // something changed: a pass is due
  struct Running {
    std::thread thread;
    bool cancel = false;   // the tenant cancelled it
    bool preempt = false;  // the scheduler wants its devices back
    bool done = false;
    std::vector<std::function<void()>> on_done;  // cancellations waiting for it to end
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

}  // namespace mh::api
