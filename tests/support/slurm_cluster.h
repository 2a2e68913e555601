// A one-node Slurm cluster of its own (munged, slurmctld and slurmd from Debian's slurm-wlm and
// munge) in a temporary directory, for tests of the Slurm executor. `up` says whether it came
// up; `why` says why not (not installed, not root, the node did not register).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "platform/executor/slurm_worker.h"
#include "tests/support/harness.h"

namespace mh::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct SlurmCluster {
  TempDir dir;
  std::map<std::string, std::string> env;  // SLURM_CONF
  std::string node, conf;
  bool up = false;
  std::string why;

  SlurmCluster() {
    // One test cluster on a machine at a time (ctest runs tests in parallel): the lock is held
    // for the cluster's life.
    lock_fd = ::open("/tmp/macrohard-slurm-tests.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_fd >= 0) ::flock(lock_fd, LOCK_EX);
    for (const char* bin : {"/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"}) {
      if (!fs::exists(bin)) {
        why = std::string(bin) + " is missing (scripts/setup installs slurm-wlm and munge)";
        return;
      }
    }
    if (::geteuid() != 0) {
      why = "slurmd needs root";
      return;
    }
    const fs::path d = dir.path();
    fs::create_directories(d / "state");
    fs::create_directories(d / "spool");
    fs::create_directories(d / "dev");
    {
      std::ofstream key(d / "munge.key", std::ios::binary);
      std::ifstream random("/dev/urandom", std::ios::binary);
      char bytes[1024];
      random.read(bytes, sizeof bytes);
      key.write(bytes, sizeof bytes);
    }
    fs::permissions(d / "munge.key", fs::perms::owner_read | fs::perms::owner_write);
    auto munged = run_process(
        {"/usr/sbin/munged", "--force", "--key-file", (d / "munge.key").string(), "--socket",
         (d / "munge.sock").string(), "--pid-file", (d / "munged.pid").string(), "--log-file",
         (d / "munged.log").string(), "--seed-file", (d / "munge.seed").string()});
    REQUIRE_MESSAGE(munged.exit_code == 0, munged.output);
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node = host;
    node = node.substr(0, node.find('.'));
    const int port = 20000 + static_cast<int>(::getpid() % 20000);
    for (int i = 0; i < 4; ++i) std::ofstream(d / "dev" / ("gpu" + std::to_string(i)));
    std::ofstream(d / "slurm.conf")
        << "ClusterName=mh\nSlurmctldHost=" << node
        << "\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket="
        << (d / "munge.sock").string()
        << "\nCredType=cred/munge\nStateSaveLocation=" << (d / "state").string()
        << "\nSlurmdSpoolDir=" << (d / "spool").string()
        << "\nSlurmctldPidFile=" << (d / "slurmctld.pid").string()
        << "\nSlurmdPidFile=" << (d / "slurmd.pid").string() << "\nSlurmctldPort=" << port
        << "\nSlurmdPort=" << port + 1
        << "\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
           "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
           "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
           "MpiDefault=none\nReturnToService=2\nKillWait=5\nSlurmctldLogFile="
        << (d / "slurmctld.log").string() << "\nSlurmdLogFile=" << (d / "slurmd.log").string()
        << "\nGresTypes=gpu\nNodeName=" << node << " CPUs=" << std::thread::hardware_concurrency()
        << " RealMemory=1000 Gres=gpu:4 State=UNKNOWN\n"
           "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n";
    std::ofstream(d / "gres.conf") << "AutoDetect=off\nNodeName=" << node
                                   << " Name=gpu File=" << (d / "dev").string() << "/gpu[0-3]\n";
    conf = (d / "slurm.conf").string();
    env = {{"SLURM_CONF", conf}};
    auto ctld = run_process({"/usr/sbin/slurmctld", "-c"}, env);
    REQUIRE_MESSAGE(ctld.exit_code == 0, ctld.output);
    auto slurmd = run_process({"/usr/sbin/slurmd"}, env);
    REQUIRE_MESSAGE(slurmd.exit_code == 0, slurmd.output);
    // Up when the node takes jobs.
    for (int i = 0; i < 100 && !up; ++i) {
      auto info = executor::run_command({"sinfo", "-h", "-o", "%T"}, env);
      if (info.ok() && info->out.find("idle") != std::string::npos) up = true;
      if (info.ok() && info->out.find("drain") != std::string::npos) {
        (void)executor::run_command({"scontrol", "update", "nodename=" + node, "state=resume"},
                                    env);
      }
      if (!up) std::this_thread::sleep_for(100ms);
    }
    if (!up) why = "the node did not come up: " + read_file(d / "slurmd.log");
  }
  executor::SlurmOptions options() const {
    executor::SlurmOptions o;
    o.env = env;
    return o;
  }
  int lock_fd = -1;
  ~SlurmCluster() {
    // Jobs still running (a daemon killed under them) go first, so nothing outlives the cluster.
    if (up) {
      (void)executor::run_command({"scancel", "--full", "--partition=debug"}, env);
      for (int i = 0; i < 100; ++i) {
        auto q = executor::run_command({"squeue", "-h", "-o", "%i"}, env);
        if (!q.ok() || q->out.empty()) break;
        std::this_thread::sleep_for(100ms);
      }
    }
    for (const char* pid_file : {"slurmd.pid", "slurmctld.pid", "munged.pid"}) {
      std::ifstream in(dir.path() / pid_file);
      pid_t pid = 0;
      if (in >> pid && pid > 0) {
        ::kill(pid, SIGTERM);
        for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(50ms);
      }
    }
    if (lock_fd >= 0) ::close(lock_fd);  // releases the lock
  }
};

}  // namespace mh::test
