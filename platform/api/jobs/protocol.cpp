#include "platform/api/jobs/protocol.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include <algorithm>

namespace mh::api {

namespace json = boost::json;

namespace {

json::value or_null(const std::optional<int64_t>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::value string_or_null(const std::string& s) {
  return s.empty() ? json::value(nullptr) : json::value(s);
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

Result<JobRequest> parse_job_request(const json::object& body) {
  JobRequest r;
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
    r.pool = std::string(v->as_string());
  }
  MH_ASSIGN_OR_RETURN(r.gpus, small_int("gpus", 1, 1, 64));
  MH_ASSIGN_OR_RETURN(r.checkpoint_interval, small_int("checkpoint_interval", 50, 1, 1'000'000));
  MH_ASSIGN_OR_RETURN(r.max_retries, small_int("max_retries", 0, 0, 10));
  MH_ASSIGN_OR_RETURN(r.priority, small_int("priority", 0, -100, 100));
  const json::value* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return invalid_argument("\"model\" must name one of your models", "model");
  }
  r.model = std::string(model->as_string());
  for (const char* key : {"training_file", "validation_file"}) {
    const json::value* v = body.if_contains(key);
    const bool training = key == std::string_view("training_file");
    if (v == nullptr || v->is_null()) {
      if (training) return invalid_argument(std::string("\"") + key + "\" is required", key);
      continue;
    }
    if (!v->is_string()) {
      return invalid_argument(std::string("\"") + key + "\" must be a file id", key);
    }
    (training ? r.training_file : r.validation_file.emplace()) = std::string(v->as_string());
  }
  if (const json::value* v = body.if_contains("suffix"); v != nullptr && !v->is_null()) {
    const bool ok = v->is_string() && !v->as_string().empty() && v->as_string().size() <= 40 &&
                    std::all_of(v->as_string().begin(), v->as_string().end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                    });
    if (!ok) return invalid_argument("\"suffix\" must be 1-40 characters of a-z 0-9 -", "suffix");
    r.suffix = std::string(v->as_string());
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
  MH_ASSIGN_OR_RETURN(r.lr_multiplier,
                      hyper(*h, "learning_rate_multiplier", 1.0, 1e-3, 100, false));
  r.n_epochs = static_cast<int64_t>(epochs);
  r.batch_size = static_cast<int64_t>(batch);
  if (r.batch_size % r.gpus != 0) {
    return invalid_argument(
        fmt::format("hyperparameters.batch_size {} must be a multiple of gpus {}: each device "
                    "trains an equal share of every step's rows",
                    r.batch_size, r.gpus),
        "hyperparameters.batch_size");
  }
  if (const json::value* v = body.if_contains("seed"); v != nullptr && !v->is_null()) {
    if (!v->is_int64() || v->as_int64() < 0) {
      return invalid_argument("\"seed\" must be a non-negative integer", "seed");
    }
    r.seed = v->as_int64();
  }
  return r;
}

json::object job_json(const JobRecord& j) {
  json::object o{
      {"object", "fine_tuning.job"},
      {"id", j.id},
      {"model", j.model},
      {"created_at", j.created_at},
      {"finished_at", or_null(j.finished_at)},
      {"fine_tuned_model", string_or_null(j.fine_tuned_model)},
      {"organization_id", j.tenant},
      {"result_files", json::array()},
      {"status", status_name(j.status)},
      {"training_file", j.training_file},
      {"validation_file", string_or_null(j.validation_file)},
      {"hyperparameters",
       {{"n_epochs", j.n_epochs},
        {"batch_size", j.batch_size},
        {"learning_rate_multiplier", j.lr_multiplier}}},
      {"trained_tokens", or_null(j.trained_tokens)},
      {"seed", j.seed},
      {"user_provided_suffix", string_or_null(j.suffix)},
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

std::string event_sse(const JobEvent& event) {
  return "data: " + json::serialize(event_json(event)) + "\n\n";
}

json::object checkpoint_json(const JobCheckpoint& c, const JobRecord& job) {
  json::object metrics{{"step", c.step}};
  if (c.train_loss) metrics["train_loss"] = *c.train_loss;
  if (c.valid_loss) metrics["valid_loss"] = *c.valid_loss;
  // The checkpoint's name, after the model the job makes (or made).
  const std::string model =
      job.fine_tuned_model.empty() ? fine_tuned_model_id(job) : job.fine_tuned_model;
  return json::object{
      {"object", "fine_tuning.job.checkpoint"},
      {"id", c.id},
      {"created_at", c.created_at},
      {"fine_tuned_model_checkpoint", fmt::format("{}:ckpt-step-{}", model, c.step)},
      {"fine_tuning_job_id", c.job_id},
      {"metrics", std::move(metrics)},
      {"step_number", c.step}};
}

}  // namespace mh::api
