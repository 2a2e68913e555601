// scheduler_bench: the scheduler's core on a simulated Colossus — 100,000 GPUs on 12,500 nodes
// of 8 (NVLink domains of 9 nodes, 72 GPUs), 1,000 tenants whose guarantees add up to the
// cluster, and 1,000,000 queued jobs of mixed gang sizes. It measures the first pass (an empty
// cluster filling up), then steady state: a share of the running jobs end and a pass refills
// the freed devices, many times over. Placements per second, the time of one full pass, and
// peak memory.
//   scheduler_bench [--nodes 12500] [--tenants 1000] [--jobs 1000000] [--rounds 20]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "platform/scheduler/scheduler.h"

using namespace mh::scheduler;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t nodes = 12'500, tenants = 1'000, jobs = 1'000'000, rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int64_t v = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--nodes")) nodes = v;
    if (!std::strcmp(argv[i], "--tenants")) tenants = v;
    if (!std::strcmp(argv[i], "--jobs")) jobs = v;
    if (!std::strcmp(argv[i], "--rounds")) rounds = v;
  }
  std::mt19937_64 rng(2026);
  Scheduler s;
  PoolSpec spec;
  spec.name = "colossus";
  for (int64_t n = 0; n < nodes; ++n) {
    spec.nodes.push_back({"node" + std::to_string(n), 8, static_cast<int32_t>(n / 9)});
  }
  const int32_t pool = s.add_pool(spec);
  const int64_t total = s.total_devices(pool);
  for (int64_t t = 0; t < tenants; ++t) {
    const TenantId id = s.add_tenant({"tenant" + std::to_string(t), total, ""});
    s.set_quota(id, pool, {total / tenants, total / 10, static_cast<double>(1 + t % 4)});
  }
  // Gang sizes: mostly small, some whole nodes, a few multi-node.
  const int sizes[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 16, 32, 64};
  std::uniform_int_distribution<int> size_pick(0, std::size(sizes) - 1);
  std::uniform_int_distribution<int64_t> tenant_pick(0, tenants - 1);
  const auto t_submit = Clock::now();
  for (JobId id = 0; id < jobs; ++id) {
    s.submit(id, {static_cast<TenantId>(tenant_pick(rng)), pool, sizes[size_pick(rng)],
                  static_cast<int32_t>(id % 3), id / 1000, true});
  }
  const double submit_s = seconds_since(t_submit);

  // The first pass: an empty cluster fills.
  int64_t now = 10'000;
  auto t0 = Clock::now();
  auto decisions = s.pass(now);
  const double first_s = seconds_since(t0);
  int64_t placed_first = 0;
  std::vector<JobId> running;
  for (const auto& d : decisions) {
    if (d.kind == Decision::Kind::kAdmit) {
      ++placed_first;
      running.push_back(d.job);
    }
  }
  const int64_t busy_first = total - s.free_devices(pool);

  // Steady state: 5 % of running jobs end, one pass refills.
  double pass_total = 0, worst = 0;
  int64_t placed = 0;
  for (int64_t r = 0; r < rounds; ++r) {
    now += 60;
    std::shuffle(running.begin(), running.end(), rng);
    const size_t ending = running.size() / 20;
    for (size_t i = 0; i < ending; ++i) s.finish(running[running.size() - 1 - i], now);
    running.resize(running.size() - ending);
    t0 = Clock::now();
    decisions = s.pass(now);
    const double took = seconds_since(t0);
    pass_total += took;
    worst = std::max(worst, took);
    for (const auto& d : decisions) {
      if (d.kind == Decision::Kind::kAdmit) {
        ++placed;
        running.push_back(d.job);
      }
    }
  }
  std::printf("cluster: %lld GPUs on %lld nodes (NVLink domains of 9), %lld tenants, %lld jobs\n",
              static_cast<long long>(total), static_cast<long long>(nodes),
              static_cast<long long>(tenants), static_cast<long long>(jobs));
  std::printf("submitting %lld jobs: %.2f s\n", static_cast<long long>(jobs), submit_s);
  std::printf("\n%-36s %14s\n", "measure", "value");
  std::printf("%-36s %14.3f\n", "first pass, s", first_s);
  std::printf("%-36s %14lld\n", "  placements", static_cast<long long>(placed_first));
  std::printf("%-36s %14.0f\n", "  placements/s", placed_first / first_s);
  std::printf("%-36s %13.1f%%\n", "  GPUs busy after it",
              100.0 * static_cast<double>(busy_first) / static_cast<double>(total));
  std::printf("%-36s %14.3f\n", "steady pass, mean s", pass_total / static_cast<double>(rounds));
  std::printf("%-36s %14.3f\n", "steady pass, worst s", worst);
  std::printf("%-36s %14.0f\n", "steady placements/s", placed / pass_total);
  std::printf("%-36s %14zu\n", "jobs still queued", s.waiting());
  std::printf("%-36s %14ld\n", "peak memory, MB", peak_rss_mb());
  return 0;
}
