// The scheduler's core: gang placement that packs and does not fragment, quotas and license
// caps, weighted sharing of borrowed capacity, preemption that reclaims only borrowed devices
// and never thrashes, and the reasons waiting jobs give; then properties over random workloads.
#include "platform/scheduler/scheduler.h"

#include <doctest/doctest.h>

#include <bit>
#include <map>
#include <random>
#include <set>

namespace mh::scheduler {
namespace {

// `nodes` nodes of `devices` each, `per_domain` nodes to an NVLink domain.
PoolSpec pool_of(int nodes, int devices, int per_domain) {
  PoolSpec p;
  p.name = "gpu";
  for (int i = 0; i < nodes; ++i)
    p.nodes.push_back({"n" + std::to_string(i), devices, i / per_domain});
  return p;
}

std::set<NodeId> nodes_of(const Placement& p) {
  std::set<NodeId> out;
  for (const auto& part : p.parts) out.insert(part.node);
  return out;
}

struct Fixture {
  Scheduler s;
  int32_t pool;
  explicit Fixture(PoolSpec spec = pool_of(4, 8, 2), Options o = {}) : s(o) {
    pool = s.add_pool(spec);
  }
  TenantId tenant(const std::string& name, Quota q, int64_t cap = 1 << 20) {
    const TenantId t = s.add_tenant({name, cap, ""});
    s.set_quota(t, pool, q);
    return t;
  }
  JobId next = 1;
  JobId submit(TenantId t, int devices, int64_t at = 0, int priority = 0, bool preemptible = true) {
    s.submit(next, {t, pool, devices, priority, at, preemptible});
    return next++;
  }
  std::map<JobId, Decision> run(int64_t now) {
    std::map<JobId, Decision> out;
    for (auto& d : s.pass(now)) out.emplace(d.job, d);
    return out;
  }
  std::string why(JobId id) { return s.pending_info(id).value().reason; }
};

TEST_CASE("gangs are placed whole: on one node, else one NVLink domain, never partly") {
  Fixture f;  // 4 nodes of 8 devices; nodes 0-1 in domain 0, 2-3 in domain 1
  const TenantId a = f.tenant("acme", {64, 0, 1});
  const JobId four = f.submit(a, 4);
  const JobId four_more = f.submit(a, 4, 1);
  const JobId eight = f.submit(a, 8, 2);
  const JobId sixteen = f.submit(a, 16, 3);
  auto d = f.run(10);
  REQUIRE(d.size() == 4);
  // The two fours share a node (best fit), leaving whole nodes for the whole-node jobs.
  CHECK(nodes_of(d.at(four).placement) == nodes_of(d.at(four_more).placement));
  CHECK(d.at(eight).placement.parts.size() == 1);
  CHECK(d.at(eight).placement.size() == 8);
  CHECK(d.at(sixteen).placement.size() == 16);
  CHECK(nodes_of(d.at(sixteen).placement).size() == 2);
  // Its two nodes are one NVLink domain.
  const auto sixteen_nodes = nodes_of(d.at(sixteen).placement);
  CHECK(*sixteen_nodes.begin() / 2 == *sixteen_nodes.rbegin() / 2);
  CHECK(f.s.free_devices(f.pool) == 0);

  // A gang larger than what is free waits rather than taking part of it.
  f.s.finish(four, 20);
  const JobId eight_again = f.submit(a, 8, 21);
  CHECK(f.run(22).empty());
  CHECK(f.s.state(eight_again) == JobState::kPending);
  CHECK(f.why(eight_again) ==
        "pool gpu full: 4 of 32 devices free, largest NVLink domain free 4; nothing borrowed to "
        "reclaim");
  f.s.finish(four_more, 30);
  d = f.run(31);
  REQUIRE(d.count(eight_again));
  CHECK(d.at(eight_again).placement.parts.size() == 1);
}

TEST_CASE("placement does not strand whole nodes when a better fit exists") {
  Fixture f(pool_of(3, 8, 3));
  const TenantId a = f.tenant("acme", {24, 0, 1});
  const JobId six = f.submit(a, 6);
  f.run(1);
  const JobId two = f.submit(a, 2, 2);
  const JobId eight = f.submit(a, 8, 3);
  auto d = f.run(4);
  // The two goes beside the six, not onto a whole free node.
  CHECK(nodes_of(d.at(two).placement) == nodes_of(f.s.placement(six).value()));
  CHECK(d.at(eight).placement.parts.size() == 1);
  const JobId another = f.submit(a, 8, 5);
  CHECK(f.run(6).count(another) == 1);  // a whole node was still there for it
}

TEST_CASE("quotas and the license cap hold jobs back, saying which limit and by how much") {
  Fixture f;
  const TenantId a = f.tenant("acme", {8, 0, 1});
  const TenantId b = f.tenant("globex", {16, 16, 1}, /*cap=*/8);
  const JobId a1 = f.submit(a, 8);
  const JobId a2 = f.submit(a, 8, 1);
  const JobId b1 = f.submit(b, 8, 2);
  const JobId b2 = f.submit(b, 4, 3);
  auto d = f.run(10);
  CHECK(d.count(a1));
  CHECK(d.count(b1));
  CHECK(f.why(a2) == "tenant acme: nominal 8, in use 8, borrowing limit 0; this job needs 8");
  // globex's quota would allow it; its license does not.
  CHECK(f.why(b2) == "tenant globex: license max_gpus 8, in use 8, this job needs 4");
  CHECK(f.s.in_use(b) == 8);
  // A spent GPU-hour budget stops new work too.
  f.s.update_tenant(b, {"globex", 100, "license lic_g's GPU-hours for this month are spent"});
  f.s.finish(b1, 20);
  f.run(21);
  CHECK(f.why(b2) == "tenant globex: license lic_g's GPU-hours for this month are spent");
  // Later jobs of a tenant wait behind its first, and say so.
  const JobId a3 = f.submit(a, 1, 30);
  f.run(31);
  CHECK(f.why(a3).find("behind 1 earlier jobs of the same tenant") != std::string::npos);
  CHECK(f.s.pending_info(a3)->position > f.s.pending_info(a2)->position);
}

TEST_CASE("within guarantees, higher priority goes first, then the older job") {
  Fixture f(pool_of(1, 8, 1));
  const TenantId a = f.tenant("acme", {8, 0, 1});
  const JobId old_low = f.submit(a, 8, 0, 0);
  const JobId new_high = f.submit(a, 8, 5, 10);
  auto d = f.run(10);
  CHECK(d.count(new_high));
  CHECK(f.s.state(old_low) == JobState::kPending);
}

TEST_CASE("a tenant below its guarantee reclaims borrowed devices, and the borrower is requeued") {
  Options o;
  o.min_runtime_seconds = 100;
  Fixture f(pool_of(2, 8, 2), o);  // 16 devices
  const TenantId a = f.tenant("acme", {8, 8, 1});
  const TenantId b = f.tenant("globex", {8, 0, 1});
  const JobId mine = f.submit(a, 8, 0);
  const JobId borrowed = f.submit(a, 8, 1);
  auto d = f.run(10);
  REQUIRE(d.size() == 2);  // globex's idle guarantee is lent to acme
  CHECK(f.s.in_use(a, f.pool) == 16);

  // globex wants its guarantee while the borrower is still young: it waits.
  const JobId claim = f.submit(b, 8, 50);
  CHECK(f.run(60).empty());
  CHECK(f.why(claim).find("nothing borrowed to reclaim") != std::string::npos);
  // Past the minimum runtime the youngest borrowed job is told to checkpoint.
  d = f.run(200);
  REQUIRE(d.size() == 1);
  CHECK(d.at(borrowed).kind == Decision::Kind::kPreempt);
  CHECK(d.at(borrowed).for_job == claim);
  CHECK(f.s.state(borrowed) == JobState::kPreempting);
  CHECK(f.s.state(mine) == JobState::kRunning);  // within acme's guarantee: never a victim
  CHECK(f.why(claim).find("checkpoint") != std::string::npos);
  // Nothing more is preempted while it stops.
  CHECK(f.run(210).empty());
  // It stops; globex gets the devices, and the requeued job waits as a borrower.
  f.s.requeue(borrowed, 220);
  d = f.run(221);
  REQUIRE(d.count(claim));
  CHECK(d.at(claim).placement.size() == 8);
  CHECK(f.s.state(borrowed) == JobState::kPending);
  CHECK(f.why(borrowed).find("no room to lend") != std::string::npos);
  // No thrashing: the borrower cannot take them back, however long it waits.
  CHECK(f.run(10'000).empty());
  CHECK(f.s.state(claim) == JobState::kRunning);
  // When globex is done, acme borrows again.
  f.s.finish(claim, 20'000);
  CHECK(f.run(20'001).count(borrowed));
}

TEST_CASE("replicas a deployment needs are never preempted") {
  Options o;
  o.min_runtime_seconds = 0;
  Fixture f(pool_of(1, 8, 1), o);
  const TenantId a = f.tenant("acme", {0, 8, 1});
  const TenantId b = f.tenant("globex", {8, 0, 1});
  f.submit(a, 8, 0, 0, /*preemptible=*/false);
  f.run(1);
  const JobId claim = f.submit(b, 4, 2);
  CHECK(f.run(3).empty());
  CHECK(f.why(claim).find("nothing borrowed to reclaim") != std::string::npos);
}

TEST_CASE("borrowed capacity is shared by weight, and past borrowing counts against a tenant") {
  Fixture f(pool_of(1, 8, 1));
  const TenantId heavy = f.tenant("heavy", {0, 100, 3});
  const TenantId light = f.tenant("light", {0, 100, 1});
  for (int i = 0; i < 20; ++i) {
    f.submit(heavy, 1, i);
    f.submit(light, 1, i);
  }
  f.run(10);
  CHECK(f.s.in_use(heavy, f.pool) == 6);
  CHECK(f.s.in_use(light, f.pool) == 2);

  // Two tenants of equal weight: the one that borrowed much in the last hours waits.
  Options o;
  o.history_weight = 1.0;
  Fixture g(pool_of(1, 8, 1), o);
  const TenantId old_user = g.tenant("old", {0, 100, 1});
  const TenantId newcomer = g.tenant("new", {0, 100, 1});
  const JobId long_job = g.submit(old_user, 8, 0);
  g.run(0);
  g.s.finish(long_job, 4 * 3600);  // 8 devices for four hours
  for (int i = 0; i < 8; ++i) {
    g.submit(old_user, 1, 4 * 3600);
    g.submit(newcomer, 1, 4 * 3600);
  }
  g.run(4 * 3600 + 1);
  CHECK(g.s.in_use(newcomer, g.pool) > g.s.in_use(old_user, g.pool));
}

TEST_CASE("a draining node takes no new work") {
  Fixture f(pool_of(2, 8, 2));
  const TenantId a = f.tenant("acme", {16, 0, 1});
  f.s.set_draining(f.pool, 0, true);
  const JobId j1 = f.submit(a, 8);
  const JobId j2 = f.submit(a, 8, 1);
  auto d = f.run(1);
  REQUIRE(d.count(j1));
  CHECK(nodes_of(d.at(j1).placement) == std::set<NodeId>{1});
  CHECK(f.s.state(j2) == JobState::kPending);
  f.s.set_draining(f.pool, 0, false);
  CHECK(f.run(2).count(j2));
}

// Random workloads: after every pass, no device is booked twice, every gang is whole, no tenant
// is above its cap or its quota, and a tenant within its guarantee waits only while devices are
// being reclaimed for it or nobody borrows anything to reclaim.
TEST_CASE("properties over random workloads") {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    Options o;
    o.min_runtime_seconds = pick(0, 1) * 50;
    Scheduler s(o);
    PoolSpec spec;
    spec.name = "p";
    const int nodes = pick(1, 12), per_domain = pick(1, 4);
    for (int i = 0; i < nodes; ++i) spec.nodes.push_back({"n", pick(1, 8), i / per_domain});
    const int32_t pool = s.add_pool(spec);
    const int64_t total = s.total_devices(pool);
    struct T {
      Quota q;
      int64_t cap;
    };
    std::vector<T> ts;
    const int tenants = pick(1, 5);
    for (int t = 0; t < tenants; ++t) {
      // Guarantees add up to at most the pool, as staff would set them.
      T spec_t{{pick(0, static_cast<int>(total) / tenants), pick(0, static_cast<int>(total)),
                static_cast<double>(pick(1, 4))},
               pick(1, static_cast<int>(total) + 4)};
      ts.push_back(spec_t);
      s.add_tenant({"t" + std::to_string(t), spec_t.cap, ""});
      s.set_quota(t, pool, spec_t.q);
    }
    std::map<JobId, JobSpec> jobs;  // alive
    std::set<JobId> preempting;
    JobId next = 1;
    const bool unit_jobs = seed % 2 == 0;  // one device each: the guarantee check is exact
    for (int64_t now = 0; now < 2000; now += pick(1, 40)) {
      const int action = pick(0, 9);
      if (action < 5) {
        JobSpec j{pick(0, tenants - 1), pool, unit_jobs ? 1 : pick(1, 12),
                  pick(0, 2),           now,  pick(0, 9) > 0};
        s.submit(next, j);
        jobs[next++] = j;
      } else if (action < 7 && !jobs.empty()) {
        auto it = std::next(jobs.begin(), pick(0, static_cast<int>(jobs.size()) - 1));
        s.finish(it->first, now);
        preempting.erase(it->first);
        jobs.erase(it);
      } else if (!preempting.empty()) {
        const JobId v = *preempting.begin();
        s.requeue(v, now);
        preempting.erase(v);
      }
      std::set<JobId> reclaiming_for;
      for (const auto& d : s.pass(now)) {
        if (d.kind == Decision::Kind::kPreempt) {
          preempting.insert(d.job);
          reclaiming_for.insert(d.for_job);
        } else {
          CHECK(d.placement.size() == jobs.at(d.job).devices);  // a whole gang
        }
      }
      // No device booked twice; held devices add up.
      std::map<NodeId, uint64_t> booked;
      std::vector<int64_t> held(static_cast<size_t>(tenants), 0);
      for (const auto& [id, j] : jobs) {
        auto p = s.placement(id);
        if (!p) continue;
        CHECK(p->size() == j.devices);
        for (const auto& part : p->parts) {
          CHECK((booked[part.node] & part.devices) == 0);
          booked[part.node] |= part.devices;
        }
        held[static_cast<size_t>(j.tenant)] += j.devices;
      }
      int64_t all = 0;
      for (int t = 0; t < tenants; ++t) {
        CHECK(s.in_use(t) == held[static_cast<size_t>(t)]);
        all += held[static_cast<size_t>(t)];
      }
      CHECK(all <= total);
      for (int t = 0; t < tenants; ++t) {
        // Preempting jobs still hold devices: the caps bind what runs and what stops.
        CHECK(s.in_use(t) <= ts[static_cast<size_t>(t)].cap);
        CHECK(s.in_use(t, pool) <=
              ts[static_cast<size_t>(t)].q.nominal + ts[static_cast<size_t>(t)].q.borrowing_limit);
      }
      if (!unit_jobs) continue;
      // Guarantees: a waiting job within its tenant's nominal and cap either has devices being
      // reclaimed for it, or nothing is free and nobody borrows anything preemptible.
      for (const auto& [id, j] : jobs) {
        if (s.state(id) != JobState::kPending) continue;
        const T& t = ts[static_cast<size_t>(j.tenant)];
        if (s.in_use(j.tenant, pool) + 1 > t.q.nominal || s.in_use(j.tenant) + 1 > t.cap) continue;
        const std::string why = s.pending_info(id)->reason;
        if (why.find("behind") != std::string::npos) continue;  // its tenant's first waits
        if (why.find("reclaiming") != std::string::npos) continue;
        CHECK_MESSAGE(s.free_devices(pool) == 0, why);
        if (o.min_runtime_seconds > 0) continue;
        for (const auto& [other_id, other] : jobs) {
          if (other.tenant == j.tenant || !other.preemptible) continue;
          if (s.state(other_id) != JobState::kRunning) continue;
          const T& ot = ts[static_cast<size_t>(other.tenant)];
          CHECK_MESSAGE(s.in_use(other.tenant, pool) <= ot.q.nominal, why);
        }
      }
    }
  }
}

}  // namespace
}  // namespace mh::scheduler
