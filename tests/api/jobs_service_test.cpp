// The fine-tuning jobs, with no HTTP: the wire format (requests checked for form and refused by
// name, records in OpenAI's shapes), the store's typed queries on a real SQLite store, and the
// service creating, listing and cancelling a job from a tenant's model and file.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "platform/api/jobs/protocol.h"
#include "platform/api/jobs/service.h"
#include "platform/api/jobs/store.h"
#include "tests/api/service_platform.h"

namespace mh::api {
namespace {

namespace json = boost::json;

json::object body_of(std::string_view text) { return json::parse(text).as_object(); }

// Cancels and waits for the answer, which comes at once for a job that is not running.
Result<JobRecord> cancel(FineTuning& jobs, std::string_view tenant, std::string_view id) {
  std::optional<Result<JobRecord>> answer;
  jobs.cancel(tenant, id, [&](Result<JobRecord> j) { answer = std::move(j); });
  REQUIRE(answer.has_value());
  return std::move(*answer);
}

// The param a refusal names.
std::string refused_param(std::string_view text) {
  auto parsed = parse_job_request(body_of(text));
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().code() == Code::kInvalidArgument);
  return parsed.status().param();
}

TEST_CASE("a job request is checked for form, and each refusal names its field") {
  auto minimal = parse_job_request(body_of(R"({"model":"m","training_file":"file-1"})"));
  REQUIRE(minimal.ok());
  CHECK(minimal->gpus == 1);
  CHECK(minimal->n_epochs == 1);
  CHECK(minimal->batch_size == 4);
  CHECK(minimal->lr_multiplier == 1.0);
  CHECK_FALSE(minimal->seed);
  CHECK_FALSE(minimal->validation_file);
  CHECK_FALSE(minimal->pool);

  auto full = parse_job_request(body_of(
      R"({"model":"m","training_file":"file-1","validation_file":"file-2","suffix":"run-2",
          "pool":"gpu","gpus":2,"seed":7,"priority":-3,"max_retries":2,
          "hyperparameters":{"n_epochs":3,"batch_size":"auto","learning_rate_multiplier":0.5}})"));
  REQUIRE(full.ok());
  CHECK(*full->validation_file == "file-2");
  CHECK(full->suffix == "run-2");
  CHECK(*full->pool == "gpu");
  CHECK(full->gpus == 2);
  CHECK(*full->seed == 7);
  CHECK(full->priority == -3);
  CHECK(full->max_retries == 2);
  CHECK(full->n_epochs == 3);
  CHECK(full->batch_size == 4);
  CHECK(full->lr_multiplier == 0.5);

  CHECK(refused_param(R"({"training_file":"file-1"})") == "model");
  CHECK(refused_param(R"({"model":"m"})") == "training_file");
  CHECK(refused_param(R"({"model":"m","training_file":3})") == "training_file");
  CHECK(refused_param(R"({"model":"m","training_file":"f","gpus":0})") == "gpus");
  CHECK(refused_param(R"({"model":"m","training_file":"f","pool":1})") == "pool");
  CHECK(refused_param(R"({"model":"m","training_file":"f","suffix":"Bad!"})") == "suffix");
  CHECK(refused_param(R"({"model":"m","training_file":"f","seed":-1})") == "seed");
  CHECK(refused_param(R"({"model":"m","training_file":"f","hyperparameters":[]})") ==
        "hyperparameters");
  CHECK(refused_param(R"({"model":"m","training_file":"f","hyperparameters":{"n_epochs":0}})") ==
        "hyperparameters.n_epochs");
  CHECK(refused_param(
            R"({"model":"m","training_file":"f","hyperparameters":{"n_epochs":1.5}})") ==
        "hyperparameters.n_epochs");
  CHECK(refused_param(
            R"({"model":"m","training_file":"f","gpus":3,"hyperparameters":{"batch_size":4}})") ==
        "hyperparameters.batch_size");
  // Fields the platform does not honour are refused by name, at any depth.
  CHECK(refused_param(R"({"model":"m","training_file":"f","integrations":[]})") ==
        "integrations");
  CHECK(refused_param(
            R"({"model":"m","training_file":"f","hyperparameters":{"warmup_steps":3}})") ==
        "hyperparameters.warmup_steps");
}

TEST_CASE("the OpenAI method field: supervised and dpo honoured, anything else refused by name") {
  auto supervised = parse_job_request(body_of(
      R"({"model":"m","training_file":"f","method":{"type":"supervised","supervised":
          {"hyperparameters":{"n_epochs":7,"batch_size":2,"learning_rate_multiplier":"auto"}}}})"));
  REQUIRE(supervised.ok());
  CHECK(supervised->n_epochs == 7);
  CHECK(supervised->batch_size == 2);
  CHECK(supervised->lr_multiplier == 1.0);
  auto bare = parse_job_request(
      body_of(R"({"model":"m","training_file":"f","method":{"type":"supervised"}})"));
  REQUIRE(bare.ok());
  CHECK(bare->n_epochs == 1);

  auto dpo = parse_job_request(body_of(
      R"({"model":"m","training_file":"f","method":{"type":"dpo","dpo":
          {"hyperparameters":{"beta":0.25,"n_epochs":2}}}})"));
  REQUIRE(dpo.ok());
  CHECK(dpo->method == "dpo");
  CHECK(dpo->beta == 0.25);
  CHECK(dpo->n_epochs == 2);
  auto dpo_defaults =
      parse_job_request(body_of(R"({"model":"m","training_file":"f","method":{"type":"dpo"}})"));
  REQUIRE(dpo_defaults.ok());
  CHECK(dpo_defaults->beta == 0.1);
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{"type":"dpo","dpo":
          {"hyperparameters":{"beta":0}}}})") == "method.dpo.hyperparameters.beta");
  // beta is DPO's: a supervised job has none, and one method's settings beside another type
  // are refused rather than read.
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{"type":"supervised",
          "supervised":{"hyperparameters":{"beta":0.2}}}})") ==
        "method.supervised.hyperparameters.beta");
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{"type":"dpo",
          "supervised":{}}})") == "method.supervised");
  CHECK(refused_param(
            R"({"model":"m","training_file":"f","method":{"type":"reinforcement"}})") ==
        "method.type");
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{}})") == "method.type");
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":"supervised"})") ==
        "method");
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{"type":"supervised",
          "dpo":{}}})") == "method.dpo");
  CHECK(refused_param(R"({"model":"m","training_file":"f","method":{"type":"supervised",
          "supervised":{"hyperparameters":{"n_epochs":0}}}})") ==
        "method.supervised.hyperparameters.n_epochs");
  CHECK(refused_param(R"({"model":"m","training_file":"f","gpus":2,"method":{"type":
          "supervised","supervised":{"hyperparameters":{"batch_size":3}}}})") ==
        "method.supervised.hyperparameters.batch_size");
  // The deprecated top-level place and the method's, both given: which one meant is unclear.
  CHECK(refused_param(R"({"model":"m","training_file":"f","hyperparameters":{"n_epochs":2},
          "method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":3}}}})") ==
        "hyperparameters");
}

TEST_CASE("method.lora: LoRA settings read with their defaults, each refusal by its path") {
  auto lora = parse_job_request(body_of(
      R"({"model":"m","training_file":"f","method":{"type":"supervised","lora":{"rank":16,
          "dropout":0.05,"target_modules":["q_proj","self_attn.v_proj"]}}})"));
  REQUIRE(lora.ok());
  REQUIRE(lora->lora);
  CHECK(lora->lora->rank == 16);
  CHECK(lora->lora->alpha == 32);  // twice the rank unless given
  CHECK(lora->lora->dropout == 0.05);
  CHECK(lora->lora->target_modules ==
        std::vector<std::string>{"q_proj", "self_attn.v_proj"});
  auto defaults = parse_job_request(
      body_of(R"({"model":"m","training_file":"f","method":{"type":"supervised","lora":{}}})"));
  REQUIRE(defaults.ok());
  CHECK(*defaults->lora == LoraSettings{});
  auto full = parse_job_request(
      body_of(R"({"model":"m","training_file":"f","method":{"type":"supervised"}})"));
  CHECK_FALSE(full->lora);

  const std::string head = R"({"model":"m","training_file":"f","method":{"type":"supervised",)";
  CHECK(refused_param(head + R"("lora":8}})") == "method.lora");
  CHECK(refused_param(head + R"("lora":{"rank":0}}})") == "method.lora.rank");
  CHECK(refused_param(head + R"("lora":{"rank":2.5}}})") == "method.lora.rank");
  CHECK(refused_param(head + R"("lora":{"alpha":-1}}})") == "method.lora.alpha");
  CHECK(refused_param(head + R"("lora":{"dropout":1}}})") == "method.lora.dropout");
  CHECK(refused_param(head + R"("lora":{"target_modules":"q_proj"}}})") ==
        "method.lora.target_modules");
  CHECK(refused_param(head + R"("lora":{"target_modules":[]}}})") ==
        "method.lora.target_modules");
  CHECK(refused_param(head + R"("lora":{"target_modules":["q proj"]}}})") ==
        "method.lora.target_modules");
  CHECK(refused_param(head + R"("lora":{"use_dora":true}}})") == "method.lora.use_dora");

  // The job object echoes them; "all-linear" as the string PEFT writes.
  JobRecord j;
  j.lora = LoraSettings{};
  const json::object o = job_json(j);
  CHECK(o.at("method").at("lora").at("rank") == 8);
  CHECK(o.at("method").at("lora").at("target_modules") == "all-linear");
  j.method = "dpo";
  j.beta = 0.3;
  const json::object d = job_json(j);
  CHECK(d.at("method").at("type") == "dpo");
  CHECK(d.at("method").at("dpo").at("hyperparameters").at("beta") == 0.3);
  CHECK_FALSE(d.at("method").as_object().contains("supervised"));
  auto back = parse_lora(lora_json(*lora->lora), "lora");
  REQUIRE(back.ok());
  CHECK(*back == *lora->lora);
}

TEST_CASE("jobs, events and checkpoints are written in OpenAI's shapes") {
  JobRecord j;
  j.id = "ftjob-abcdefghijkl";
  j.tenant = "acme";
  j.model = "mh-gpt2-tiny";
  j.training_file = "file-1";
  j.status = JobStatus::kFailed;
  j.error_code = "worker_failed";
  j.error_message = "out of memory";
  j.created_at = 100;
  const json::object o = job_json(j);
  CHECK(o.at("object") == "fine_tuning.job");
  CHECK(o.at("status") == "failed");
  CHECK(o.at("fine_tuned_model").is_null());
  CHECK(o.at("validation_file").is_null());
  CHECK(o.at("organization_id") == "acme");
  CHECK(o.at("error").at("code") == "worker_failed");
  CHECK(o.at("hyperparameters").at("n_epochs") == 1);
  CHECK(o.at("method").at("type") == "supervised");
  CHECK(o.at("method").at("supervised").at("hyperparameters").at("batch_size") == 4);

  const JobEvent e{"ftevent-1", 5, "info", "Step 1/2", "metrics", R"({"step":1})"};
  CHECK(event_json(e).at("data").at("step") == 1);
  CHECK(event_sse(e).starts_with("data: {"));
  CHECK(event_sse(e).ends_with("}\n\n"));

  const JobCheckpoint c{"ftckpt-1", j.id, 10, 0.5, std::nullopt, 7};
  const json::object co = checkpoint_json(c, j);
  CHECK(co.at("fine_tuned_model_checkpoint") == "ft:mh-gpt2-tiny:acme:abcdefgh:ckpt-step-10");
  CHECK(co.at("metrics").at("train_loss") == 0.5);
  CHECK_FALSE(co.at("metrics").as_object().contains("valid_loss"));
}

struct Store : ServicePlatform {
  JobStore jobs{*db};

  JobRecord insert(const std::string& id, const std::string& tenant = "acme",
                   std::optional<LoraSettings> lora = std::nullopt) {
    JobRecord j;
    j.id = id;
    j.lora = std::move(lora);
    j.tenant = tenant;
    j.model = "m";
    j.training_file = "file-1";
    j.training_sha256 = std::string(64, 'a');
    j.created_at = 100;
    const JobEvent created{"ftevent-" + id, 100, "info", "queued", "message", ""};
    REQUIRE(jobs.insert(j, {created}).ok());
    return j;
  }
};

TEST_CASE("the store keeps a LoRA job's settings, and a full fine-tune has none") {
  Store s;
  LoraSettings lora;
  lora.rank = 4;
  lora.target_modules = {"q_proj", "v_proj"};
  s.insert("ftjob-lora", "acme", lora);
  s.insert("ftjob-full");
  CHECK(s.jobs.get("acme", "ftjob-lora")->lora == lora);
  CHECK_FALSE(s.jobs.get("acme", "ftjob-full")->lora);
  auto claimed = s.jobs.claim("ftjob-lora");
  REQUIRE(claimed.ok());
  REQUIRE(*claimed);
  CHECK((*claimed)->lora == lora);
}

TEST_CASE("the store's queries: scoped to the tenant, claims once, requeues, ends with events") {
  Store s;
  const JobRecord a = s.insert("ftjob-a");
  s.insert("ftjob-b", "globex");
  CHECK(s.jobs.get("acme", "ftjob-a")->status == JobStatus::kQueued);
  CHECK(s.jobs.get("globex", "ftjob-a").status().code() == Code::kNotFound);
  bool more = true;
  CHECK(s.jobs.list("acme", "", 10, &more)->size() == 1);

  // Claimed once: a second claim finds it running, not queued.
  auto claimed = s.jobs.claim("ftjob-a");
  REQUIRE(claimed.ok());
  REQUIRE(*claimed);
  CHECK((*claimed)->status == JobStatus::kRunning);
  CHECK_FALSE(*s.jobs.claim("ftjob-a"));
  REQUIRE(s.jobs.set_worker_ref("ftjob-a", "pid:42").ok());
  auto interrupted = s.jobs.interrupted();
  REQUIRE(interrupted->size() == 1);
  CHECK((*interrupted)[0].worker_ref == "pid:42");
  CHECK((*interrupted)[0].tenant == "acme");
  auto queued = s.jobs.requeue_interrupted();
  REQUIRE(queued->size() == 2);  // both tenants' queued jobs, oldest first
  CHECK(s.jobs.interrupted()->empty());

  REQUIRE(*s.jobs.claim("ftjob-a"));
  REQUIRE(s.jobs.requeue("ftjob-a", JobStore::Requeue::kRetry).ok());
  CHECK(s.jobs.get("acme", "ftjob-a")->attempts == 1);
  CHECK(s.jobs.get("acme", "ftjob-a")->status == JobStatus::kQueued);

  const JobEvent step{"ftevent-step", 101, "info", "Step 1/1", "metrics", R"({"step":1})"};
  auto seq = s.jobs.add_event(a, step);
  REQUIRE(seq.ok());
  auto backlog = s.jobs.backlog("acme", "ftjob-a", "");
  REQUIRE(backlog.ok());
  CHECK(backlog->events.size() == 2);
  CHECK_FALSE(backlog->ended);
  const std::vector<JobEvent> closing = {{"ftevent-end", 102, "info", "done", "message", ""}};
  auto seqs = s.jobs.finish(a, JobStatus::kSucceeded, "", "", "ft:m:acme:a", 1234, 103, closing);
  REQUIRE(seqs.ok());
  REQUIRE(seqs->size() == 1);
  CHECK((*seqs)[0] > *seq);
  const JobRecord done = *s.jobs.get("acme", "ftjob-a");
  CHECK(done.status == JobStatus::kSucceeded);
  CHECK(*done.trained_tokens == 1234);
  CHECK(*done.finished_at == 103);
  CHECK(done.fine_tuned_model == "ft:m:acme:a");
  backlog = s.jobs.backlog("acme", "ftjob-a", "ftevent-step");
  REQUIRE(backlog->events.size() == 1);
  CHECK(backlog->events[0].event.id == "ftevent-end");
  CHECK(backlog->ended);
  // Another tenant reads none of them; an unknown `after` is refused by name.
  CHECK(s.jobs.events("globex", "ftjob-a", "", -1)->empty());
  CHECK(s.jobs.events("acme", "ftjob-a", "ftevent-nope", -1).status().param() == "after");

  // Checkpoints: newest first, one per step, paged.
  for (int64_t step : {10, 20, 30, 20}) {
    REQUIRE(s.jobs.add_checkpoint(a, step, 1.0 / step, std::nullopt, "/ckpt", 104).ok());
  }
  auto page = s.jobs.checkpoints("acme", "ftjob-a", "", 2, &more);
  REQUIRE(page->size() == 2);
  CHECK(more);
  CHECK((*page)[0].step == 30);
  page = s.jobs.checkpoints("acme", "ftjob-a", (*page)[1].id, 2, &more);
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].step == 10);
  CHECK_FALSE(more);
  CHECK(s.jobs.checkpoints("globex", "ftjob-a", "", 10, &more)->empty());
}

// The service on a real store, files and the built-in preset models; its pools are never
// started, so a job waits in the queue.
struct Service : ServicePlatform {
  Files files{context, 1 << 20};
  Models models{context, files, dir.path() / "models", dir.path() / "base-models"};
  Pools pools{context, {default_pool()}};
  FineTuning jobs{context, files, models, pools, JobOptions{dir.path() / "jobs", "", 1, {}}};

  static PoolConfig default_pool() {
    PoolConfig p;
    p.name = "default";
    p.nodes = {{"local", 2, 0}};
    return p;
  }
  Service() {
    REQUIRE(models.load_catalogue().ok());
    REQUIRE(jobs.start().ok());
  }
  void license(const std::string& tenant) {
    licensing::Limits limits;
    limits.max_gpus = 2;
    limits.gpu_hours_per_month = 10;
    limits.max_model_params = 1'000'000'000;
    ServicePlatform::license(tenant, {"train"}, limits);
  }
  FileRecord upload(const std::string& tenant, const std::string& purpose) {
    auto blob = blobs->put("{\"text\":\"hello world\"}\n");
    REQUIRE(blob.ok());
    auto f = files.commit(tenant, purpose, "train.jsonl", *blob, 1 << 20);
    REQUIRE_MESSAGE(f.ok(), f.status().to_string());
    return *f;
  }
};

TEST_CASE("the service queues a job from the tenant's model and file, and cancels it waiting") {
  Service s;
  const FileRecord data = s.upload("acme", "fine-tune");
  const std::string request =
      R"({"model":"mh-gpt2-tiny","training_file":")" + data.id + R"(","suffix":"first"})";
  // No licence: refused before anything is looked at.
  CHECK(s.jobs.create("acme", body_of(request)).status().code() == Code::kPermissionDenied);
  s.license("acme");
  s.license("globex");
  // References are checked: another tenant's file, an unknown model or pool, a file of another
  // purpose.
  const std::string theirs =
      R"({"model":"mh-gpt2-tiny","training_file":")" + data.id + R"("})";
  CHECK(s.jobs.create("globex", body_of(theirs)).status().code() == Code::kNotFound);
  CHECK(s.jobs.create("acme", body_of(R"({"model":"nope","training_file":")" + data.id + "\"}"))
            .status()
            .code() == Code::kNotFound);
  CHECK(s.jobs
            .create("acme", body_of(R"({"model":"mh-gpt2-tiny","pool":"nope","training_file":")" +
                                    data.id + "\"}"))
            .status()
            .code() == Code::kNotFound);
  const FileRecord other = s.upload("acme", "assistants");
  CHECK(s.jobs
            .create("acme", body_of(R"({"model":"mh-gpt2-tiny","training_file":")" + other.id +
                                    "\"}"))
            .status()
            .code() == Code::kFailedPrecondition);
  bool more = true;
  CHECK(s.jobs.list("acme", "", 10, &more)->empty());

  auto job = s.jobs.create("acme", body_of(request));
  REQUIRE_MESSAGE(job.ok(), job.status().to_string());
  CHECK(job->status == JobStatus::kQueued);
  CHECK(job->training_sha256 == data.sha256);
  CHECK(job->suffix == "first");
  CHECK(s.jobs.get("globex", job->id).status().code() == Code::kNotFound);
  CHECK(s.jobs.list("acme", "", 10, &more)->size() == 1);
  auto events = s.jobs.events("acme", job->id, "", 10, &more);
  REQUIRE(events->size() == 2);
  CHECK((*events)[1].message == "Files validated, job queued");
  CHECK(s.jobs.describe(*job).at("status") == "queued");

  auto cancelled = cancel(s.jobs, "acme", job->id);
  REQUIRE(cancelled.ok());
  CHECK(cancelled->status == JobStatus::kCancelled);
  CHECK(cancelled->finished_at);
  events = s.jobs.events("acme", job->id, "", 10, &more);
  CHECK(events->back().message == "Job cancelled");
  CHECK(cancel(s.jobs, "acme", job->id).status().code() == Code::kFailedPrecondition);
  CHECK(cancel(s.jobs, "globex", job->id).status().code() == Code::kNotFound);
}

TEST_CASE("a LoRA job keeps its settings, and LoRA on a model it cannot adapt is refused") {
  Service s;
  s.license("acme");
  const FileRecord data = s.upload("acme", "fine-tune");
  // A preset trains from scratch: there is no base to adapt.
  auto preset = s.jobs.create(
      "acme", body_of(R"({"model":"mh-gpt2-tiny","training_file":")" + data.id +
                      R"(","method":{"type":"supervised","lora":{}}})"));
  REQUIRE_FALSE(preset.ok());
  CHECK(preset.status().param() == "method.lora");
  bool more = true;
  CHECK(s.jobs.list("acme", "", 10, &more)->empty());
}

}  // namespace
}  // namespace mh::api
