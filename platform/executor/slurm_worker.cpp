#include "platform/executor/slurm_worker.h"

#include "platform/executor/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace mh::executor {
namespace {

// Single-quoted for sh: 'it'\''s'.
std::string sh_quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// "Key=Value" out of `scontrol show job -o` output.
std::string field(std::string_view text, std::string_view key) {
  const std::string needle = std::string(key) + "=";
  size_t at = 0;
  while ((at = text.find(needle, at)) != std::string_view::npos) {
    if (at == 0 || text[at - 1] == ' ' || text[at - 1] == '\n') {
      const size_t start = at + needle.size();
      const size_t end = text.find_first_of(" \n", start);
      return std::string(text.substr(start, end == std::string_view::npos ? end : end - start));
    }
    at += needle.size();
  }
  return {};
}

}  // namespace

Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  const std::map<std::string, std::string>& env) {
  if (argv.empty()) return invalid_argument("no command to run");
  std::vector<std::string> env_strings;
  if (const char* path = std::getenv("PATH")) env_strings.push_back(std::string("PATH=") + path);
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    return internal_error("pipe: " + std::string(strerror(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return internal_error("pipe: " + std::string(strerror(errno)));
  }
  const pid_t pid = ::fork();
  if (pid < 0) return internal_error("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (r.exit_code == 127) {
    return unavailable("cannot run " + argv[0] + ": not found (is Slurm installed here?)");
  }
  return r;
}

Result<std::unique_ptr<SlurmWorker>> SlurmWorker::start(
    const WorkerSpec& spec, const SlurmOptions& options,
    std::function<void(std::string_view)> on_event) {
  if (spec.argv.empty()) return invalid_argument("a worker needs a program to run");
  std::error_code ec;
  std::filesystem::create_directories(spec.work_dir, ec);
  if (ec) return internal_error("cannot create " + spec.work_dir.string() + ": " + ec.message());
  const auto work = std::filesystem::absolute(spec.work_dir);
  std::unique_ptr<SlurmWorker> w(new SlurmWorker());
  w->options_ = options;
  w->work_ = work;
  w->log_ = work / "worker.log";
  w->events_ = work / "events.jsonl";
  w->on_event_ = std::move(on_event);
  std::filesystem::remove(w->events_, ec);

  // The batch script: the worker's environment, then the worker in the shell's place (so that
  // scancel's SIGTERM reaches it directly).
  std::string script = "#!/bin/sh\n";
  script += "export LANG=C.UTF-8\n";
  script += "export MH_EVENTS_FILE=" + sh_quoted(w->events_.string()) + "\n";
  if (spec.cpu_threads > 0) {
    script += "export MH_THREADS=" + std::to_string(spec.cpu_threads) +
              " OMP_NUM_THREADS=" + std::to_string(spec.cpu_threads) + "\n";
  }
  if (spec.gpus.empty()) script += "export CUDA_VISIBLE_DEVICES=\n";  // no GPU at all
  for (const auto& [k, v] : spec.env) script += "export " + k + "=" + sh_quoted(v) + "\n";
  // A contained worker (its program is mh-worker) enters its sandbox itself, on the node:
  // `mh-worker contain <sandbox> -- mh-worker …`.
  std::vector<std::string> worker = spec.argv;
  if (spec.sandbox.enabled) {
    std::vector<std::string> contained = {spec.argv[0], "contain"};
    for (auto& a : contain_args(spec.sandbox)) contained.push_back(std::move(a));
    contained.emplace_back("--");
    worker.insert(worker.begin(), contained.begin(), contained.end());
  }
  script += "exec";
  for (const auto& a : worker) script += " " + sh_quoted(a);
  script += "\n";
  const auto script_path = work / "job.sh";
  {
    std::ofstream out(script_path, std::ios::trunc);
    out << script;
    if (!out) return internal_error("cannot write " + script_path.string());
  }
  std::filesystem::permissions(script_path, std::filesystem::perms::owner_all, ec);

  std::vector<std::string> argv = {"sbatch",
                                   "--parsable",
                                   "--job-name=mh-" + work.filename().string(),
                                   "--chdir=" + work.string(),
                                   "--output=" + w->log_.string(),
                                   "--open-mode=append",
                                   "--nodes=1"};
  if (!spec.gpus.empty()) argv.push_back("--gres=gpu:" + std::to_string(spec.gpus.size()));
  if (spec.cpu_threads > 0) argv.push_back("--cpus-per-task=" + std::to_string(spec.cpu_threads));
  if (!options.partition.empty()) argv.push_back("--partition=" + options.partition);
  if (!options.nodelist.empty()) argv.push_back("--nodelist=" + options.nodelist);
  argv.push_back(script_path.string());
  MH_ASSIGN_OR_RETURN(CommandResult submitted, run_command(argv, options.env));
  if (submitted.exit_code != 0) {
    return unavailable("sbatch refused the worker: " + submitted.err + submitted.out);
  }
  std::string id = submitted.out.substr(0, submitted.out.find_first_of(";\n"));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    return internal_error("sbatch answered '" + submitted.out + "', not a job id");
  }
  w->job_id_ = std::move(id);
  w->reader_ = std::thread([raw = w.get()] { raw->follow_events(); });
  return w;
}

void SlurmWorker::follow_events() {
  // The file grows as the worker writes; complete lines are passed on. After the job ends the
  // rest of the file is read once more, then the reader stops.
  std::string partial;
  int fd = -1;
  char buf[8192];
  for (;;) {
    const bool ended = ended_.load();
    if (fd < 0) fd = ::open(events_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        partial.append(buf, static_cast<size_t>(n));
        size_t nl;
        while ((nl = partial.find('\n')) != std::string::npos) {
          if (on_event_ && nl > 0) on_event_(std::string_view(partial.data(), nl));
          partial.erase(0, nl + 1);
        }
      }
    }
    if (ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (fd >= 0) ::close(fd);
}

std::optional<WorkerExit> SlurmWorker::poll() {
  if (exit_) return exit_;
  auto shown = run_command({"scontrol", "show", "job", "-o", job_id_}, options_.env);
  if (!shown.ok() || shown->exit_code != 0) return std::nullopt;  // asked again next time
  const std::string state = field(shown->out, "JobState");
  if (state.empty() || state == "PENDING" || state == "RUNNING" || state == "CONFIGURING" ||
      state == "COMPLETING" || state == "SUSPENDED" || state == "REQUEUED" || state == "RESIZING") {
    return std::nullopt;
  }
  // ExitCode=<status>:<signal>
  const std::string code = field(shown->out, "ExitCode");
  const size_t colon = code.find(':');
  const int status = std::atoi(code.substr(0, colon).c_str());
  const int signal = colon == std::string::npos ? 0 : std::atoi(code.c_str() + colon + 1);
  const bool cancelled = cancelling_ || state == "CANCELLED";
  exit_ = describe_exit(state == "COMPLETED" ? 0 : (status == 0 && signal == 0 ? 1 : status),
                        signal, cancelled, escalated_, log_);
  if (!cancelled && !exit_->ok() && state != "FAILED") {
    exit_->reason = "Slurm ended the job: " + state + "; " + exit_->reason;
  }
  ended_ = true;
  if (reader_.joinable()) reader_.join();
  return exit_;
}

std::optional<WorkerExit> SlurmWorker::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto e = poll()) return e;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(options_.poll, timeout));
  }
}

WorkerExit SlurmWorker::cancel(std::chrono::milliseconds grace) {
  if (exit_) return *exit_;
  cancelling_ = true;
  (void)run_command({"scancel", "--signal=TERM", "--full", job_id_}, options_.env);
  if (auto e = wait(grace)) return *e;
  escalated_ = true;
  (void)run_command({"scancel", job_id_}, options_.env);
  for (;;) {
    if (auto e = wait(std::chrono::seconds(5))) return *e;
  }
}

void SlurmWorker::stop_job(const std::string& job_id, const SlurmOptions& options,
                           std::chrono::milliseconds timeout) {
  (void)run_command({"scancel", "--signal=TERM", "--full", job_id}, options.env);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto shown = run_command({"scontrol", "show", "job", "-o", job_id}, options.env);
    if (!shown.ok() || shown->exit_code != 0) return;  // gone from Slurm's memory
    const std::string state = field(shown->out, "JobState");
    if (state != "PENDING" && state != "RUNNING" && state != "CONFIGURING" &&
        state != "COMPLETING") {
      return;
    }
    std::this_thread::sleep_for(options.poll);
  }
  (void)run_command({"scancel", job_id}, options.env);
}

SlurmWorker::~SlurmWorker() {
  if (!exit_ && !job_id_.empty()) {
    (void)run_command({"scancel", job_id_}, options_.env);
  }
  ended_ = true;
  if (reader_.joinable()) reader_.join();
}

}  // namespace mh::executor
