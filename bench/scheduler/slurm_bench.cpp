// slurm_bench: the same small workload — N short jobs, each asking for one GPU (GRES) — through
// Macrohard's Slurm executor (SlurmWorker: a batch script, sbatch, the state from scontrol) and
// through plain `sbatch --wrap`, side by side, on the Slurm cluster SLURM_CONF names.
// bench/scheduler/slurm_compare.sh starts a one-node cluster and runs this.
//   slurm_bench --work DIR [--jobs 50] [--rounds 3]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "platform/executor/slurm_worker.h"

using namespace mh::executor;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::map<std::string, std::string> slurm_env() {
  std::map<std::string, std::string> env;
  if (const char* conf = std::getenv("SLURM_CONF")) env["SLURM_CONF"] = conf;
  return env;
}

// Our path: each job a SlurmWorker, all submitted, then each waited for.
double ours(const std::string& work, int jobs, int round) {
  SlurmOptions options;
  options.env = slurm_env();
  options.poll = std::chrono::milliseconds(100);
  const auto t0 = Clock::now();
  std::vector<std::unique_ptr<SlurmWorker>> workers;
  for (int i = 0; i < jobs; ++i) {
    WorkerSpec spec;
    spec.argv = {"/bin/true"};
    spec.work_dir = work + "/ours-" + std::to_string(round) + "-" + std::to_string(i);
    spec.gpus = {0};
    auto w = SlurmWorker::start(spec, options);
    if (!w.ok()) {
      std::fprintf(stderr, "%s\n", w.status().message().c_str());
      std::exit(1);
    }
    workers.push_back(std::move(w).value());
  }
  for (auto& w : workers) {
    auto exit = w->wait(std::chrono::minutes(5));
    if (!exit || !exit->ok()) {
      std::fprintf(stderr, "a job did not finish: %s\n", exit ? exit->reason.c_str() : "timeout");
      std::exit(1);
    }
  }
  return since(t0);
}

// Plain sbatch: the same jobs with --wrap, then squeue until none is left.
double plain(const std::string& work, int jobs, int round) {
  const auto env = slurm_env();
  const auto t0 = Clock::now();
  const std::string name = "plain-" + std::to_string(round);
  for (int i = 0; i < jobs; ++i) {
    auto r = run_command({"sbatch", "--parsable", "--job-name=" + name, "--gres=gpu:1",
                          "--output=" + work + "/" + name + "-%j.out", "--wrap=/bin/true"},
                         env);
    if (!r.ok() || r->exit_code != 0) {
      std::fprintf(stderr, "sbatch failed\n");
      std::exit(1);
    }
  }
  for (;;) {
    auto q = run_command({"squeue", "-h", "-n", name, "-o", "%i"}, env);
    if (q.ok() && q->exit_code == 0 && q->out.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string work = "/tmp";
  int jobs = 50, rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--work")) work = argv[i + 1];
    if (!std::strcmp(argv[i], "--jobs")) jobs = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  std::vector<double> a, b;
  for (int r = 0; r < rounds; ++r) {
    // Alternate which goes first.
    if (r % 2 == 0) {
      a.push_back(ours(work, jobs, r));
      b.push_back(plain(work, jobs, r));
    } else {
      b.push_back(plain(work, jobs, r));
      a.push_back(ours(work, jobs, r));
    }
    std::printf("round %d: SlurmWorker %.2f s, plain sbatch %.2f s\n", r + 1, a.back(), b.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("\n%d jobs of 1 GPU each (/bin/true), median of %d rounds\n", jobs, rounds);
  std::printf("%-24s %10s %10s\n", "path", "seconds", "jobs/s");
  std::printf("%-24s %10.2f %10.1f\n", "SlurmWorker", median(a), jobs / median(a));
  std::printf("%-24s %10.2f %10.1f\n", "plain sbatch --wrap", median(b), jobs / median(b));
  return 0;
}
