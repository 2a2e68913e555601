// The pools, with no HTTP: staff's requests checked and refused by name, quotas and added pools
// kept in a real SQLite store, and the service placing work on its devices and giving them back.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <condition_variable>
#include <mutex>

#include "platform/api/pools/protocol.h"
#include "platform/api/pools/service.h"
#include "platform/api/pools/store.h"
#include "tests/api/service_platform.h"

namespace mh::api {
namespace {

namespace json = boost::json;

json::object body_of(std::string_view text) { return json::parse(text).as_object(); }

TEST_CASE("quotas and pools of Slurm nodes are read from staff's requests, refused by name") {
  auto quota = parse_quota(body_of(R"({"nominal":4})"));
  REQUIRE(quota.ok());
  CHECK(quota->nominal == 4);
  CHECK(quota->borrowing_limit == 0);
  CHECK(quota->weight == 1.0);
  CHECK(parse_quota(body_of(R"({"weight":"heavy"})")).status().code() == Code::kInvalidArgument);

  auto pool = parse_slurm_pool(body_of(
      R"({"name":"h100","executor":"slurm","partition":"gpu",
          "nodes":[{"name":"n1","devices":8},{"name":"n2","devices":8,"nvlink_domain":0}]})"));
  REQUIRE(pool.ok());
  CHECK(pool->name == "h100");
  CHECK(pool->slurm_options.partition == "gpu");
  REQUIRE(pool->nodes.size() == 2);
  CHECK(pool->nodes[0].domain == 0);  // a node's own domain unless given
  CHECK(pool->nodes[1].domain == 0);
  const auto local = parse_slurm_pool(body_of(R"({"name":"p","executor":"local","nodes":[]})"));
  CHECK(local.status().param() == "executor");
  CHECK(parse_slurm_pool(body_of(R"({"name":"p","executor":"slurm","nodes":[{"name":"n"}]})"))
            .status()
            .param() == "nodes");
  CHECK(parse_slurm_pool(body_of(R"({"executor":"slurm","nodes":[]})")).status().code() ==
        Code::kInvalidArgument);

  const json::object pools = pools_json({{"gpu", true, 8, 6, {{"n1", 8, 0, true}}}});
  CHECK(pools.at("object") == "list");
  const json::value& p = pools.at("data").at(0);
  CHECK(p.at("kind") == "gpu");
  CHECK(p.at("free") == 6);
  CHECK(p.at("nodes").at(0).at("draining") == true);
  const json::object quotas = quotas_json({{"gpu", {2, 4, 1.5}, 1, 3, 8, 6}});
  CHECK(quotas.at("data").at(0).at("borrowing_limit") == 4);
  CHECK(quotas.at("data").at(0).at("queued") == 3);
}

struct Fixture : ServicePlatform {
  static std::vector<PoolConfig> local(int devices) {
    PoolConfig p;
    p.name = "default";
    p.nodes = {{"local", devices, 0}};
    return {p};
  }
};

TEST_CASE("the pools' store keeps quotas of known tenants and the pools staff added") {
  Fixture t;
  PoolStore store(*t.db);
  CHECK(store.put_quota("nobody", "default", {1, 0, 1}).code() == Code::kNotFound);
  REQUIRE(store.put_quota("acme", "default", {1, 2, 3}).ok());
  REQUIRE(store.put_quota("acme", "default", {4, 5, 6}).ok());  // replaced
  auto quotas = store.quotas();
  REQUIRE(quotas->size() == 1);
  CHECK((*quotas)[0].quota.nominal == 4);
  CHECK((*quotas)[0].quota.weight == 6);

  PoolConfig slurm;
  slurm.name = "h100";
  slurm.slurm_options.partition = "gpu";
  slurm.nodes = {{"n1", 8, 0}, {"n2", 4, 1}};
  REQUIRE(store.add_pool(slurm).ok());
  auto added = store.added_pools();
  REQUIRE(added->size() == 1);
  const PoolConfig& back = (*added)[0];
  CHECK(back.name == "h100");
  CHECK(back.slurm);
  CHECK(back.gpus);
  CHECK(back.slurm_options.partition == "gpu");
  REQUIRE(back.nodes.size() == 2);
  CHECK(back.nodes[1].name == "n2");
  CHECK(back.nodes[1].devices == 4);
  CHECK(back.nodes[1].domain == 1);
}

TEST_CASE("the service places work on free devices, gives them back, and keeps what staff set") {
  Fixture t;
  std::mutex mutex;
  std::condition_variable admitted_cv;
  std::optional<Allocation> admitted;
  {
    Pools pools(t.context, Fixture::local(2));
    REQUIRE(pools.start().ok());
    CHECK(pools.set_quota("acme", "nope", {1, 0, 1}).code() == Code::kNotFound);
    CHECK(pools.set_quota("acme", "default", {-1, 0, 1}).code() == Code::kInvalidArgument);
    REQUIRE(pools.set_quota("acme", "default", {1, 1, 2}).ok());
    const std::vector<QuotaView> quotas = pools.quotas("acme");
    REQUIRE(quotas.size() == 1);
    CHECK(quotas[0].quota.nominal == 1);
    CHECK(quotas[0].pool_devices == 2);

    // The platform's own work (tenant "") has no licence cap: it is placed at the next pass.
    pools.submit({"work-1", "", "default", 2, 0, 0, true}, [&](Allocation a) {
      std::lock_guard lock(mutex);
      admitted = std::move(a);
      admitted_cv.notify_all();
    });
    {
      std::unique_lock lock(mutex);
      REQUIRE(admitted_cv.wait_for(lock, std::chrono::seconds(10),
                                   [&] { return admitted.has_value(); }));
    }
    CHECK(admitted->node == "local");
    CHECK(admitted->devices == std::vector<int>{0, 1});
    CHECK(pools.pools()[0].free == 0);
    CHECK(pools.set_draining("default", "elsewhere", true).code() == Code::kNotFound);
    pools.finish("work-1");
    CHECK(pools.pools()[0].free == 2);

    PoolConfig slurm;
    slurm.name = "h100";
    slurm.nodes = {{"n1", 8, 0}};
    REQUIRE(pools.add_slurm_pool(slurm).ok());
    CHECK(pools.add_slurm_pool(slurm).code() == Code::kConflict);
    CHECK(pools.launcher("h100").remote());
    CHECK_FALSE(pools.launcher("default").remote());
  }
  // A later daemon has the pool staff added and the quota they set.
  Pools again(t.context, Fixture::local(2));
  REQUIRE(again.start().ok());
  const std::vector<PoolView> views = again.pools();
  REQUIRE(views.size() == 2);
  CHECK(views[1].name == "h100");
  CHECK(views[1].devices == 8);
  CHECK(again.quotas("acme")[0].quota.weight == 2);
}

}  // namespace
}  // namespace mh::api
