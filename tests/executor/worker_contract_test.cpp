// The worker contract: the arguments the daemon gives each role come back from the argv the
// worker parses, and the events a worker writes are read back whole; anything else is refused
// with what is wrong, never thrown.
#include "platform/executor/worker_contract.h"

#include <doctest/doctest.h>
#include <CLI/CLI.hpp>

#include <limits>
#include <string>
#include <vector>

namespace mh::executor {
namespace {

TEST_CASE("the lines a worker writes parse into their events") {
  auto step = parse_worker_event(
      R"({"type":"step","step":3,"steps":10,"loss":2.5,"lr":0.001,"grad_norm":1.2,"tokens_per_s":900.5})");
  REQUIRE_MESSAGE(step.ok(), step.status().to_string());
  CHECK(step->kind == WorkerEvent::Kind::kStep);
  CHECK(step->step == 3);
  CHECK(step->steps == 10);
  CHECK(step->loss == 2.5);
  CHECK(step->lr == 0.001);

  auto checkpoint =
      parse_worker_event(R"({"type":"checkpoint","step":50,"path":"/d/out/checkpoint-50","valid_loss":1.25})");
  REQUIRE(checkpoint.ok());
  CHECK(checkpoint->path == "/d/out/checkpoint-50");
  CHECK(checkpoint->valid_loss == 1.25);
  auto plain = parse_worker_event(R"({"type":"checkpoint","step":50,"path":"/d/c"})");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->valid_loss.has_value());

  auto done = parse_worker_event(
      R"({"type":"done","step":90,"trained_tokens":46080,"path":"/d/out"})");
  REQUIRE(done.ok());
  CHECK(done->kind == WorkerEvent::Kind::kDone);
  CHECK(done->trained_tokens == 46080);

  auto stopped = parse_worker_event(R"({"type":"stopped","step":7,"checkpoint":"/d/c7"})");
  REQUIRE(stopped.ok());
  CHECK(stopped->path == "/d/c7");

  auto ready = parse_worker_event(R"({"type":"ready","port":40123})");
  REQUIRE(ready.ok());
  CHECK(ready->port == 40123);

  auto usage = parse_worker_event(
      R"({"type":"usage","tenant":"acme","prompt_tokens":12,"completion_tokens":3})");
  REQUIRE(usage.ok());
  CHECK(usage->tenant == "acme");
  CHECK(usage->prompt_tokens == 12);
  auto nobody = parse_worker_event(
      R"({"type":"usage","tenant":"","prompt_tokens":1,"completion_tokens":0})");
  REQUIRE(nobody.ok());
  CHECK(nobody->tenant.empty());

  auto stats = parse_worker_event(R"({"type":"stats","active":2,"queued":0})");
  REQUIRE(stats.ok());
  CHECK(stats->stats.size() == 2);
  CHECK_FALSE(stats->stats.contains("type"));
}

TEST_CASE("a malformed worker line is refused with what is wrong") {
  const std::pair<const char*, const char*> bad[] = {
      {"", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {R"({"step":1})", "\"type\" is missing"},
      {R"({"type":7})", "\"type\" must be a string"},
      {R"({"type":"reboot"})", "unknown type \"reboot\""},
      {R"({"type":"step","steps":10,"loss":1,"lr":1})", "\"step\" is missing"},
      {R"({"type":"step","step":-1,"steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":1.5,"steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":"1","steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":18446744073709551615,"steps":1,"loss":1,"lr":1})",
       "\"step\" must be an integer"},
      {R"({"type":"step","step":1,"steps":10,"loss":"nan","lr":1})", "\"loss\" must be a finite"},
      {R"({"type":"step","step":1,"steps":10,"loss":1e999,"lr":1})", "\"loss\" must be a finite"},
      {R"({"type":"checkpoint","step":1,"path":5})", "\"path\" must be a string"},
      {R"({"type":"ready","port":0})", "\"port\" must be from 1 to 65535"},
      {R"({"type":"ready","port":70000})", "\"port\" must be an integer from 0 to 65535"},
      {R"({"type":"usage","tenant":"a","prompt_tokens":-3,"completion_tokens":0})",
       "\"prompt_tokens\" must be an integer"},
  };
  for (const auto& [line, why] : bad) {
    CAPTURE(line);
    auto e = parse_worker_event(line);
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(e.status().message().find(why) != std::string::npos, e.status().message());
  }
  const std::string huge = R"({"type":"stats","x":")" + std::string(kMaxEventLine, 'a') + "\"}";
  auto e = parse_worker_event(huge);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("longer than") != std::string::npos);
}

// The argv as mh-worker's command line parses it: `args` filled from it, and the contract
// version it carried.
template <typename Args, typename Add>
Args parse_back(const std::vector<std::string>& argv, Add add, int* contract) {
  CLI::App app{"mh-worker"};
  Args args;
  *contract = 0;
  add(app, args, *contract);
  std::vector<std::string> reversed(argv.rbegin(), argv.rend());  // CLI11 parses from the back
  app.parse(reversed);
  return args;
}

TEST_CASE("each worker role's arguments come back from the argv the daemon gives it") {
  TrainArgs full;
  full.model = "/models/acme/llama 3";
  full.data = "/blobs/ab/cd";
  full.out = "/work/acme/ftjob-1/out";
  full.validation_data = "/blobs/ef/01";
  full.resume = "/work/acme/ftjob-1/out/checkpoint-40";
  full.epochs = 3;
  full.steps = 120;
  full.batch_size = 4;
  full.seq_len = 512;
  full.grad_accum = 2;
  full.warmup = 7;
  full.lr = 1e-5 * 1.7;  // no short decimal: the argv must still give back the same double
  full.min_lr_ratio = 0.05;
  full.weight_decay = 0.01;
  full.clip = 0.5;
  full.seed = 18446744073709551615ull;
  full.checkpoint_every = 10;
  full.log_every = 1;
  full.device = "cuda";
  full.precision = "bf16";
  full.method = "dpo";
  full.dpo_beta = 0.1;
  full.lora_rank = 16;
  full.lora_alpha = 32;
  full.lora_dropout = 0.05;
  full.lora_targets = "q_proj,v_proj";
  full.lora_base = "Qwen/Qwen2.5-0.5B";
  TrainArgs bare;  // the engine's defaults
  bare.model = "m";
  bare.data = "d.jsonl";
  bare.out = "o";
  for (const TrainArgs& sent : {full, bare}) {
    const std::vector<std::string> argv = to_argv(sent);
    REQUIRE(argv.at(0) == "train");
    int contract = 0;
    const TrainArgs got = parse_back<TrainArgs>(argv, add_train_command, &contract);
    CHECK(got == sent);
    CHECK(contract == kWorkerContract);
  }
  int contract = 0;
  CHECK_FALSE(parse_back<TrainArgs>(to_argv(bare), add_train_command, &contract).lr.has_value());

  ServeArgs replica;
  replica.model = "/models/acme/m";
  replica.name = "ft:custom:tiny:acme:x";
  replica.host = "0.0.0.0";
  replica.port = 8123;
  replica.max_batch = 256;
  replica.device = "cpu";
  replica.adapter_roots = {"/jobs/acme", "/models/acme"};
  replica.max_adapters = 100;
  ServeArgs bare_replica;
  bare_replica.model = "m";
  for (const ServeArgs& sent : {replica, bare_replica}) {
    const ServeArgs got = parse_back<ServeArgs>(to_argv(sent), add_serve_command, &contract);
    CHECK(got == sent);
    CHECK(contract == kWorkerContract);
  }
}

TEST_CASE("a worker refuses a contract version it does not speak, naming both") {
  CHECK(check_contract(kWorkerContract).ok());
  const Status other = check_contract(kWorkerContract + 1);
  REQUIRE_FALSE(other.ok());
  CHECK(other.message().find("speaks worker contract " + std::to_string(kWorkerContract)) !=
        std::string::npos);
  CHECK(other.message().find("contract " + std::to_string(kWorkerContract + 1)) !=
        std::string::npos);
  // A value outside the role's bounds is refused by the parse, as mh-worker refuses it.
  ServeArgs bad;
  bad.model = "m";
  bad.max_batch = 0;
  int contract = 0;
  CHECK_THROWS(parse_back<ServeArgs>(to_argv(bad), add_serve_command, &contract));
}

TEST_CASE("every event a worker writes reads back as it was written") {
  std::vector<WorkerEvent> events;
  WorkerEvent e;
  e.kind = WorkerEvent::Kind::kStep;
  e.step = 3, e.steps = 10, e.loss = 2.0 / 3.0, e.lr = 1.7e-5, e.grad_norm = 0.9;
  e.tokens_per_s = 1234.5;
  events.push_back(e);
  e.token_accuracy = 0.625;
  events.push_back(e);
  e.token_accuracy.reset();
  e.reward_margin = 0.375, e.reward_accuracy = 0.75;  // a DPO step's
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kCheckpoint;
  e.step = 50, e.path = "/w/out/checkpoint-50 \"quoted\"\n", e.valid_loss = 1.0 / 7.0;
  events.push_back(e);
  e.valid_loss.reset();
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kStopped;
  e.step = 7, e.path = "/w/out/checkpoint-7";
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kDone;
  e.step = 90, e.trained_tokens = 46080, e.path = "/w/out", e.valid_loss = 0.25;
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kReady;
  e.port = 40123;
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kUsage;
  e.tenant = "acme", e.prompt_tokens = 12, e.completion_tokens = 3;
  events.push_back(e);
  e.tenant.clear();  // a request that named no tenant
  events.push_back(e);
  e = {};
  e.kind = WorkerEvent::Kind::kStats;
  e.stats = {{"active", 2}, {"queued", 0}, {"tokens", 1.5}};
  events.push_back(e);
  for (const WorkerEvent& sent : events) {
    const std::string line = encode_worker_event(sent);
    CAPTURE(line);
    CHECK(line.find('\n') == std::string::npos);
    auto got = parse_worker_event(line);
    REQUIRE_MESSAGE(got.ok(), got.status().to_string());
    CHECK(got->kind == sent.kind);
    CHECK(got->step == sent.step);
    CHECK(got->steps == sent.steps);
    CHECK(got->loss == sent.loss);
    CHECK(got->lr == sent.lr);
    CHECK(got->grad_norm == sent.grad_norm);
    CHECK(got->tokens_per_s == sent.tokens_per_s);
    CHECK(got->valid_loss == sent.valid_loss);
    CHECK(got->trained_tokens.value_or(0) == sent.trained_tokens.value_or(0));
    CHECK(got->path == sent.path);
    CHECK(got->port == sent.port);
    CHECK(got->tenant == sent.tenant);
    CHECK(got->prompt_tokens == sent.prompt_tokens);
    CHECK(got->completion_tokens == sent.completion_tokens);
    CHECK(got->stats == sent.stats);
  }
  // A diverged run's loss is not a number: its line is refused, not misread.
  WorkerEvent diverged;
  diverged.kind = WorkerEvent::Kind::kStep;
  diverged.loss = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(parse_worker_event(encode_worker_event(diverged)).ok());
}

}  // namespace
}  // namespace mh::executor
