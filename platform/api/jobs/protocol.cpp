#include "platform/api/jobs/protocol.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

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

// A hyperparameter: absent or "auto" gives `fallback`; otherwise a number in [lo, hi]. `where`
// names the object for errors ("hyperparameters", "method.supervised.hyperparameters").
Result<double> hyper(const json::object& h, std::string_view where, const char* key,
                     double fallback, double lo, double hi, bool integer) {
  const json::value* v = h.if_contains(key);
  if (v == nullptr || (v->is_string() && v->as_string() == "auto")) return fallback;
  const std::string param = fmt::format("{}.{}", where, key);
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

// Refuses the first key of `o` that is not in `known`, by its path: a setting this platform
// does not honour is never ignored.
Status only_known(const json::object& o, std::string_view where,
                  std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : o) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    const std::string param = where.empty() ? std::string(key) : fmt::format("{}.{}", where, key);
    return invalid_argument(
        fmt::format("\"{}\" is not supported here; known: {}", param, fmt::join(known, ", ")),
        param);
  }
  return {};
}

// `key` of `o` as an object: absent or null gives nullptr.
Result<const json::object*> object_at(const json::object& o, std::string_view where,
                                      std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return static_cast<const json::object*>(nullptr);
  const std::string param = where.empty() ? std::string(key) : fmt::format("{}.{}", where, key);
  if (!v->is_object()) return invalid_argument(param + " must be an object", param);
  return &v->as_object();
}

bool module_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && name.front() != '.' && name.back() != '.' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.';
         });
}

}  // namespace

Result<LoraSettings> parse_lora(const json::object& o, std::string_view where) {
  MH_TRY(only_known(o, where, {"rank", "alpha", "dropout", "target_modules"}));
  LoraSettings lora;
  MH_ASSIGN_OR_RETURN(double rank, hyper(o, where, "rank", 8, 1, 256, true));
  MH_ASSIGN_OR_RETURN(lora.alpha, hyper(o, where, "alpha", 2 * rank, 1e-3, 4096, false));
  MH_ASSIGN_OR_RETURN(lora.dropout, hyper(o, where, "dropout", 0, 0, 0.9, false));
  lora.rank = static_cast<int64_t>(rank);
  if (const json::value* t = o.if_contains("target_modules"); t != nullptr && !t->is_null()) {
    const std::string param = fmt::format("{}.target_modules", where);
    const auto bad = [&] {
      return invalid_argument(
          param + " must be \"all-linear\" or a list of 1-64 module names such as \"q_proj\"",
          param);
    };
    lora.target_modules.clear();
    if (t->is_string()) {
      if (t->as_string() != "all-linear") return bad();
      lora.target_modules.emplace_back("all-linear");
    } else if (t->is_array() && !t->as_array().empty() && t->as_array().size() <= 64) {
      for (const json::value& m : t->as_array()) {
        if (!m.is_string() || !module_name(m.as_string())) return bad();
        lora.target_modules.emplace_back(m.as_string());
      }
    } else {
      return bad();
    }
  }
  return lora;
}

json::object lora_json(const LoraSettings& lora) {
  json::array targets;
  for (const auto& t : lora.target_modules) targets.emplace_back(t);
  json::value modules = targets;
  if (lora.target_modules == std::vector<std::string>{"all-linear"}) modules = "all-linear";
  return {{"rank", lora.rank},
          {"alpha", lora.alpha},
          {"dropout", lora.dropout},
          {"target_modules", std::move(modules)}};
}

namespace {

// The training method and its hyperparameters: from method.<type>.hyperparameters, or from
// the top-level "hyperparameters" (OpenAI's older, deprecated place), never both.
Status parse_hyperparameters(const json::object& body, JobRequest& r) {
  MH_ASSIGN_OR_RETURN(const json::object* method, object_at(body, "", "method"));
  MH_ASSIGN_OR_RETURN(const json::object* legacy, object_at(body, "", "hyperparameters"));
  const json::object* h = legacy;
  std::string where = "hyperparameters";
  if (method != nullptr) {
    const json::value* type = method->if_contains("type");
    if (type == nullptr || !type->is_string()) {
      return invalid_argument("method.type must be \"supervised\" or \"dpo\"", "method.type");
    }
    if (type->as_string() != "supervised" && type->as_string() != "dpo") {
      return invalid_argument(fmt::format("method.type \"{}\" is not a training method this "
                                          "platform runs; use \"supervised\" or \"dpo\"",
                                          std::string_view(type->as_string())),
                              "method.type");
    }
    r.method = std::string(type->as_string());
    // The type's own settings only: "supervised" beside type dpo is a mistake, not a default.
    MH_TRY(only_known(*method, "method", {"type", r.method, "lora"}));
    MH_ASSIGN_OR_RETURN(const json::object* lora, object_at(*method, "method", "lora"));
    if (lora != nullptr) {
      MH_ASSIGN_OR_RETURN(r.lora, parse_lora(*lora, "method.lora"));
    }
    const std::string settings = "method." + r.method;
    MH_ASSIGN_OR_RETURN(const json::object* typed, object_at(*method, "method", r.method));
    if (typed != nullptr) {
      MH_TRY(only_known(*typed, settings, {"hyperparameters"}));
      MH_ASSIGN_OR_RETURN(const json::object* in_method,
                          object_at(*typed, settings, "hyperparameters"));
      if (in_method != nullptr && legacy != nullptr) {
        return invalid_argument(
            fmt::format("give the hyperparameters in {}.hyperparameters or in the deprecated "
                        "top-level \"hyperparameters\", not in both",
                        settings),
            "hyperparameters");
      }
      if (in_method != nullptr) {
        h = in_method;
        where = settings + ".hyperparameters";
      }
    }
  }
  static const json::object kNone;
  if (h == nullptr) h = &kNone;
  if (r.method == "dpo") {
    MH_TRY(only_known(*h, where, {"n_epochs", "batch_size", "learning_rate_multiplier", "beta"}));
    MH_ASSIGN_OR_RETURN(r.beta, hyper(*h, where, "beta", 0.1, 1e-3, 100, false));
  } else {
    MH_TRY(only_known(*h, where, {"n_epochs", "batch_size", "learning_rate_multiplier"}));
  }
  MH_ASSIGN_OR_RETURN(double epochs, hyper(*h, where, "n_epochs", 1, 1, 50, true));
  MH_ASSIGN_OR_RETURN(double batch, hyper(*h, where, "batch_size", 4, 1, 256, true));
  MH_ASSIGN_OR_RETURN(r.lr_multiplier,
                      hyper(*h, where, "learning_rate_multiplier", 1.0, 1e-3, 100, false));
  r.n_epochs = static_cast<int64_t>(epochs);
  r.batch_size = static_cast<int64_t>(batch);
  if (r.batch_size % r.gpus != 0) {
    return invalid_argument(
        fmt::format("{}.batch_size {} must be a multiple of gpus {}: each device trains an "
                    "equal share of every step's rows",
                    where, r.batch_size, r.gpus),
        where + ".batch_size");
  }
  return {};
}

}  // namespace

Result<JobRequest> parse_job_request(const json::object& body) {
  MH_TRY(only_known(body, "",
                    {"model", "training_file", "validation_file", "suffix", "seed",
                     "hyperparameters", "method", "pool", "gpus", "checkpoint_interval",
                     "max_retries", "priority"}));
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
  MH_TRY(parse_hyperparameters(body, r));
  if (const json::value* v = body.if_contains("seed"); v != nullptr && !v->is_null()) {
    if (!v->is_int64() || v->as_int64() < 0) {
      return invalid_argument("\"seed\" must be a non-negative integer", "seed");
    }
    r.seed = v->as_int64();
  }
  return r;
}

json::object job_json(const JobRecord& j) {
  const json::object hyperparameters{{"n_epochs", j.n_epochs},
                                     {"batch_size", j.batch_size},
                                     {"learning_rate_multiplier", j.lr_multiplier}};
  json::object typed_hyperparameters = hyperparameters;
  if (j.method == "dpo") typed_hyperparameters["beta"] = j.beta;
  json::object method{{"type", j.method},
                      {j.method, {{"hyperparameters", std::move(typed_hyperparameters)}}}};
  if (j.lora) method["lora"] = lora_json(*j.lora);
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
      {"hyperparameters", hyperparameters},
      {"method", std::move(method)},
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
