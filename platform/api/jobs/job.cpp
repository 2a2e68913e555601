#include "platform/api/jobs/job.h"

#include <fmt/format.h>

#include "platform/base/enum_names.h"

namespace mh::api {

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

std::string fine_tuned_model_id(const JobRecord& job) {
  return fmt::format("ft:{}:{}:{}", job.model, job.suffix.empty() ? job.tenant : job.suffix,
                     job.id.substr(6, 8));
}

}  // namespace mh::api
