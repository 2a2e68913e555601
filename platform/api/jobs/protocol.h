// The fine-tuning jobs' wire format, OpenAI's shapes in one place: a creation request into a
// typed JobRequest (every field checked for form, refused by name), and records into the
// objects "fine_tuning.job", "fine_tuning.job.event" and "fine_tuning.job.checkpoint".
#pragma once

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "platform/api/jobs/job.h"
#include "platform/base/status.h"

namespace mh::api {

// POST /v1/fine_tuning/jobs, checked for form only: whether the model, files and pool exist
// and may be used is the service's to decide.
struct JobRequest {
  std::string model, training_file, suffix;  // suffix empty: not given
  std::optional<std::string> validation_file, pool;
  int64_t gpus = 1, checkpoint_interval = 50, max_retries = 0, priority = 0;
  // hyperparameters: absent or "auto" gives these.
  int64_t n_epochs = 1, batch_size = 4;
  double lr_multiplier = 1.0;
  std::string method = "supervised";  // method.type: "supervised" or "dpo"
  double beta = 0.1;                  // method.dpo.hyperparameters.beta
  std::optional<LoraSettings> lora;
  std::optional<int64_t> seed;  // absent: the service draws one
};
Result<JobRequest> parse_job_request(const boost::json::object& body);

// LoRA settings as the job object and the store write them, and read back.
boost::json::object lora_json(const LoraSettings& lora);
Result<LoraSettings> parse_lora(const boost::json::object& o, std::string_view where);

// "fine_tuning.job", without the queue position (the service adds it).
boost::json::object job_json(const JobRecord& job);
boost::json::object event_json(const JobEvent& event);
// One event as a server-sent event.
std::string event_sse(const JobEvent& event);
// "fine_tuning.job.checkpoint" of `job`.
boost::json::object checkpoint_json(const JobCheckpoint& checkpoint, const JobRecord& job);

}  // namespace mh::api
