// The scheduler in a real daemon with CPU devices: jobs run side by side on their devices, a
// tenant's license cap holds even where capacity is free, a borrower is preempted for another
// tenant's guarantee (it checkpoints, waits and resumes), and waiting jobs say why.
#include <doctest/doctest.h>

#include <fstream>
#include <thread>

#include "tests/integration/model_helpers.h"
#include "tests/support/slurm_cluster.h"

namespace mh::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

struct SchedulingPlatform : ModelsPlatform {
  TempDir work;
  std::map<std::string, std::string> small, big;  // tenant -> training file id
  explicit SchedulingPlatform(std::vector<std::string> args) : ModelsPlatform(std::move(args)) {
    for (const char* tenant : {"acme", "globex"}) {
      license_models(tenant, {"train", "custom_models"});
      const auto ids = upload_model(tenant, tiny_model_files(work.path() / tenant, 16));
      REQUIRE(register_model(tenant, "tiny", ids).status == 201);
      RawResponse r = upload(tenant, "fine-tune", "small.jsonl", training_jsonl(60));
      small[tenant] = std::string(json::parse(r.body).at("id").as_string());
      r = upload(tenant, "fine-tune", "big.jsonl", training_jsonl(1500));
      big[tenant] = std::string(json::parse(r.body).at("id").as_string());
    }
  }
  std::string create(const std::string& tenant, const std::string& file, int epochs) {
    RawResponse r = as(tenant, "POST", "/v1/fine_tuning/jobs",
                       json::serialize(json::object{{"model", "custom:tiny"},
                                                    {"training_file", file},
                                                    {"checkpoint_interval", 10},
                                                    {"hyperparameters", {{"n_epochs", epochs}}}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return std::string(json::parse(r.body).at("id").as_string());
  }
  // Whether the job has written a checkpoint within 30 s.
  bool checkpointed(const std::string& tenant, const std::string& id) {
    for (int i = 0; i < 3000; ++i) {
      if (as(tenant, "GET", "/v1/fine_tuning/jobs/" + id + "/checkpoints").body.find("ftckpt-") !=
          std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  json::object job(const std::string& tenant, const std::string& id) {
    return json::parse(as(tenant, "GET", "/v1/fine_tuning/jobs/" + id).body).as_object();
  }
  template <typename Pred>
  json::object until(const std::string& tenant, const std::string& id, Pred pred,
                     std::chrono::seconds timeout = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::object j = job(tenant, id);
    while (!pred(j) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
      j = job(tenant, id);
    }
    return j;
  }
};

bool is(const json::object& j, std::string_view status) {
  return j.at("status").as_string() == status;
}

// Whether a job or replica view carries the scheduler's reason from a pass (not the note that
// a pass has yet to look at it).
bool explained(const json::object& v) {
  const json::value* q = v.if_contains("queue");
  return q != nullptr && q->at("reason").as_string() != "waiting for the next scheduling pass";
}

TEST_CASE("a borrower is preempted for another tenant's guarantee, then resumes") {
  SchedulingPlatform p({"--cpu-devices", "1", "--preemption-min-runtime-s", "1"});
  // globex is guaranteed the one device; acme has no guarantee and borrows it while it is idle.
  RawResponse r = p.admin("PUT", "/v1/admin/tenants/globex/quotas/default",
                          R"({"nominal": 1, "borrowing_limit": 0, "weight": 1})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string borrower = p.create("acme", p.big.at("acme"), 20);
  json::object j =
      p.until("acme", borrower, [](const json::object& v) { return is(v, "running"); });
  REQUIRE(is(j, "running"));
  REQUIRE(p.checkpointed("acme", borrower));

  const std::string claim = p.create("globex", p.small.at("globex"), 1);
  // The borrower checkpoints and waits; globex's job runs and finishes.
  j = p.until("acme", borrower, [](const json::object& v) { return is(v, "queued"); });
  REQUIRE_MESSAGE(is(j, "queued"), json::serialize(j));
  json::object done = p.until(
      "globex", claim, [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); });
  CHECK_MESSAGE(is(done, "succeeded"), json::serialize(done));
  // The borrower comes back and finishes from where it stopped.
  done = p.until(
      "acme", borrower, [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); },
      180s);
  CHECK_MESSAGE(is(done, "succeeded"), json::serialize(done));
  const std::string events =
      p.as("acme", "GET", "/v1/fine_tuning/jobs/" + borrower + "/events?limit=1000").body;
  CHECK(events.find("Preempted") != std::string::npos);
  CHECK(events.find("Resuming from checkpoint-") != std::string::npos);

  json::object quotas = json::parse(p.as("globex", "GET", "/v1/quotas").body).as_object();
  CHECK(quotas.at("data").at(0).at("pool") == "default");
  CHECK(quotas.at("data").at(0).at("nominal") == 1);
}

TEST_CASE("jobs run side by side on their devices, and the license cap holds where room is free") {
  SchedulingPlatform p({"--cpu-devices", "3"});
  licensing::Limits one;
  one.seats = 1;
  one.max_model_params = 1'000'000;
  one.max_gpus = 1;
  one.gpu_hours_per_month = 10;
  p.relicense("acme", {"train", "custom_models"}, one);
  const std::string a1 = p.create("acme", p.big.at("acme"), 10);
  const std::string a2 = p.create("acme", p.small.at("acme"), 1);
  const std::string g1 = p.create("globex", p.big.at("globex"), 10);
  // acme's first and globex's run at once; acme's second waits for its license, not for room.
  json::object a = p.until("acme", a1, [](const json::object& v) { return is(v, "running"); });
  json::object g = p.until("globex", g1, [](const json::object& v) { return is(v, "running"); });
  CHECK(is(a, "running"));
  CHECK(is(g, "running"));
  json::object waiting = p.until("acme", a2, [](const json::object& v) { return explained(v); });
  REQUIRE_MESSAGE(waiting.contains("queue"), json::serialize(waiting));
  CHECK(waiting.at("queue").at("reason") ==
        "tenant acme: license max_gpus 1, in use 1, this job needs 1");
  // A job that could run once the cap allows is taken and queued, not refused.
  const std::string a3 = p.create("acme", p.small.at("acme"), 1);
  CHECK(is(p.job("acme", a3), "queued"));
  // mhctl queue says the same.
  ProcessResult queue =
      run_process({mhctl_path().string(), "queue"},
                  {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("acme")}});
  CHECK_MESSAGE(queue.exit_code == 0, queue.output);
  CHECK(queue.output.find(a2) != std::string::npos);
  CHECK(queue.output.find("license max_gpus 1") != std::string::npos);
  json::object pools = json::parse(p.admin("GET", "/v1/admin/pools", "").body).as_object();
  CHECK(pools.at("data").at(0).at("devices") == 3);
  CHECK(pools.at("data").at(0).at("free") == 1);
  // Once acme's first ends, its second runs.
  p.as("acme", "POST", "/v1/fine_tuning/jobs/" + a1 + "/cancel");
  json::object done = p.until(
      "acme", a2, [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); });
  CHECK_MESSAGE(is(done, "succeeded"), json::serialize(done));
  // Whoever followed it was told why it waited, as it waited: an event, which mhctl jobs wait
  // prints (here from the backlog).
  ProcessResult followed =
      run_process({mhctl_path().string(), "jobs", "wait", a2},
                  {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("acme")}});
  CHECK_MESSAGE(followed.exit_code == 0, followed.output);
  CHECK_MESSAGE(followed.output.find("Waiting for devices: tenant acme: license max_gpus 1") !=
                    std::string::npos,
                followed.output);

  // Quotas are staff's, checked.
  CHECK(p.admin("PUT", "/v1/admin/tenants/acme/quotas/moon", R"({"nominal": 1})").status == 404);
  CHECK(p.admin("PUT", "/v1/admin/tenants/nobody/quotas/default", R"({"nominal": 1})").status ==
        404);
  CHECK(p.admin("PUT", "/v1/admin/tenants/acme/quotas/default", R"({"nominal": -1})").status ==
        400);
  CHECK(p.as("acme", "PUT", "/v1/admin/tenants/acme/quotas/default", R"({"nominal": 1})").status ==
        403);
}

TEST_CASE("a deployment's replica waits for a device like a job, saying why, then starts") {
  SchedulingPlatform p({"--cpu-devices", "1"});
  p.license_models("acme", {"train", "deploy", "custom_models"});
  const std::string job = p.create("acme", p.big.at("acme"), 20);
  REQUIRE(
      is(p.until("acme", job, [](const json::object& v) { return is(v, "running"); }), "running"));
  RawResponse r = p.as("acme", "POST", "/v1/deployments",
                       json::serialize(json::object{{"model", "custom:tiny"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  auto deployment = [&] {
    return json::parse(p.as("acme", "GET", "/v1/deployments/" + id).body).as_object();
  };
  auto has_queue = [](const json::object& v) {
    const auto& replicas = v.at("replica_status").as_array();
    return !replicas.empty() && explained(replicas[0].as_object());
  };
  json::object d = deployment();
  for (int i = 0; i < 500 && !has_queue(d); ++i) {
    std::this_thread::sleep_for(10ms);
    d = deployment();
  }
  REQUIRE(has_queue(d));
  const auto& replica = d.at("replica_status").at(0);
  CHECK(replica.at("state") == "pending");
  CHECK(d.at("status") == "starting");
  REQUIRE(replica.as_object().contains("queue"));
  // Its tenant holds the pool's one device (the job); without a quota it may borrow one.
  CHECK(replica.at("queue").at("reason") ==
        "tenant acme: nominal 0, in use 1, borrowing limit 1; this job needs 1");
  // The job ends; the replica gets the device and the deployment comes up.
  p.as("acme", "POST", "/v1/fine_tuning/jobs/" + job + "/cancel");
  for (int i = 0; i < 3000 && deployment().at("status") != "ready"; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK(deployment().at("status") == "ready");
  // And a new job now waits behind the replica, which is never preempted.
  const std::string next = p.create("acme", p.small.at("acme"), 1);
  json::object waiting = p.until("acme", next, [](const json::object& v) { return explained(v); });
  CHECK(is(waiting, "queued"));
}

TEST_CASE("a tenant's higher-priority job goes first") {
  SchedulingPlatform p({"--cpu-devices", "1"});
  const std::string running = p.create("acme", p.big.at("acme"), 20);
  REQUIRE(is(p.until("acme", running, [](const json::object& v) { return is(v, "running"); }),
             "running"));
  auto create = [&](int priority) {
    RawResponse r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
                         json::serialize(json::object{{"model", "custom:tiny"},
                                                      {"training_file", p.small.at("acme")},
                                                      {"priority", priority}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return std::string(json::parse(r.body).at("id").as_string());
  };
  const std::string low = create(0);
  const std::string high = create(10);
  CHECK(p.job("acme", high).at("priority") == 10);
  json::object waiting = p.until("acme", low, [](const json::object& v) {
    return explained(v) &&
           v.at("queue").at("reason").as_string().find("behind") != std::string::npos;
  });
  // Submitted first, the low one waits behind the high one (first in, first out would put it
  // ahead).
  REQUIRE_MESSAGE(explained(waiting), json::serialize(waiting));
  CHECK(std::string(waiting.at("queue").at("reason").as_string())
            .starts_with("behind 1 earlier jobs of the same tenant"));
  p.as("acme", "POST", "/v1/fine_tuning/jobs/" + running + "/cancel");
  json::object h = p.until(
      "acme", high, [](const json::object& v) { return is(v, "running") || is(v, "succeeded"); });
  CHECK(!is(h, "queued"));
  // While the high one holds the one device, the low one is still waiting.
  if (is(h, "running")) CHECK(is(p.job("acme", low), "queued"));
  CHECK(p.as("acme", "POST", "/v1/fine_tuning/jobs",
             json::serialize(json::object{{"model", "custom:tiny"},
                                          {"training_file", p.small.at("acme")},
                                          {"priority", 1000}}))
            .status == 400);
}

TEST_CASE("draining a node moves its work: the job checkpoints, waits, and resumes elsewhere") {
  SchedulingPlatform p({"--cpu-devices", "1"});
  const std::string job = p.create("acme", p.big.at("acme"), 20);
  REQUIRE(
      is(p.until("acme", job, [](const json::object& v) { return is(v, "running"); }), "running"));
  REQUIRE(p.checkpointed("acme", job));
  RawResponse r =
      p.admin("POST", "/v1/admin/pools/default/nodes/local/drain", R"({"draining": true})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(json::parse(r.body).at("data").at(0).at("nodes").at(0).at("draining") == true);
  json::object waiting =
      p.until("acme", job, [](const json::object& v) { return is(v, "queued") && explained(v); });
  REQUIRE_MESSAGE(is(waiting, "queued"), json::serialize(waiting));
  CHECK(std::string(waiting.at("queue").at("reason").as_string()).find("0 of 1 devices free") !=
        std::string::npos);
  // Back in service: it resumes from its checkpoint and finishes.
  r = p.admin("POST", "/v1/admin/pools/default/nodes/local/drain", R"({"draining": false})");
  REQUIRE(r.status == 200);
  json::object done = p.until(
      "acme", job, [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); },
      180s);
  CHECK_MESSAGE(is(done, "succeeded"), json::serialize(done));
  const std::string events =
      p.as("acme", "GET", "/v1/fine_tuning/jobs/" + job + "/events?limit=1000").body;
  CHECK(events.find("node being drained") != std::string::npos);
  CHECK(events.find("Resuming from checkpoint-") != std::string::npos);
  CHECK(p.admin("POST", "/v1/admin/pools/default/nodes/nowhere/drain", R"({"draining": true})")
            .status == 404);
  CHECK(p.admin("POST", "/v1/admin/pools/default/nodes/local/drain", R"({"draining": 1})").status ==
        400);
}

TEST_CASE("a job on a Slurm pool runs as a batch job on the node the scheduler chose") {
  SlurmCluster slurm;
  if (!slurm.up) {
    MESSAGE("skipped: no Slurm here: " << slurm.why);
    return;
  }
  SchedulingPlatform p(
      {"--slurm-pool", "cluster:" + slurm.node + "=4", "--slurm-conf", slurm.conf});
  json::object pools = json::parse(p.admin("GET", "/v1/admin/pools", "").body).as_object();
  bool listed = false;
  for (const auto& pool : pools.at("data").as_array()) {
    if (pool.at("name") == "cluster") {
      listed = true;
      CHECK(pool.at("devices") == 4);
      CHECK(pool.at("nodes").at(0).at("name").as_string() == slurm.node);
    }
  }
  CHECK(listed);
  RawResponse r = p.as(
      "acme", "POST", "/v1/fine_tuning/jobs",
      json::serialize(json::object{
          {"model", "custom:tiny"}, {"training_file", p.small.at("acme")}, {"pool", "cluster"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  json::object done = p.until(
      "acme", id, [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); });
  REQUIRE_MESSAGE(is(done, "succeeded"), json::serialize(done));
  CHECK(done.at("pool") == "cluster");
  // It went through Slurm: its batch script and its events file are in its directory, and the
  // progress it reported there reached the job's events.
  const fs::path dir = p.dir.path() / "data" / "jobs" / "acme" / id;
  CHECK(fs::exists(dir / "job.sh"));
  CHECK(fs::exists(dir / "events.jsonl"));
  CHECK(p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000")
            .body.find("\"type\":\"metrics\"") != std::string::npos);
  // Staff add another pool through the API; it is used at once and kept across a restart.
  r = p.admin("POST", "/v1/admin/pools",
              json::serialize(json::object{
                  {"name", "more"},
                  {"executor", "slurm"},
                  {"nodes", json::array{json::object{{"name", slurm.node}, {"devices", 2}}}}}));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(p.admin("POST", "/v1/admin/pools",
                R"({"name":"more","executor":"slurm","nodes":[{"name":"x","devices":1}]})")
            .status == 409);
  CHECK(p.admin("POST", "/v1/admin/pools",
                R"({"name":"bad","executor":"local","nodes":[{"name":"x","devices":1}]})")
            .status == 400);
  CHECK(p.admin("POST", "/v1/admin/pools",
                R"({"name":"bad","executor":"slurm","nodes":[{"name":"x","devices":0}]})")
            .status == 400);
  p.kill_and_restart();
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
           json::serialize(json::object{
               {"model", "custom:tiny"}, {"training_file", p.small.at("acme")}, {"pool", "more"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string again(json::parse(r.body).at("id").as_string());
  done = p.until("acme", again,
                 [](const json::object& v) { return is(v, "succeeded") || is(v, "failed"); });
  CHECK_MESSAGE(is(done, "succeeded"), json::serialize(done));
  // A deployment on the Slurm pool: its replica runs as a batch job on the node and answers.
  p.license_models("acme", {"train", "deploy", "custom_models"});
  r = p.as("acme", "POST", "/v1/deployments",
           json::serialize(json::object{{"model", "custom:tiny"}, {"pool", "cluster"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string dep(json::parse(r.body).at("id").as_string());
  json::object d;
  for (int i = 0; i < 1500; ++i) {
    d = json::parse(p.as("acme", "GET", "/v1/deployments/" + dep).body).as_object();
    if (d.at("status") == "ready" || d.at("status") == "failed") break;
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE_MESSAGE(d.at("status") == "ready", json::serialize(d));
  CHECK(std::string(d.at("replica_status").at(0).at("worker").as_string()).starts_with("slurm:"));
  r = p.as("acme", "POST", "/v1/completions",
           json::serialize(json::object{{"model", dep}, {"prompt", "the cat"}, {"max_tokens", 3}}));
  CHECK_MESSAGE(r.status == 200, r.body);
  // The daemon dies; its successor stops the replica's Slurm job and starts a new one.
  const std::string old_worker(d.at("replica_status").at(0).at("worker").as_string());
  p.kill_and_restart();
  for (int i = 0; i < 1500; ++i) {
    d = json::parse(p.as("acme", "GET", "/v1/deployments/" + dep).body).as_object();
    if (d.at("status") == "ready") break;
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE_MESSAGE(d.at("status") == "ready", json::serialize(d));
  REQUIRE(!d.at("replica_status").as_array().empty());
  CHECK(d.at("replica_status").at(0).at("worker").as_string() != old_worker);
  auto old_job =
      executor::run_command({"scontrol", "show", "job", "-o", old_worker.substr(6)}, slurm.env);
  REQUIRE(old_job.ok());
  CHECK_MESSAGE(old_job->out.find("JobState=RUNNING") == std::string::npos,
                old_job->out << "\n"
                             << p.daemon->output());
  // A pool spec that does not parse stops the daemon at start, saying why.
  ProcessResult bad = run_process({macrohardd_path().string(), "--data-dir",
                                   (p.work.path() / "bad").string(), "--slurm-pool", "oops"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("--slurm-pool 'oops'") != std::string::npos);
}

TEST_CASE("borrowed devices are shared by weight") {
  SchedulingPlatform p({"--cpu-devices", "4"});
  // Neither is guaranteed anything; acme's share weighs three times globex's.
  REQUIRE(p.admin("PUT", "/v1/admin/tenants/acme/quotas/default",
                  R"({"nominal": 0, "borrowing_limit": 4, "weight": 3})")
              .status == 200);
  REQUIRE(p.admin("PUT", "/v1/admin/tenants/globex/quotas/default",
                  R"({"nominal": 0, "borrowing_limit": 4, "weight": 1})")
              .status == 200);
  // With the node out of service, both queue plenty; when it returns, one pass shares it.
  REQUIRE(p.admin("POST", "/v1/admin/pools/default/nodes/local/drain", R"({"draining": true})")
              .status == 200);
  std::map<std::string, std::vector<std::string>> jobs;
  for (int i = 0; i < 5; ++i) {
    for (const char* tenant : {"acme", "globex"}) {
      jobs[tenant].push_back(p.create(tenant, p.big.at(tenant), 20));
    }
  }
  REQUIRE(p.admin("POST", "/v1/admin/pools/default/nodes/local/drain", R"({"draining": false})")
              .status == 200);
  auto running = [&](const std::string& tenant) {
    int n = 0;
    for (const auto& id : jobs[tenant]) n += is(p.job(tenant, id), "running");
    return n;
  };
  for (int i = 0; i < 500 && running("acme") + running("globex") < 4; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(running("acme") == 3);
  CHECK(running("globex") == 1);
  json::object quotas = json::parse(p.as("globex", "GET", "/v1/quotas").body).as_object();
  CHECK(quotas.at("data").at(0).at("weight").to_number<double>() == 1);
  CHECK(quotas.at("data").at(0).at("queued").as_int64() == 4);
}

TEST_CASE("a gang waits for all its devices rather than taking part of them") {
  SchedulingPlatform p({"--cpu-devices", "3"});
  p.license_models("acme", {"train", "deploy", "custom_models", "multi_gpu"});
  const std::string a = p.create("acme", p.big.at("acme"), 20);
  const std::string g = p.create("globex", p.big.at("globex"), 20);
  for (const auto& [tenant, id] : {std::pair{"acme", a}, std::pair{"globex", g}}) {
    REQUIRE(
        is(p.until(tenant, id, [](const json::object& v) { return is(v, "running"); }), "running"));
  }
  // One device is free; a replica of two waits, whole.
  RawResponse r =
      p.as("acme", "POST", "/v1/deployments",
           json::serialize(json::object{{"model", "custom:tiny"}, {"devices_per_replica", 2}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  auto deployment = [&] {
    return json::parse(p.as("acme", "GET", "/v1/deployments/" + id).body).as_object();
  };
  auto reason = [&]() -> std::string {
    json::object d = deployment();
    const auto& replicas = d.at("replica_status").as_array();
    if (replicas.empty() || !explained(replicas[0].as_object())) return "";
    return std::string(replicas[0].at("queue").at("reason").as_string());
  };
  for (int i = 0; i < 500 && reason().empty(); ++i) std::this_thread::sleep_for(10ms);
  CHECK(reason() ==
        "pool default has no room to lend: 1 of 3 devices free, largest NVLink domain free 1; "
        "this job needs 2");
  json::object pools = json::parse(p.admin("GET", "/v1/admin/pools", "").body).as_object();
  CHECK(pools.at("data").at(0).at("free") == 1);  // nothing taken in part
  // globex's job ends: two are free, and the replica gets both.
  p.as("globex", "POST", "/v1/fine_tuning/jobs/" + g + "/cancel");
  for (int i = 0; i < 3000 && deployment().at("status") != "ready"; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK(deployment().at("status") == "ready");
  pools = json::parse(p.admin("GET", "/v1/admin/pools", "").body).as_object();
  CHECK(pools.at("data").at(0).at("free") == 0);
}

TEST_CASE("a device failure drains its node and sends the job back to the queue") {
  SlurmCluster slurm;
  if (!slurm.up) {
    MESSAGE("skipped: no Slurm here: " << slurm.why);
    return;
  }
  // The worker this platform runs dies the way a GPU with an uncorrectable ECC error kills it.
  TempDir bin;
  const fs::path worker = bin.path() / "failing-worker";
  // (It checks model files as mh-worker does: registration runs it for that.)
  std::ofstream(worker) << "#!/bin/sh\n"
                           "if [ \"$1\" = inspect ]; then exec " + mhworker_path().string() +
                               " \"$@\"; fi\n"
                           "echo 'CUDA error: uncorrectable ECC error encountered' >&2\n"
                           "exit 1\n";
  fs::permissions(worker, fs::perms::owner_all);
  // (Locally it runs unsandboxed: a sandboxed script may exec nothing but itself.)
  SchedulingPlatform p({"--slurm-pool", "cluster:" + slurm.node + "=4", "--slurm-conf", slurm.conf,
                        "--worker", worker.string(), "--worker-sandbox", "false"});
  RawResponse r = p.as(
      "acme", "POST", "/v1/fine_tuning/jobs",
      json::serialize(json::object{
          {"model", "custom:tiny"}, {"training_file", p.small.at("acme")}, {"pool", "cluster"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  auto events = [&] {
    return p.as("acme", "GET", "/v1/fine_tuning/jobs/" + id + "/events?limit=1000").body;
  };
  for (int i = 0; i < 3000 && events().find("Device failure") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK(events().find("Device failure on node " + slurm.node) != std::string::npos);
  json::object j =
      p.until("acme", id, [](const json::object& v) { return is(v, "queued") && explained(v); });
  CHECK_MESSAGE(is(j, "queued"), json::serialize(j));  // not failed: not the job's fault
  CHECK(j.at("attempts") == 0);
  json::object pools = json::parse(p.admin("GET", "/v1/admin/pools", "").body).as_object();
  for (const auto& pool : pools.at("data").as_array()) {
    if (pool.at("name") == "cluster") CHECK(pool.at("nodes").at(0).at("draining") == true);
  }
}

}  // namespace
}  // namespace mh::test
