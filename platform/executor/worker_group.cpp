#include "platform/executor/worker_group.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "platform/base/crypto.h"

namespace mh::executor {
namespace {

// A socket listening on a loopback port the kernel picks, for rank 0 to inherit: the port is
// held from the moment it is chosen, so no other program can take it before rank 0 starts.
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() = default;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
};

Status listen_on_loopback(int backlog, Listener* out) {
  out->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (out->fd < 0) return internal_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(out->fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(out->fd, backlog) != 0 ||
      ::getsockname(out->fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return unavailable(std::string("cannot listen on a loopback port: ") + std::strerror(errno));
  }
  out->port = ntohs(addr.sin_port);
  return {};
}

// A rank whose log says it only lost a peer failed because of another rank.
bool lost_a_peer(const WorkerExit& e) { return e.reason.find(" lost rank ") != std::string::npos; }

}  // namespace

Result<std::unique_ptr<WorkerGroup>> WorkerGroup::start(
    const WorkerSpec& spec, int world, std::function<void(std::string_view)> on_event) {
  if (world < 1) return invalid_argument("a group needs at least one rank");
  if (!spec.gpus.empty() && spec.gpus.size() != static_cast<size_t>(world)) {
    return invalid_argument(std::to_string(spec.gpus.size()) + " devices for " +
                            std::to_string(world) + " ranks");
  }
  Listener listener;  // rank 0 has its own copy once started; this one closes on return
  MH_TRY(listen_on_loopback(world * 2, &listener));
  const std::string token = secure_random_base64url(24);
  std::unique_ptr<WorkerGroup> group(new WorkerGroup());
  for (int r = 0; r < world; ++r) {
    WorkerSpec rank = spec;
    if (r > 0) {
      rank.work_dir = spec.work_dir / ("rank-" + std::to_string(r));
      // It resumes from rank 0's checkpoints, which it reads and does not write.
      rank.sandbox.read.push_back(spec.work_dir);
    }
    if (!spec.gpus.empty()) rank.gpus = {spec.gpus[static_cast<size_t>(r)]};
    rank.env["MH_RANK"] = std::to_string(r);
    rank.env["MH_WORLD_SIZE"] = std::to_string(world);
    rank.env["MH_RENDEZVOUS"] = "127.0.0.1:" + std::to_string(listener.port);
    rank.env["MH_RENDEZVOUS_TOKEN"] = token;
    if (r == 0) rank.rendezvous_fd = listener.fd;
    auto w =
        WorkerProcess::start(rank, r == 0 ? on_event : std::function<void(std::string_view)>{});
    if (!w.ok()) {
      return Status(w.status().code(), "rank " + std::to_string(r) + ": " + w.status().message());
    }
    group->ranks_.push_back(std::move(w).value());  // those started are killed if a later fails
  }
  return group;
}

std::optional<WorkerExit> WorkerGroup::settle() {
  if (exit_) return exit_;
  bool all_done = true, failed = false;
  for (auto& r : ranks_) {
    auto e = r->poll();
    all_done = all_done && e.has_value();
    failed = failed || (e && !e->ok());
  }
  if (!all_done && !failed) return std::nullopt;
  if (failed) {
    // The others follow within moments (they lose the failed rank); give them that long, then
    // stop whoever is left, so that every rank's exit is known before the group's is told.
    for (auto& r : ranks_) r->wait(std::chrono::seconds(2));
    for (auto& r : ranks_) r->cancel(std::chrono::seconds(5));
  }
  // The group's exit: rank 0's when all went well; else the failure that is a cause, not an
  // echo of another rank's.
  std::vector<WorkerExit> exits;
  for (auto& r : ranks_) exits.push_back(*r->poll());
  const WorkerExit* chosen = nullptr;
  int chosen_rank = 0;
  for (size_t i = 0; i < exits.size(); ++i) {
    const WorkerExit& e = exits[i];
    if (e.ok() || e.cancelled) continue;
    if (chosen == nullptr || (lost_a_peer(*chosen) && !lost_a_peer(e))) {
      chosen = &e;
      chosen_rank = static_cast<int>(i);
    }
  }
  if (chosen == nullptr) {
    exit_ = exits[0];
  } else {
    exit_ = *chosen;
    if (ranks_.size() > 1)
      exit_->reason = "rank " + std::to_string(chosen_rank) + ": " + exit_->reason;
  }
  return exit_;
}

std::optional<WorkerExit> WorkerGroup::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto e = settle()) return e;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

WorkerExit WorkerGroup::cancel(std::chrono::milliseconds grace) {
  if (exit_) return *exit_;
  // Every rank is asked at once (they agree on a step to stop after, and rank 0 checkpoints
  // it), then each gets what is left of the grace period.
  for (auto& r : ranks_) r->request_stop();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  std::vector<WorkerExit> exits;
  for (auto& r : ranks_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    exits.push_back(r->cancel(std::max(left, std::chrono::milliseconds(0))));
  }
  exit_ = exits[0];
  for (const auto& e : exits) {
    exit_->killed_after_grace = exit_->killed_after_grace || e.killed_after_grace;
  }
  if (exit_->killed_after_grace) exit_->reason = "cancelled; killed after the grace period";
  return *exit_;
}

std::string WorkerGroup::handle() const {
  std::string h = "pid:";
  for (size_t i = 0; i < ranks_.size(); ++i) {
    h += (i ? "," : "") + std::to_string(ranks_[i]->pid());
  }
  return h;
}

}  // namespace mh::executor
