// The deployments, with no HTTP: requests checked and refused by name, the deployment object,
// the store's typed queries with the licence's say inside their transactions, and the service
// admitting, scaling and removing deployments (its supervisor not started: no replica runs).
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include "platform/api/deployments/protocol.h"
#include "platform/api/deployments/service.h"
#include "platform/api/deployments/store.h"
#include "platform/api/models/store.h"
#include "tests/api/service_platform.h"

namespace mh::api {
namespace {

namespace json = boost::json;

json::object body_of(std::string_view text) { return json::parse(text).as_object(); }

TEST_CASE("deployment requests are checked for form, and the object shows its replicas") {
  auto r = parse_deployment_request(body_of(R"({"model":"ft:x"})"));
  REQUIRE(r.ok());
  CHECK(r->replicas == 1);
  CHECK(r->devices_per_replica == 1);
  CHECK_FALSE(r->pool);
  CHECK(parse_deployment_request(body_of(R"({})")).status().param() == "model");
  CHECK(parse_deployment_request(body_of(R"({"model":"m","replicas":0})")).status().param() ==
        "replicas");
  CHECK(parse_deployment_request(body_of(R"({"model":"m","replicas":65})")).status().param() ==
        "replicas");
  CHECK(parse_deployment_request(body_of(R"({"model":"m","pool":3})")).status().param() ==
        "pool");
  CHECK(parse_deployment_request(body_of(R"({"model":"m","devices_per_replica":9})"))
            .status()
            .param() == "devices_per_replica");
  CHECK(*parse_scale_request(body_of(R"({"replicas":0})")) == 0);
  CHECK(parse_scale_request(body_of(R"({})")).status().param() == "replicas");

  DeploymentView view;
  view.record.id = "dep-1";
  view.record.model = "m";
  view.record.status = DeploymentStatus::kReady;
  CHECK(deployment_json(view).at("owned_by") == "macrohard");
  CHECK(deployment_json(view).at("replica_status").as_array().empty());
  CHECK_FALSE(deployment_json(view).contains("queued_requests"));
  view.live = true;
  view.queued_requests = 3;
  DeploymentView::Replica ready;
  ready.state = ReplicaState::kReady;
  ready.pid = 42;
  DeploymentView::Replica waiting;
  waiting.index = 1;
  waiting.state = ReplicaState::kPending;
  waiting.queue.emplace(2, "the pool is full");
  view.replicas = {ready, waiting};
  const json::object o = deployment_json(view);
  CHECK(o.at("status") == "ready");
  CHECK(o.at("ready_replicas") == 1);
  CHECK(o.at("queued_requests") == 3);
  CHECK(o.at("replica_status").at(0).at("pid") == 42);
  CHECK(o.at("replica_status").at(1).at("state") == "pending");
  CHECK(o.at("replica_status").at(1).at("queue").at("reason") == "the pool is full");
  CHECK(deployment_deleted_json(view.record).at("deleted") == true);
}

struct Fixture : ServicePlatform {
  DeploymentStore store{*db};

  static DeploymentRecord record(const std::string& id, const std::string& tenant) {
    DeploymentRecord d;
    d.id = id;
    d.tenant = tenant;
    d.model = "m";
    d.pool = "default";
    d.created_at = d.updated_at = 100;
    return d;
  }
};

TEST_CASE("the deployments' store: staff's beside tenants', the licence asked inside the write") {
  Fixture t;
  int64_t seen = -1;
  auto counting = [&](const auto& serving) -> Status {
    MH_ASSIGN_OR_RETURN(seen, serving());
    return {};
  };
  REQUIRE(t.store.insert(Fixture::record("dep-a", "acme"), counting).ok());
  CHECK(seen == 0);
  REQUIRE(t.store.insert(Fixture::record("dep-b", "acme"), counting).ok());
  CHECK(seen == 1);
  // A refusal aborts the write: nothing is stored.
  auto refuse = [](const auto&) -> Status { return permission_denied("over max_deployments"); };
  CHECK(t.store.insert(Fixture::record("dep-c", "acme"), refuse).code() ==
        Code::kPermissionDenied);
  CHECK(t.store.get("acme", "dep-c").status().code() == Code::kNotFound);
  REQUIRE(t.store.insert(Fixture::record("dep-staff", ""), nullptr).ok());

  CHECK(t.store.get("globex", "dep-a").status().code() == Code::kNotFound);
  CHECK(t.store.get("", "dep-a").status().code() == Code::kNotFound);
  CHECK(t.store.get("", "dep-staff")->tenant.empty());
  bool more = true;
  CHECK(t.store.list("acme", "", 10, &more)->size() == 2);
  auto staff = t.store.list("", "", 10, &more);
  REQUIRE(staff->size() == 1);
  CHECK_FALSE(more);
  CHECK(t.store.all()->size() == 3);

  // Scaled to zero, it no longer counts among the tenant's serving deployments.
  DeploymentRecord a = *t.store.get("acme", "dep-a");
  a.replicas = 0;
  a.status = DeploymentStatus::kStopped;
  REQUIRE(t.store.update(a, nullptr).ok());
  REQUIRE(t.store.update(*t.store.get("acme", "dep-b"), counting).ok());
  CHECK(seen == 0);
  CHECK(t.store.get("acme", "dep-a")->status == DeploymentStatus::kStopped);
  REQUIRE(t.store.set_status("dep-b", DeploymentStatus::kFailed, "replicas keep dying").ok());
  CHECK(t.store.get("acme", "dep-b")->error == "replicas keep dying");
  REQUIRE(t.store.remove("dep-b").ok());
  CHECK(t.store.get("acme", "dep-b").status().code() == Code::kNotFound);

  const std::vector<tenants::UsageRecord> used = {
      {"acme", unix_seconds(), tenants::UsageDimension::kOutputTokens, 7, "deployment", "dep-a"}};
  // Recorded: in the tenant's totals. Accrued: beside them, until a next start settles it.
  REQUIRE(t.store.write_usage(used, false).ok());
  tenants::UsageQuery month{unix_seconds() - 3600, unix_seconds() + 3600, 0, false, {}};
  auto totals = t.usage.totals("acme", month);
  REQUIRE(totals->size() == 1);
  CHECK((*totals)[0].quantity == 7);
  REQUIRE(t.store.write_usage(used, true).ok());
  CHECK(t.usage.totals("acme", month)->at(0).quantity == 7);
  tenants::UsageLedger next_start(*t.db);
  CHECK(next_start.settle_accrued().value() == 1);
  CHECK(t.usage.totals("acme", month)->at(0).quantity == 14);
}

TEST_CASE("the service admits deployments within the licence, scales and removes them") {
  Fixture t;
  Files files{t.context, 1 << 20};
  Models models{t.context, files, t.dir.path() / "models", t.dir.path() / "base-models"};
  REQUIRE(models.load_catalogue().ok());
  PoolConfig pool;
  pool.name = "default";
  pool.nodes = {{"local", 2, 0}};
  Pools pools{t.context, {pool}};
  boost::asio::io_context io;
  DeploymentOptions options;
  options.root = t.dir.path() / "deployments";
  Deployments deployments{t.context, models, pools, io, options};

  // A model with weights, as a job would have made it.
  ModelRecord tuned;
  tuned.id = "ft:mh-gpt2-tiny:acme:abcdefgh";
  tuned.tenant = "acme";
  tuned.kind = "fine-tune";
  tuned.family = "gpt2";
  tuned.parameters = 1000;
  tuned.directory = (t.dir.path() / "tuned").string();
  REQUIRE(ModelStore(*t.db).insert(tuned).ok());

  licensing::Limits limits;
  limits.max_deployments = 1;
  limits.max_gpus = 2;
  limits.gpu_hours_per_month = 10;
  limits.max_model_params = 1'000'000;
  t.license("acme", {"deploy"}, limits);

  const std::string ask = R"({"model":")" + tuned.id + R"("})";
  CHECK(deployments.create("acme", body_of(R"({"model":"mh-gpt2-tiny"})")).status().code() ==
        Code::kFailedPrecondition);  // a preset has no weights to serve
  CHECK(deployments.create("acme", body_of(R"({"model":")" + tuned.id + R"(","pool":"gpu"})"))
            .status()
            .code() == Code::kNotFound);
  CHECK(deployments.create("globex", body_of(ask)).status().code() == Code::kNotFound);
  auto d = deployments.create("acme", body_of(ask));
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  CHECK(d->status == DeploymentStatus::kStarting);
  CHECK(t.holdings.held("acme") == 1);
  const Status second = deployments.create("acme", body_of(ask)).status();
  CHECK(second.code() == Code::kPermissionDenied);
  CHECK(second.message().find("max_deployments") != std::string::npos);
  CHECK(t.holdings.held("acme") == 1);

  const DeploymentView view = deployments.view(*d);
  CHECK(view.live);
  CHECK(view.replicas.empty());  // the supervisor would start them
  auto stopped = deployments.scale("acme", d->id, 0);
  REQUIRE(stopped.ok());
  CHECK(stopped->status == DeploymentStatus::kStopped);
  CHECK(t.holdings.held("acme") == 0);
  // Scaling past the licence's devices is refused, and holds nothing.
  CHECK(deployments.scale("acme", d->id, 3).status().code() == Code::kPermissionDenied);
  CHECK(t.holdings.held("acme") == 0);
  auto removed = deployments.remove("acme", d->id);
  REQUIRE(removed.ok());
  CHECK(removed->status == DeploymentStatus::kDeleted);
  CHECK(deployments.get("acme", d->id).status().code() == Code::kNotFound);
}

}  // namespace
}  // namespace mh::api
