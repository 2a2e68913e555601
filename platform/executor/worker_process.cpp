#include "platform/executor/worker_process.h"

#include "platform/executor/worker_contract.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace mh::executor {
namespace {

constexpr int kEventsFd = 3;
constexpr int kRendezvousFd = 4;

std::string errno_text(std::string_view what) {
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

std::string log_tail(const std::filesystem::path& log) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  const std::streamoff keep = std::min<std::streamoff>(size, 2000);
  in.seekg(size - keep);
  std::string text(static_cast<size_t>(keep), '\0');
  in.read(text.data(), keep);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t start = text.size();
  for (int lines = 0; lines < 5 && start > 0; ++lines) {
    const size_t nl = text.rfind('\n', start - 1);
    start = nl == std::string::npos ? 0 : nl;
  }
  if (start < text.size() && text[start] == '\n') ++start;
  return text.substr(start);
}

std::vector<pid_t> pids_of_handle(std::string_view handle) {
  std::vector<pid_t> pids;
  if (!handle.starts_with("pid:")) return pids;
  const std::string text(handle.substr(4));
  for (size_t at = 0; at < text.size();) {
    const auto pid = static_cast<pid_t>(std::atoll(text.c_str() + at));
    if (pid > 0) pids.push_back(pid);
    const size_t comma = text.find(',', at);
    at = comma == std::string::npos ? text.size() : comma + 1;
  }
  return pids;
}

bool process_running(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "re");
  if (f == nullptr) return true;  // no /proc: it exists, as far as anyone can tell
  char line[512];
  const size_t n = std::fread(line, 1, sizeof line - 1, f);
  std::fclose(f);
  line[n] = '\0';
  // "pid (comm) S …": the state follows the last ')' (comm may hold anything).
  const char* close = std::strrchr(line, ')');
  return close == nullptr || close[1] != ' ' || close[2] != 'Z';
}

bool device_failure(std::string_view reason) {
  // What the CUDA runtime, the driver and PyTorch-style wrappers print for hardware faults.
  static constexpr std::string_view kSigns[] = {"uncorrectable ECC error",
                                                "ECC_UNCORRECTABLE",
                                                "ECCUncorrectable",
                                                "GPU has fallen off the bus",
                                                "fell off the bus",
                                                "NVRM: Xid",
                                                "GPU is lost",
                                                "cudaErrorDevicesUnavailable",
                                                "CUDA_ERROR_HARDWARE_STACK_ERROR",
                                                "unrecoverable hardware error"};
  for (std::string_view sign : kSigns) {
    if (reason.find(sign) != std::string_view::npos) return true;
  }
  return false;
}

WorkerExit describe_exit(int exit_code, int signal, bool cancelled, bool escalated,
                         const std::filesystem::path& log) {
  WorkerExit e;
  e.exit_code = exit_code;
  e.signal = signal;
  e.cancelled = cancelled;
  e.killed_after_grace = escalated;
  if (cancelled) {
    e.reason = escalated ? "cancelled; killed after the grace period" : "cancelled";
  } else if (e.ok()) {
    e.reason = "exited normally";
  } else {
    e.reason = e.signal != 0 ? "killed by signal " + std::to_string(e.signal) + " (" +
                                   strsignal(e.signal) + ")"
                             : "exited with status " + std::to_string(e.exit_code);
    const std::string tail = log_tail(log);
    if (!tail.empty()) e.reason += ": " + tail;
  }
  return e;
}

Result<std::unique_ptr<WorkerProcess>> WorkerProcess::start(
    const WorkerSpec& spec, std::function<void(std::string_view)> on_event) {
  if (spec.argv.empty()) return invalid_argument("a worker needs a program to run");
  std::error_code ec;
  std::filesystem::create_directories(spec.work_dir, ec);
  if (ec) return internal_error("cannot create " + spec.work_dir.string() + ": " + ec.message());

  // Everything the child needs is prepared here: after fork it may only make system calls.
  std::vector<std::string> env_strings;
  if (const char* path = std::getenv("PATH")) env_strings.push_back(std::string("PATH=") + path);
  env_strings.push_back("LANG=C.UTF-8");
  env_strings.push_back("MH_EVENTS_FD=" + std::to_string(kEventsFd));
  if (spec.rendezvous_fd >= 0) {
    env_strings.push_back("MH_RENDEZVOUS_FD=" + std::to_string(kRendezvousFd));
  }
  std::string visible;
  for (size_t i = 0; i < spec.gpus.size(); ++i) {
    visible += (i ? "," : "") + std::to_string(spec.gpus[i]);
  }
  env_strings.push_back("CUDA_VISIBLE_DEVICES=" + visible);  // empty: no GPU at all
  if (spec.cpu_threads > 0) {
    for (const char* name : {"MH_THREADS=", "OMP_NUM_THREADS="}) {
      env_strings.push_back(name + std::to_string(spec.cpu_threads));
    }
  }
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string dir = spec.work_dir.string();

  std::unique_ptr<PreparedSandbox> sandbox;
  if (spec.sandbox.enabled) {
    MH_ASSIGN_OR_RETURN(sandbox, PreparedSandbox::prepare(spec.sandbox, spec.work_dir, argv[0]));
  }

  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  w->log_ = spec.work_dir / "worker.log";
  const int log_fd = ::open(w->log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return internal_error(errno_text("cannot open " + w->log_.string()));
  int events[2], failure[2];
  if (::pipe2(events, O_CLOEXEC) != 0 || ::pipe2(failure, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return internal_error(errno_text("pipe"));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {log_fd, events[0], events[1], failure[0], failure[1]}) ::close(fd);
    return unavailable(errno_text("fork"));
  }
  if (pid == 0) {
    // The child: its own process group (so a cancel reaches its children too), its directory,
    // its log, its channel, its limits.
    ::setpgid(0, 0);
    // If the daemon dies, the worker is asked to stop (a training run checkpoints first); if it
    // died before this line, the worker stops at once.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(143);
    auto fail = [&](int err) {
      [[maybe_unused]] ssize_t n = ::write(failure[1], &err, sizeof err);
      ::_exit(127);
    };
    if (::chdir(dir.c_str()) != 0) fail(errno);
    // The socket is moved out of the way first: its number may be one the lines below reuse.
    int rendezvous = -1;
    if (spec.rendezvous_fd >= 0) {
      rendezvous = ::fcntl(spec.rendezvous_fd, F_DUPFD_CLOEXEC, kRendezvousFd + 1);
      if (rendezvous < 0) fail(errno);
    }
    if (::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) fail(errno);
    if (::dup2(events[1], kEventsFd) < 0) fail(errno);  // dup2 clears close-on-exec
    if (rendezvous >= 0 && ::dup2(rendezvous, kRendezvousFd) < 0) fail(errno);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    const std::pair<int, uint64_t> limits[] = {{RLIMIT_AS, spec.limits.address_space_bytes},
                                               {RLIMIT_NOFILE, spec.limits.open_files},
                                               {RLIMIT_CPU, spec.limits.cpu_seconds}};
    for (auto [resource, value] : limits) {
      if (value == 0) continue;
      struct rlimit rl;
      rl.rlim_cur = rl.rlim_max = value;
      if (::setrlimit(resource, &rl) != 0) fail(errno);
    }
    if (sandbox) {
      if (int err = sandbox->enter(); err != 0) fail(err);
    }
    ::execve(argv[0], argv.data(), envp.data());
    fail(errno);
  }
  ::setpgid(pid, pid);  // also from the parent, so that no signal can race the child's call
  ::close(log_fd);
  ::close(events[1]);
  ::close(failure[1]);
  int err = 0;
  ssize_t n;
  do {
    n = ::read(failure[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  ::close(failure[0]);
  if (n == sizeof err) {  // exec never happened
    ::close(events[0]);
    int status;
    ::waitpid(pid, &status, 0);
    return invalid_argument("cannot start " + spec.argv[0] + ": " + std::strerror(err));
  }
  w->pid_ = pid;
  w->reader_ = std::thread([fd = events[0], on_event = std::move(on_event)] {
    std::string pending;
    char buf[65536];
    bool overlong = false;
    for (;;) {
      const ssize_t got = ::read(fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      pending.append(buf, static_cast<size_t>(got));
      size_t start = 0, nl;
      while ((nl = pending.find('\n', start)) != std::string::npos) {
        // The handler parses what it is given (parse_worker_event); whatever it might still
        // throw stays on this thread's side, which serves no one else.
        if (!overlong && on_event) {
          try {
            on_event(std::string_view(pending).substr(start, nl - start));
          } catch (const std::exception&) {
          }
        }
        overlong = false;
        start = nl + 1;
      }
      pending.erase(0, start);
      if (pending.size() > kMaxEventLine) {  // a line this long is dropped, not buffered
        pending.clear();
        overlong = true;
      }
    }
    ::close(fd);
  });
  return w;
}

WorkerExit WorkerProcess::describe(int status) {
  return describe_exit(WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                       WIFSIGNALED(status) ? WTERMSIG(status) : 0, cancelling_, escalated_, log_);
}

std::optional<WorkerExit> WorkerProcess::poll() {
  if (exit_) return exit_;
  int status;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  exit_ = describe(status);
  if (reader_.joinable()) reader_.join();  // the channel is drained before the exit is told
  return exit_;
}

std::optional<WorkerExit> WorkerProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto e = poll()) return e;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void WorkerProcess::request_stop() {
  if (poll() || cancelling_) return;
  cancelling_ = true;
  ::kill(-pid_, SIGTERM);
}

WorkerExit WorkerProcess::cancel(std::chrono::milliseconds grace) {
  if (auto e = poll()) return *e;
  request_stop();
  if (auto e = wait(grace)) return *e;
  escalated_ = true;
  ::kill(-pid_, SIGKILL);
  return *wait(std::chrono::hours(1));
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && !exit_) {
    ::kill(-pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  if (reader_.joinable()) reader_.join();
}

}  // namespace mh::executor
