#include "platform/api/jobs/store.h"

#include <fmt/format.h>

#include <variant>

#include <boost/json.hpp>

#include "platform/api/jobs/protocol.h"
#include "platform/base/crypto.h"
#include "tenants/tenant_scope.h"

namespace mh::api {

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, model, training_file, validation_file, suffix, status, error_code, "
    "error_message, fine_tuned_model, n_epochs, batch_size, lr_multiplier, seed, trained_tokens, "
    "created_at, finished_at, pool, gpus, checkpoint_interval, max_retries, attempts, priority, "
    "training_sha256, validation_sha256, lora, method, beta";

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
  j.method = r.text(26);
  if (!r.is_null(27)) j.beta = std::get<double>(r.value(27));
  if (!r.is_null(25)) {
    // Written by insert, from settings parse_lora accepted.
    boost::system::error_code ec;
    const boost::json::value lora = boost::json::parse(r.text(25), ec);
    if (!ec && lora.is_object()) {
      if (auto settings = parse_lora(lora.as_object(), "lora"); settings.ok()) j.lora = *settings;
    }
  }
  return j;
}

store::Value real_or_null(std::optional<double> v) {
  return v ? store::Value(*v) : store::Value(std::monostate());
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

Result<std::vector<JobStore::NumberedEvent>> read_events(store::Session& s,
                                                         std::string_view tenant,
                                                         std::string_view job,
                                                         std::string_view after, int64_t limit) {
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
  std::vector<JobStore::NumberedEvent> out;
  for (const auto& r : rows) {
    out.push_back({r.integer(6), JobEvent{r.text(0), r.integer(1), r.text(2), r.text(3), r.text(4),
                                          r.is_null(5) ? std::string() : r.text(5)}});
  }
  return out;
}

}  // namespace

Status JobStore::insert(const JobRecord& j, const std::vector<JobEvent>& events) {
  return db_.write([&](store::Session& s) -> Status {
    MH_TRY(s.exec(fmt::format("INSERT INTO fine_tuning_jobs ({}) VALUES (?, ?, ?, ?, ?, ?, ?, "
                              "NULL, NULL, NULL, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, ?, 0, ?, ?, "
                              "?, ?, ?, ?)",
                              kColumns),
                  {j.id, j.tenant, j.model, j.training_file,
                   store::text_or_null(j.validation_file), store::text_or_null(j.suffix),
                   std::string(status_name(j.status)), j.n_epochs, j.batch_size, j.lr_multiplier,
                   j.seed, j.created_at, j.pool, j.gpus, j.checkpoint_interval, j.max_retries,
                   j.priority, j.training_sha256, store::text_or_null(j.validation_sha256),
                   store::text_or_null(j.lora ? boost::json::serialize(lora_json(*j.lora))
                                              : std::string()),
                   j.method, j.method == "dpo" ? store::Value(j.beta) : store::Value()})
               .status());
    for (const JobEvent& e : events) MH_TRY(insert_event(s, j, e).status());
    return {};
  });
}

Result<JobRecord> JobStore::get(std::string_view tenant, std::string_view id) const {
  JobRecord j;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("fine_tuning_jobs", kColumns, id, "fine-tuning job"));
    j = from_row(row);
    return {};
  }));
  return j;
}

Result<std::vector<JobRecord>> JobStore::list(std::string_view tenant, std::string_view after,
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

Result<std::vector<JobStore::Interrupted>> JobStore::interrupted() const {
  std::vector<Interrupted> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query("SELECT id, tenant_id, gpus, COALESCE(worker_ref, ''), pool FROM "
                                "fine_tuning_jobs WHERE status = 'running'"));
    for (const auto& r : rows) {
      out.push_back({r.text(0), r.text(1), r.text(3), r.text(4), r.integer(2)});
    }
    return {};
  }));
  return out;
}

Result<std::vector<JobRecord>> JobStore::requeue_interrupted() {
  std::vector<JobRecord> queued;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    queued.clear();
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
  return queued;
}

Result<std::optional<JobRecord>> JobStore::claim(std::string_view id) {
  std::optional<JobRecord> job;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    job.reset();
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT {} FROM fine_tuning_jobs WHERE id = ? AND "
                                            "status = 'queued'",
                                            kColumns),
                                {std::string(id)}));
    if (rows.empty()) return {};
    job = from_row(rows[0]);
    return s.exec("UPDATE fine_tuning_jobs SET status = 'running' WHERE id = ?", {job->id})
        .status();
  }));
  if (job) job->status = JobStatus::kRunning;
  return job;
}

Status JobStore::set_worker_ref(std::string_view id, const std::string& ref) {
  return db_.write([&](store::Session& s) -> Status {
    return s
        .exec("UPDATE fine_tuning_jobs SET worker_ref = ? WHERE id = ?", {ref, std::string(id)})
        .status();
  });
}

Status JobStore::requeue(std::string_view id, Requeue how) {
  std::string_view sql;
  switch (how) {
    case Requeue::kResume:
      sql = "UPDATE fine_tuning_jobs SET status = 'queued', worker_ref = NULL WHERE id = ?";
      break;
    case Requeue::kStopping:
      sql = "UPDATE fine_tuning_jobs SET status = 'queued' WHERE id = ?";
      break;
    case Requeue::kRetry:
      sql =
          "UPDATE fine_tuning_jobs SET status = 'queued', attempts = attempts + 1, "
          "worker_ref = NULL WHERE id = ?";
      break;
  }
  return db_.write([&](store::Session& s) -> Status {
    return s.exec(sql, {std::string(id)}).status();
  });
}

Result<std::vector<int64_t>> JobStore::finish(const JobRecord& job, JobStatus status,
                                              const std::string& error_code,
                                              const std::string& error_message,
                                              const std::string& model,
                                              std::optional<int64_t> trained_tokens, int64_t now,
                                              const std::vector<JobEvent>& events) {
  std::vector<int64_t> seqs;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    seqs.clear();
    MH_TRY(s.exec("UPDATE fine_tuning_jobs SET status = ?, error_code = ?, error_message = ?, "
                  "fine_tuned_model = ?, trained_tokens = ?, finished_at = ? WHERE id = ?",
                  {std::string(status_name(status)), store::text_or_null(error_code),
                   store::text_or_null(error_message), store::text_or_null(model),
                   trained_tokens ? store::Value(*trained_tokens) : store::Value(std::monostate()),
                   now, job.id})
               .status());
    for (const JobEvent& e : events) {
      MH_ASSIGN_OR_RETURN(int64_t seq, insert_event(s, job, e));
      seqs.push_back(seq);
    }
    return {};
  }));
  return seqs;
}

Result<int64_t> JobStore::add_event(const JobRecord& job, const JobEvent& event) {
  int64_t seq = 0;
  MH_TRY(db_.write([&](store::Session& session) -> Status {
    MH_ASSIGN_OR_RETURN(seq, insert_event(session, job, event));
    return {};
  }));
  return seq;
}

Result<std::vector<JobStore::NumberedEvent>> JobStore::events(std::string_view tenant,
                                                              std::string_view job,
                                                              std::string_view after,
                                                              int64_t limit) const {
  std::vector<NumberedEvent> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(out, read_events(s, tenant, job, after, limit));
    return {};
  }));
  return out;
}

Result<JobStore::Backlog> JobStore::backlog(std::string_view tenant, std::string_view job,
                                            std::string_view after) const {
  Backlog backlog;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(backlog.events, read_events(s, tenant, job, after, -1));
    MH_ASSIGN_OR_RETURN(auto status, s.query("SELECT status FROM fine_tuning_jobs WHERE id = ?",
                                             {std::string(job)}));
    const auto state = status.empty() ? std::nullopt : parse_job_status(status[0].text(0));
    backlog.ended = state && is_final(*state);
    return {};
  }));
  return backlog;
}

Status JobStore::add_checkpoint(const JobRecord& job, int64_t step,
                                std::optional<double> train_loss,
                                std::optional<double> valid_loss, const std::string& path,
                                int64_t now) {
  return db_.write([&](store::Session& session) -> Status {
    return session
        .exec(
            "INSERT INTO fine_tuning_checkpoints (id, job_id, tenant_id, step, train_loss, "
            "valid_loss, path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, "
            "step) DO NOTHING",
            {"ftckpt-" + secure_random_base64url(18), job.id, job.tenant, step,
             real_or_null(train_loss), real_or_null(valid_loss), path, now})
        .status();
  });
}

Result<std::vector<JobCheckpoint>> JobStore::checkpoints(std::string_view tenant,
                                                         std::string_view id,
                                                         std::string_view after, int64_t limit,
                                                         bool* has_more) const {
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

}  // namespace mh::api
