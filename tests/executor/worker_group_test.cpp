// Data-parallel ranks as the local executor starts them: real mh-worker processes that find each
// other through the bootstrap the group passes, train as one, stop together, and fail together.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "platform/executor/launcher.h"
#include "platform/executor/worker_group.h"
#include "tests/executor/fixtures.h"

namespace mh::executor {
namespace {

using namespace std::chrono_literals;

WorkerSpec with(WorkerSpec spec, std::vector<std::string> more) {
  spec.argv.insert(spec.argv.end(), more.begin(), more.end());
  return spec;
}

std::string weights(const fs::path& out) { return test::read_file(out / "model.safetensors"); }

WorkerExit run_single(const WorkerSpec& spec) {
  auto w = WorkerProcess::start(spec);
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  auto exit = (*w)->wait(300s);
  REQUIRE(exit.has_value());
  return *exit;
}

TEST_CASE("two ranks train bit-identically to one rank taking both micro-batches") {
  test::TempDir dir;
  make_training_inputs(dir.path());
  const WorkerExit one =
      run_single(with(train_spec(dir.path(), "8", "one"), {"--grad-accum", "2"}));
  REQUIRE_MESSAGE(one.ok(), one.reason);

  Events events;
  auto g = WorkerGroup::start(train_spec(dir.path(), "8", "two"), 2, events.sink());
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  CHECK(pids_of_handle((*g)->handle()).size() == 2);
  auto exit = (*g)->wait(300s);
  REQUIRE(exit.has_value());
  REQUIRE_MESSAGE(exit->ok(), exit->reason);
  // The group's channel is rank 0's: one report per step, one result.
  CHECK(events.count("step") == 8);
  CHECK(events.count("done") == 1);
  CHECK(weights(dir.path() / "two" / "out") == weights(dir.path() / "one" / "out"));
  // Rank 1 ran beside it, in its own directory, and wrote no model.
  CHECK(test::read_file(dir.path() / "two" / "rank-1" / "worker.log").find("rank 1 of 2") !=
        std::string::npos);
  CHECK(test::read_file(dir.path() / "two" / "worker.log").find("rank 0 of 2") !=
        std::string::npos);
}

TEST_CASE("a cancelled group stops after one step, rank 0 checkpoints it, and one rank resumes") {
  test::TempDir dir;
  make_training_inputs(dir.path());
  const char* steps = "1500";
  Events events;
  auto g = WorkerGroup::start(train_spec(dir.path(), steps, "two"), 2, events.sink());
  REQUIRE(g.ok());
  for (int i = 0; i < 3000 && events.count("step") < 3; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(events.count("step") >= 3);
  const WorkerExit exit = (*g)->cancel(60s);
  CHECK(exit.cancelled);
  CHECK_FALSE(exit.killed_after_grace);
  REQUIRE(events.count("stopped") == 1);
  const std::string stopped = events.last("stopped");
  const fs::path checkpoint = event_field(stopped, "checkpoint");
  REQUIRE(fs::exists(checkpoint / "trainer_state.json"));
  // Both ranks stopped after the same step: rank 1 says which.
  const std::string rank1 = test::read_file(dir.path() / "two" / "rank-1" / "worker.log");
  CHECK(rank1.find("stopped at step " + event_field(stopped, "step") + " ") != std::string::npos);

  // Resumed on one device (the same global batch as two micro-batches), the run ends exactly
  // where an uninterrupted one-device run does.
  const WorkerExit resumed =
      run_single(with(train_spec(dir.path(), steps, "two"),
                      {"--grad-accum", "2", "--resume", checkpoint.string()}));
  REQUIRE_MESSAGE(resumed.ok(), resumed.reason);
  const WorkerExit straight =
      run_single(with(train_spec(dir.path(), steps, "one"), {"--grad-accum", "2"}));
  REQUIRE_MESSAGE(straight.ok(), straight.reason);
  CHECK(weights(dir.path() / "two" / "out") == weights(dir.path() / "one" / "out"));
}

TEST_CASE("a rank that dies fails the group, and the group's reason names that rank") {
  test::TempDir dir;
  make_training_inputs(dir.path());
  Events events;
  auto g = WorkerGroup::start(train_spec(dir.path(), "100000", "two"), 3, events.sink());
  REQUIRE(g.ok());
  for (int i = 0; i < 3000 && events.count("step") < 2; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(events.count("step") >= 2);
  const auto pids = pids_of_handle((*g)->handle());
  REQUIRE(pids.size() == 3);
  ::kill(pids[2], SIGKILL);
  auto exit = (*g)->wait(60s);
  REQUIRE(exit.has_value());
  CHECK_FALSE(exit->ok());
  CHECK_MESSAGE(exit->reason.starts_with("rank 2: killed by signal 9"), exit->reason);
  // The others did not wait for a timeout: they lost rank 2 and ended.
  for (pid_t p : {pids[0], pids[1]}) CHECK(::kill(p, 0) != 0);
}

TEST_CASE("a group is refused devices that do not match its ranks") {
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.work_dir = dir.path();
  spec.gpus = {0, 1, 2};
  auto g = WorkerGroup::start(spec, 2);
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().message() == "3 devices for 2 ranks");
}

TEST_CASE("each rank sees only its own device and is told its place in the group") {
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "echo \"$MH_RANK/$MH_WORLD_SIZE gpu=$CUDA_VISIBLE_DEVICES at=$MH_RENDEZVOUS "
               "token=${#MH_RENDEZVOUS_TOKEN} fd=$MH_RENDEZVOUS_FD\"; "
               "if [ -S /proc/$$/fd/4 ]; then echo listening on fd 4; fi"};
  spec.work_dir = dir.path();
  spec.gpus = {4, 6};
  auto g = WorkerGroup::start(spec, 2);
  REQUIRE(g.ok());
  auto exit = (*g)->wait(30s);
  REQUIRE(exit.has_value());
  CHECK(exit->ok());
  const std::string r0 = test::read_file(dir.path() / "worker.log");
  const std::string r1 = test::read_file(dir.path() / "rank-1" / "worker.log");
  CHECK(r0.starts_with("0/2 gpu=4 at=127.0.0.1:"));
  CHECK(r1.starts_with("1/2 gpu=6 at=127.0.0.1:"));
  CHECK(r0.find("token=32") != std::string::npos);  // 24 random bytes, base64url
  // Both were given the same rendezvous.
  CHECK(r0.substr(r0.find("at="), 20) == r1.substr(r1.find("at="), 20));
  // Rank 0 inherits the socket already listening there; rank 1 only connects to it.
  CHECK(r0.find("fd=4\nlistening on fd 4") != std::string::npos);
  CHECK(r1.find("fd=\n") != std::string::npos);
  CHECK(r1.find("listening") == std::string::npos);
}

TEST_CASE("a process that has exited is not running, though no one has reaped it yet") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::pause();  // until killed
    ::_exit(0);
  }
  CHECK(process_running(child));
  ::kill(child, SIGKILL);
  // A zombie until reaped: kill(pid, 0) still succeeds on it, process_running does not.
  for (int i = 0; i < 200 && process_running(child); ++i) std::this_thread::sleep_for(10ms);
  CHECK(::kill(child, 0) == 0);
  CHECK_FALSE(process_running(child));
  REQUIRE(::waitpid(child, nullptr, 0) == child);
  CHECK_FALSE(process_running(child));
}

TEST_CASE("the local launcher starts one process or a group, and waits for a dead daemon's") {
  std::unique_ptr<Launcher> local = make_local_launcher();
  CHECK(local->name() == "local");
  CHECK_FALSE(local->remote());
  test::TempDir dir;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo \"rank=$MH_RANK world=$MH_WORLD_SIZE\"; sleep 0.3"};
  spec.work_dir = dir.path() / "one";
  auto one = local->start(spec, 1, "", {});
  REQUIRE_MESSAGE(one.ok(), one.status().to_string());
  CHECK((*one)->handle().find(',') == std::string::npos);  // one process
  spec.work_dir = dir.path() / "two";
  auto two = local->start(spec, 2, "", {});
  REQUIRE_MESSAGE(two.ok(), two.status().to_string());
  const std::string handle = (*two)->handle();
  CHECK(handle.find(',') != std::string::npos);  // "pid:<rank 0>,<rank 1>"
  // What a restarted daemon does with a handle it finds: waits for every process it names.
  const auto before = std::chrono::steady_clock::now();
  CHECK(local->reclaim(handle, 30s));
  CHECK(std::chrono::steady_clock::now() - before < 10s);
  for (const pid_t pid : pids_of_handle(handle)) CHECK_FALSE(process_running(pid));
  CHECK((*two)->wait(10s).has_value());
  CHECK((*one)->wait(10s).has_value());
  CHECK(test::read_file(dir.path() / "one" / "worker.log").starts_with("rank= world="));
  CHECK(test::read_file(dir.path() / "two" / "rank-1" / "worker.log")
            .starts_with("rank=1 world=2"));
  // Gone already, or not a local worker's: nothing to wait for.
  CHECK_FALSE(local->reclaim(handle, 1s));
  CHECK_FALSE(local->reclaim("slurm:12", 1s));
}

}  // namespace
}  // namespace mh::executor
