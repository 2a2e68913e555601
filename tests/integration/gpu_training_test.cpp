// A fine-tuning job on the daemon's "gpu" pool: its mh-worker trains on the device-resident
// engine (weights, gradients and moments on the GPU), its losses track the same job's on a CPU
// slot, and the model it leaves deploys and answers. Runs where a CUDA device is visible (ctest
// label "gpu").
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "tests/integration/serving_platform.h"

namespace mh::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TrainingPlatform : ServingPlatform {
  std::string training_file;
  TrainingPlatform() : ServingPlatform({"--cpu-devices", "1"}) {
    license_models("acme", {"deploy", "custom_models", "train"});
    // Rows of 512 tokens (custom:tiny's context is 4096): enough for four steps of two rows.
    RawResponse r = upload("acme", "fine-tune", "train.jsonl", training_jsonl(400));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    training_file = std::string(json::parse(r.body).at("id").as_string());
  }
  // Runs a job on `pool` to its end; returns the job and its training losses by step (the
  // metrics events keep the first and last steps, and others at most every so often).
  std::pair<json::object, std::map<int64_t, double>> train(const std::string& pool) {
    RawResponse r = as(
        "acme", "POST", "/v1/fine_tuning/jobs",
        json::serialize(json::object{{"model", "custom:tiny"},
                                     {"training_file", training_file},
                                     {"pool", pool},
                                     {"seed", 3},
                                     {"hyperparameters", {{"n_epochs", 1}, {"batch_size", 2}}}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const std::string id(json::parse(r.body).at("id").as_string());
    const auto deadline = std::chrono::steady_clock::now() + 300s;
    json::object job;
    while (std::chrono::steady_clock::now() < deadline) {
      job = json::parse(as("acme", "GET", "/v1/fine_tuning/jobs/" + id).body).as_object();
      const auto status = job.at("status").as_string();
      if (status == "succeeded" || status == "failed" || status == "cancelled") break;
      std::this_thread::sleep_for(100ms);
    }
    REQUIRE_MESSAGE(job.at("status") == "succeeded", json::serialize(job));
    auto events =
        json::parse(as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body)
            .as_object();
    std::map<int64_t, double> losses;
    for (const auto& e : events.at("data").as_array()) {
      if (e.at("type") == "metrics") {
        const json::value& data = e.at("data");
        losses[data.at("step").to_number<int64_t>()] = data.at("train_loss").to_number<double>();
      }
    }
    return {job, losses};
  }
};

TEST_CASE(
    "a fine-tuning job on a GPU trains on the device, as a CPU job does, and its model "
    "serves") {
  TrainingPlatform p;
  const auto [gpu_job, gpu_losses] = p.train("gpu");
  const auto [cpu_job, cpu_losses] = p.train("default");
  REQUIRE(!gpu_losses.empty());
  // The first and the last step are always reported; others as they happened to be.
  CHECK(gpu_losses.begin()->first == cpu_losses.begin()->first);
  CHECK(gpu_losses.rbegin()->first == cpu_losses.rbegin()->first);
  int compared = 0;
  for (const auto& [step, loss] : gpu_losses) {
    if (!cpu_losses.contains(step)) continue;
    CAPTURE(step);
    CHECK(loss == doctest::Approx(cpu_losses.at(step)).epsilon(1e-2));
    ++compared;
  }
  CHECK(compared >= 2);
  // The GPU job's worker said where its training state lived.
  bool on_device = false;
  for (const auto& e : fs::recursive_directory_iterator(p.dir.path() / "data")) {
    if (e.path().filename() == "worker.log") {
      on_device =
          on_device || read_file(e.path()).find("weights, gradients and moments on the device") !=
                           std::string::npos;
    }
  }
  CHECK(on_device);
  // The model it left deploys on the GPU and completes.
  const std::string model(gpu_job.at("fine_tuned_model").as_string());
  RawResponse r = p.deploy({{"model", model}, {"pool", "gpu"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  json::object d = p.wait_ready(id);
  REQUIRE_MESSAGE(d.at("status") == "ready", json::serialize(d));
  r = p.complete("/v1/completions", {{"model", id},
                                     {"prompt", "the cat sat on"},
                                     {"max_tokens", 8},
                                     {"ignore_eos", true},
                                     {"temperature", 0}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK_FALSE(json::parse(r.body).at("choices").at(0).at("text").as_string().empty());
}

}  // namespace
}  // namespace mh::test
