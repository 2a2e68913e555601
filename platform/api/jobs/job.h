// A fine-tuning job's records, as the service, its store and its protocol share them. States
// as OpenAI names them:
//   validating_files -> queued -> running -> succeeded | failed | cancelled
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::api {

// A fine-tuning job's status. (A job is created queued: its files were validated when they
// were uploaded.)
enum class JobStatus { kValidatingFiles, kQueued, kRunning, kSucceeded, kFailed, kCancelled };

std::string_view status_name(JobStatus status);
// The status stored as `name`; nullopt for a name that is none.
std::optional<JobStatus> parse_job_status(std::string_view name);
// Succeeded, failed or cancelled: the job will not run again.
bool is_final(JobStatus status);

// method.lora: the job trains LoRA adapters on a frozen base instead of every weight
// (engine::LoraConfig), and its model is the adapter.
struct LoraSettings {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<std::string> target_modules = {"all-linear"};

  bool operator==(const LoraSettings&) const = default;
};

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
  std::string method = "supervised";  // or "dpo"
  double beta = 0.1;                  // dpo: the strength of the pull toward the reference
  std::optional<LoraSettings> lora;   // none: a full fine-tune
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

// The model a job makes: ft:<base>:<suffix, or the tenant>:<the job id's first 8 characters>.
std::string fine_tuned_model_id(const JobRecord& job);

}  // namespace mh::api
