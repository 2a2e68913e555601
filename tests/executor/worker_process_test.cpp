// Worker processes as the local executor starts them: real mh-worker training runs reporting
// through the channel, a cancel that checkpoints within the grace period, a worker that ignores
// SIGTERM, crashes with their reasons, and the environment, directory and limits a worker gets.
#include <doctest/doctest.h>

#include <fstream>
#include <mutex>

#include "platform/executor/worker_process.h"
#include "tests/executor/fixtures.h"
#include "tests/support/harness.h"

namespace mh::executor {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST_CASE("a worker trains, reporting each step and the result through its channel") {
  test::TempDir dir;
  make_training_inputs(dir.path());
  Events events;
  auto w = WorkerProcess::start(train_spec(dir.path(), "5", "run"), events.sink());
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  auto exit = (*w)->wait(120s);
  REQUIRE(exit.has_value());
  CHECK_MESSAGE(exit->ok(), exit->reason);
  CHECK(exit->reason == "exited normally");
  CHECK(events.count("step") == 5);
  REQUIRE(events.count("done") == 1);
  CHECK(events.lines.back().find("\"step\":5") != std::string::npos);
  CHECK(fs::exists(dir.path() / "run" / "out" / "model.safetensors"));
  // Its output went to worker.log in its own directory.
  CHECK(test::read_file(dir.path() / "run" / "worker.log").find("step 5/5") != std::string::npos);
}

TEST_CASE("cancelling a training worker checkpoints it within the grace period, and it resumes") {
  test::TempDir dir;
  make_training_inputs(dir.path());
  Events events;
  auto w = WorkerProcess::start(train_spec(dir.path(), "100000", "run"), events.sink());
  REQUIRE(w.ok());
  for (int i = 0; i < 2000 && events.count("step") < 3; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(events.count("step") >= 3);
  const WorkerExit exit = (*w)->cancel(30s);
  CHECK(exit.cancelled);
  CHECK_FALSE(exit.killed_after_grace);
  CHECK(exit.exit_code == 0);
  CHECK(exit.reason == "cancelled");
  REQUIRE(events.count("stopped") == 1);
  // The checkpoint it named is one training can resume from.
  const std::string stopped = events.last("stopped");
  const std::string checkpoint = event_field(stopped, "checkpoint");
  CHECK(fs::exists(fs::path(checkpoint) / "optimizer.safetensors"));
  auto spec = train_spec(dir.path(), "100000", "resumed");
  spec.argv.insert(spec.argv.end(), {"--resume", checkpoint});
  Events again;
  auto resumed = WorkerProcess::start(spec, again.sink());
  REQUIRE(resumed.ok());
  for (int i = 0; i < 2000 && again.count("step") < 1; ++i) std::this_thread::sleep_for(10ms);
  (*resumed)->cancel(30s);
  REQUIRE(again.count("step") >= 1);
  // The first step after resuming continues the count.
  const std::string first = again.lines.front();
  const int64_t resumed_at = std::stoll(event_field(stopped, "step"));
  CHECK(first.find("\"step\":" + std::to_string(resumed_at + 1) + ",") != std::string::npos);
}

TEST_CASE("a worker that ignores SIGTERM is killed after the grace period") {
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "trap '' TERM; echo ready >&3; while :; do sleep 1; done"};
  spec.work_dir = dir.path() / "stubborn";
  Events events;
  auto w = WorkerProcess::start(spec, events.sink());
  REQUIRE(w.ok());
  for (int i = 0; i < 500 && events.size() == 0; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(events.size() == 1);  // it is running, with its trap set
  const auto started = std::chrono::steady_clock::now();
  const WorkerExit exit = (*w)->cancel(300ms);
  CHECK(exit.killed_after_grace);
  CHECK(exit.signal == SIGKILL);
  CHECK(exit.reason == "cancelled; killed after the grace period");
  CHECK(std::chrono::steady_clock::now() - started < 10s);
}

TEST_CASE("hardware faults in a worker's last words are told from the work's own errors") {
  CHECK(device_failure("exited with status 1: CUDA error: uncorrectable ECC error encountered"));
  CHECK(
      device_failure("killed by signal 6: NVRM: Xid (PCI:0000:17:00): 79, GPU has fallen off "
                     "the bus"));
  CHECK_FALSE(device_failure("exited with status 2: mh-worker: line 3: not valid JSON"));
  CHECK_FALSE(device_failure("exited with status 1: CUDA error: out of memory"));
}

TEST_CASE("a crashed worker's exit says why, from its log") {
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "echo 'loading model'; echo 'out of memory on device 0' >&2; exit 3"};
  spec.work_dir = dir.path() / "crash";
  auto w = WorkerProcess::start(spec);
  REQUIRE(w.ok());
  auto exit = (*w)->wait(30s);
  REQUIRE(exit.has_value());
  CHECK(exit->exit_code == 3);
  CHECK(exit->reason == "exited with status 3: loading model\nout of memory on device 0");

  spec.argv = {"/bin/sh", "-c", "kill -SEGV $$"};
  w = WorkerProcess::start(spec);
  REQUIRE(w.ok());
  exit = (*w)->wait(30s);
  CHECK(exit->signal == SIGSEGV);
  CHECK(exit->reason.starts_with("killed by signal 11 (Segmentation fault)"));

  spec.argv = {(dir.path() / "no-such-program").string()};
  auto missing = WorkerProcess::start(spec);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("No such file or directory") != std::string::npos);
}

TEST_CASE("a worker sees only its devices, its directory, its thread budget and its limits") {
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "echo \"dir=$(pwd) gpus=[$CUDA_VISIBLE_DEVICES] threads=$MH_THREADS "
               "files=$(ulimit -n) secret=[$MH_TEST_SECRET] extra=$EXTRA\" >&3"};
  spec.work_dir = dir.path() / "env";
  spec.gpus = {2, 5};
  spec.cpu_threads = 3;
  spec.limits.open_files = 64;
  spec.env = {{"EXTRA", "yes"}};
  ::setenv("MH_TEST_SECRET", "daemon-only", 1);  // the daemon's environment is not passed on
  Events events;
  auto w = WorkerProcess::start(spec, events.sink());
  REQUIRE(w.ok());
  REQUIRE((*w)->wait(30s).has_value());
  ::unsetenv("MH_TEST_SECRET");
  REQUIRE(events.lines.size() == 1);
  CHECK(events.lines[0] == "dir=" + fs::canonical(spec.work_dir).string() +
                               " gpus=[2,5] threads=3 files=64 secret=[] extra=yes");

  spec.gpus.clear();  // a CPU worker sees no GPU at all
  spec.argv = {"/bin/sh", "-c", "echo \"gpus=[${CUDA_VISIBLE_DEVICES-unset}]\" >&3"};
  Events cpu;
  w = WorkerProcess::start(spec, cpu.sink());
  REQUIRE((*w)->wait(30s).has_value());
  REQUIRE(cpu.lines.size() == 1);
  CHECK(cpu.lines[0] == "gpus=[]");
}

}  // namespace
}  // namespace mh::executor

// ---- The same contract through Slurm: a real single-node cluster (munged, slurmctld, slurmd
// from Debian's slurm-wlm and munge) started in a temporary directory for these tests.
#include <signal.h>
#include <sys/stat.h>

#include "platform/executor/launcher.h"
#include "platform/executor/slurm_worker.h"
#include "tests/support/slurm_cluster.h"

namespace mh::executor {
namespace {

// One cluster for these tests, started by the first that needs it, stopped at exit.
test::SlurmCluster& cluster() {
  static test::SlurmCluster c;
  return c;
}

// One test case (one process, one cluster) with a subcase each.
TEST_CASE("workers run as Slurm batch jobs with the local executor's contract") {
  test::SlurmCluster& slurm = cluster();
  if (!slurm.up) {
    MESSAGE("skipped: no Slurm here: " << slurm.why);
    return;
  }
  SUBCASE("a worker trains as a batch job, reporting through its events file") {
    test::TempDir dir;
    make_training_inputs(dir.path());
    Events events;
    auto w = SlurmWorker::start(train_spec(dir.path(), "5", "run"), slurm.options(), events.sink());
    REQUIRE_MESSAGE(w.ok(), w.status().to_string());
    CHECK(!(*w)->job_id().empty());
    auto exit = (*w)->wait(120s);
    REQUIRE(exit.has_value());
    CHECK_MESSAGE(exit->ok(), exit->reason);
    CHECK(events.count("step") == 5);
    CHECK(events.count("done") == 1);
    CHECK(test::read_file(dir.path() / "run" / "worker.log").find("step 5/5") != std::string::npos);
  }
  SUBCASE("cancel sends SIGTERM first, and the training checkpoints") {
    test::TempDir dir;
    make_training_inputs(dir.path());
    Events events;
    auto w =
        SlurmWorker::start(train_spec(dir.path(), "100000", "run"), slurm.options(), events.sink());
    REQUIRE(w.ok());
    for (int i = 0; i < 3000 && events.count("step") < 3; ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(events.count("step") >= 3);
    const WorkerExit exit = (*w)->cancel(30s);
    CHECK(exit.cancelled);
    CHECK_FALSE(exit.killed_after_grace);
    CHECK(events.count("stopped") == 1);
  }
  SUBCASE("through the Slurm launcher: one rank a job, and a dead daemon's job is stopped") {
    std::unique_ptr<Launcher> launcher = make_slurm_launcher(slurm.options());
    CHECK(launcher->remote());
    CHECK(launcher->max_ranks() == 1);
    test::TempDir dir;
    make_training_inputs(dir.path());
    CHECK_FALSE(launcher->start(train_spec(dir.path(), "5", "two"), 2, "", {}).ok());
    Events events;
    auto w = launcher->start(train_spec(dir.path(), "100000", "run"), 1, "", events.sink());
    REQUIRE_MESSAGE(w.ok(), w.status().to_string());
    const std::string handle = (*w)->handle();
    REQUIRE(handle.starts_with("slurm:"));
    for (int i = 0; i < 3000 && events.count("step") < 3; ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(events.count("step") >= 3);
    // As the next daemon finds it: told to checkpoint and stop, and waited for.
    CHECK(launcher->reclaim(handle, 60s));
    auto exit = (*w)->wait(30s);
    REQUIRE(exit.has_value());
    for (int i = 0; i < 500 && events.count("stopped") < 1; ++i) std::this_thread::sleep_for(10ms);
    CHECK(events.count("stopped") == 1);
  }
  SUBCASE("a contained worker is contained on its node as a local one is") {
    test::TempDir dir;
    const fs::path input = dir.path() / "input", other = dir.path() / "other";
    fs::create_directories(input);
    fs::create_directories(other);
    std::ofstream(input / "mine") << "its model";
    std::ofstream(other / "theirs") << "another tenant's data";
    WorkerSpec spec;
    spec.argv = {test::mhworker_path().string(),   "sandbox-check",
                 "--try-read",                     (input / "mine").string(),
                 "--try-read",                     (other / "theirs").string(),
                 "--try-write",                    (other / "planted").string()};
    spec.work_dir = dir.path() / "work";
    spec.sandbox.enabled = true;
    spec.sandbox.read = {input};
    spec.sandbox.network = false;
    auto w = SlurmWorker::start(spec, slurm.options());
    REQUIRE_MESSAGE(w.ok(), w.status().to_string());
    auto exit = (*w)->wait(60s);
    REQUIRE(exit.has_value());
    const std::string log = test::read_file(dir.path() / "work" / "worker.log");
    CHECK_MESSAGE(exit->ok(), log);
    CHECK(log.find("sandbox: landlock") != std::string::npos);
    CHECK(log.find("read " + (input / "mine").string() + ": allowed") != std::string::npos);
    CHECK(log.find("read " + (other / "theirs").string() + ": denied") != std::string::npos);
    CHECK(log.find("write " + (other / "planted").string() + ": denied") != std::string::npos);
    CHECK(log.find("network: none") != std::string::npos);
    CHECK_FALSE(fs::exists(other / "planted"));
  }
  SUBCASE("a worker gets its GPUs as GRES and its thread budget, and a failure says why") {
    test::TempDir dir;
    WorkerSpec spec;
    spec.argv = {"/usr/bin/env"};
    spec.work_dir = dir.path() / "env";
    spec.gpus = {0, 1};
    spec.cpu_threads = 1;
    auto w = SlurmWorker::start(spec, slurm.options());
    REQUIRE_MESSAGE(w.ok(), w.status().to_string());
    auto exit = (*w)->wait(60s);
    REQUIRE(exit.has_value());
    CHECK(exit->ok());
    const std::string env = test::read_file(dir.path() / "env" / "worker.log");
    CHECK(env.find("SLURM_GPUS_ON_NODE=2") != std::string::npos);
    CHECK(env.find("MH_THREADS=1") != std::string::npos);
    CHECK(env.find("MH_EVENTS_FILE=") != std::string::npos);

    spec.argv = {"/bin/sh", "-c", "echo the model did not fit; exit 3"};
    spec.work_dir = dir.path() / "fails";
    spec.gpus = {};
    auto f = SlurmWorker::start(spec, slurm.options());
    REQUIRE(f.ok());
    exit = (*f)->wait(60s);
    REQUIRE(exit.has_value());
    CHECK_FALSE(exit->ok());
    CHECK(exit->exit_code == 3);
    CHECK(exit->reason == "exited with status 3: the model did not fit");
  }
}

}  // namespace
}  // namespace mh::executor
