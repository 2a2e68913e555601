#include "platform/engine/collective.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace mh::engine {
namespace {

class SingleRank final : public Collective {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  void all_reduce_sum(std::span<float>) override {}
  void broadcast(std::span<uint8_t>, int) override {}
};

struct GroupState {
  explicit GroupState(int world) : world(world), sync(world), buffers(static_cast<size_t>(world)) {}
  int world;
  std::barrier<> sync;
  std::vector<std::span<float>> buffers;
  std::vector<uint8_t*> bytes{static_cast<size_t>(world)};
  std::vector<float> result;
};

class ThreadRank final : public Collective {
 public:
  ThreadRank(std::shared_ptr<GroupState> group, int rank) : g_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world() const override { return g_->world; }

  void all_reduce_sum(std::span<float> data) override {
    g_->buffers[static_cast<size_t>(rank_)] = data;
    if (rank_ == 0) g_->result.assign(data.size(), 0.0f);
    g_->sync.arrive_and_wait();
    // Each rank sums one slice of the elements, over the ranks in order.
    const size_t n = data.size(), w = static_cast<size_t>(g_->world);
    const size_t begin = n * static_cast<size_t>(rank_) / w;
    const size_t end = n * (static_cast<size_t>(rank_) + 1) / w;
    for (size_t r = 0; r < w; ++r) {
      const float* src = g_->buffers[r].data();
      for (size_t i = begin; i < end; ++i) g_->result[i] += src[i];
    }
    g_->sync.arrive_and_wait();
    std::memcpy(data.data(), g_->result.data(), n * sizeof(float));
    g_->sync.arrive_and_wait();  // nobody reuses `result` before everyone has read it
  }

  void broadcast(std::span<uint8_t> bytes, int root) override {
    g_->bytes[static_cast<size_t>(rank_)] = bytes.data();
    g_->sync.arrive_and_wait();
    if (rank_ != root)
      std::memcpy(bytes.data(), g_->bytes[static_cast<size_t>(root)], bytes.size());
    g_->sync.arrive_and_wait();
  }

 private:
  std::shared_ptr<GroupState> g_;
  int rank_;
};

// ---- the process group ----------------------------------------------------------------------

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x4d485047;  // "MHPG"
constexpr uint32_t kVersion = 1;
constexpr size_t kMaxToken = 256;

std::string errno_text() { return std::strerror(errno); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

// Blocking I/O with a deadline on a non-blocking socket.
Status send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t sent = ::send(fd, p, n, MSG_NOSIGNAL);
    if (sent > 0) {
      p += sent;
      n -= static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return unavailable("send: " + errno_text());
    }
    pollfd pfd{fd, POLLOUT, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) == 0) return unavailable("send timed out");
  }
  return {};
}

Status recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got > 0) {
      p += got;
      n -= static_cast<size_t>(got);
      continue;
    }
    if (got == 0) return unavailable("the connection was closed");
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return unavailable("recv: " + errno_text());
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) == 0) return unavailable("receive timed out");
  }
  return {};
}

void set_socket_options(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

Result<sockaddr_storage> resolve(const std::string& host, uint16_t port, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return invalid_argument("rendezvous host '" + host + "': " + ::gai_strerror(rc));
  }
  sockaddr_storage out{};
  std::memcpy(&out, found->ai_addr, found->ai_addrlen);
  *len = found->ai_addrlen;
  ::freeaddrinfo(found);
  return out;
}

Result<Fd> listen_on(const sockaddr_storage& addr, socklen_t len, int backlog) {
  Fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return internal_error("socket: " + errno_text());
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    return unavailable("cannot listen for the other ranks: bind: " + errno_text());
  }
  if (::listen(fd.get(), backlog) != 0) return unavailable("listen: " + errno_text());
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return fd;
}

// Connects, retrying while the other side is not listening yet.
Result<Fd> connect_to(const sockaddr_storage& addr, socklen_t len, Clock::time_point deadline,
                      const std::string& what) {
  for (;;) {
    Fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return internal_error("socket: " + errno_text());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
      set_socket_options(fd.get());
      return fd;
    }
    if (errno != ECONNREFUSED && errno != ETIMEDOUT && errno != EHOSTUNREACH &&
        errno != ENETUNREACH && errno != EAGAIN) {
      return unavailable("cannot reach " + what + ": " + errno_text());
    }
    if (Clock::now() >= deadline) return unavailable(what + " did not answer in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<Fd> accept_one(int listener, Clock::time_point deadline) {
  for (;;) {
    Fd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (fd) {
      set_socket_options(fd.get());
      return fd;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
      return unavailable("accept: " + errno_text());
    }
    pollfd pfd{listener, POLLIN, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) == 0) {
      return unavailable("the other ranks did not all join in time");
    }
  }
}

// A connection has this long to greet: one that stays silent (or trickles) is dropped rather
// than holding up the ranks behind it.
Clock::time_point hello_deadline(Clock::time_point group_deadline) {
  return std::min(group_deadline, Clock::now() + std::chrono::seconds(5));
}

// The greeting every connection opens with: magic, version, world, rank, a listening port
// (rank 0's table of addresses needs it), and the job's token.
struct Hello {
  uint32_t world = 0, rank = 0, port = 0;
  std::string token;
};

Status send_hello(int fd, const Hello& h, Clock::time_point deadline) {
  uint32_t head[6] = {kMagic, kVersion, h.world,
                      h.rank, h.port,   static_cast<uint32_t>(h.token.size())};
  MH_TRY(send_all(fd, head, sizeof head, deadline));
  return send_all(fd, h.token.data(), h.token.size(), deadline);
}

// A greeting that is not ours, or has the wrong token, is refused (the stranger is dropped).
Result<Hello> recv_hello(int fd, const std::string& token, Clock::time_point deadline) {
  uint32_t head[6];
  MH_TRY(recv_all(fd, head, sizeof head, deadline));
  if (head[0] != kMagic || head[1] != kVersion || head[5] > kMaxToken) {
    return permission_denied("a connection that is not a Macrohard rank");
  }
  Hello h{head[2], head[3], head[4], std::string(head[5], '\0')};
  MH_TRY(recv_all(fd, h.token.data(), h.token.size(), deadline));
  // Compared in constant time: the token is the job's only secret.
  unsigned diff = h.token.size() != token.size() ? 1u : 0u;
  for (size_t i = 0; i < std::min(h.token.size(), token.size()); ++i) {
    diff |= static_cast<unsigned>(h.token[i] ^ token[i]);
  }
  if (diff != 0) return permission_denied("a connection with the wrong job token");
  return h;
}

// What one collective call sends to and receives from one peer: a header (the call's number
// and size, so ranks that disagree fail loudly) and a payload.
struct Exchange {
  int fd = -1;
  int peer = 0;
  uint64_t out_head[2] = {0, 0}, in_head[2] = {0, 0};
  const char* out = nullptr;
  size_t out_len = 0;
  char* in = nullptr;
  size_t in_len = 0;
  size_t sent = 0, received = 0;  // bytes of header + payload so far
  bool sending = false, receiving = false;
};

class ProcessRank final : public Collective {
 public:
  ProcessRank(int rank, int world, std::vector<Fd> peers, std::chrono::milliseconds idle)
      : rank_(rank), world_(world), peers_(std::move(peers)), idle_(idle) {}
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void all_reduce_sum(std::span<float> data) override {
    const size_t n = data.size(), w = static_cast<size_t>(world_);
    auto slice = [&](size_t r) { return std::pair{n * r / w, n * (r + 1) / w}; };
    const auto [mine_begin, mine_end] = slice(static_cast<size_t>(rank_));
    const size_t mine = mine_end - mine_begin;
    // Reduce-scatter: rank r receives everyone's slice r and sums it in rank order.
    scratch_.resize(mine * w);
    std::vector<Exchange> ex;
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      const auto [b, e] = slice(static_cast<size_t>(p));
      Exchange x;
      x.peer = p;
      x.out = reinterpret_cast<const char*>(data.data() + b);
      x.out_len = (e - b) * sizeof(float);
      x.in = reinterpret_cast<char*>(scratch_.data() + mine * static_cast<size_t>(p));
      x.in_len = mine * sizeof(float);
      x.sending = x.receiving = true;
      ex.push_back(x);
    }
    run(ex);
    std::copy_n(data.data() + mine_begin, mine,
                scratch_.data() + mine * static_cast<size_t>(rank_));
    for (size_t i = 0; i < mine; ++i) {
      float acc = 0.0f;
      for (size_t r = 0; r < w; ++r) acc += scratch_[mine * r + i];
      data[mine_begin + i] = acc;
    }
    // All-gather: every rank's summed slice to everyone.
    ex.clear();
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      const auto [b, e] = slice(static_cast<size_t>(p));
      Exchange x;
      x.peer = p;
      x.out = reinterpret_cast<const char*>(data.data() + mine_begin);
      x.out_len = mine * sizeof(float);
      x.in = reinterpret_cast<char*>(data.data() + b);
      x.in_len = (e - b) * sizeof(float);
      x.sending = x.receiving = true;
      ex.push_back(x);
    }
    run(ex);
  }

  void broadcast(std::span<uint8_t> bytes, int root) override {
    std::vector<Exchange> ex;
    for (int p = 0; p < world_; ++p) {
      if (p == rank_ || (rank_ != root && p != root)) continue;
      Exchange x;
      x.peer = p;
      if (rank_ == root) {
        x.out = reinterpret_cast<const char*>(bytes.data());
        x.out_len = bytes.size();
        x.sending = true;
      } else {
        x.in = reinterpret_cast<char*>(bytes.data());
        x.in_len = bytes.size();
        x.receiving = true;
      }
      ex.push_back(x);
    }
    run(ex);
  }

 private:
  // Moves every exchange's bytes at once (so no pair of ranks waits on each other's sends),
  // then checks that the peers were at the same call with the same sizes.
  void run(std::vector<Exchange>& ex) {
    if (!broken_.empty()) throw CollectiveError(broken_);
    try {
      move_bytes(ex);
    } catch (const CollectiveError& e) {
      // The group is unusable after a failure: the peers are told at once (they see their
      // connection close) rather than waiting out their idle timeout.
      broken_ = e.what();
      for (auto& p : peers_) {
        if (p) ::shutdown(p.get(), SHUT_RDWR);
      }
      throw;
    }
  }

  void move_bytes(std::vector<Exchange>& ex) {
    ++calls_;
    constexpr size_t kHead = sizeof(uint64_t) * 2;
    for (auto& x : ex) {
      x.fd = peers_[static_cast<size_t>(x.peer)].get();
      x.out_head[0] = calls_;
      x.out_head[1] = x.out_len;
    }
    std::vector<pollfd> fds;
    std::vector<Exchange*> who;
    for (;;) {
      fds.clear();
      who.clear();
      for (auto& x : ex) {
        short events = 0;
        if (x.sending && x.sent < kHead + x.out_len) events |= POLLOUT;
        if (x.receiving && x.received < kHead + x.in_len) events |= POLLIN;
        if (events != 0) {
          fds.push_back({x.fd, events, 0});
          who.push_back(&x);
        }
      }
      if (fds.empty()) break;
      const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(idle_.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) {
        throw CollectiveError("rank " + std::to_string(rank_) + ": no progress with rank " +
                              std::to_string(who.front()->peer) + " for " +
                              std::to_string(idle_.count() / 1000) + " s");
      }
      for (size_t i = 0; i < fds.size(); ++i) {
        Exchange& x = *who[i];
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) receive(x, kHead);
        if (fds[i].revents & POLLOUT) send(x, kHead);
      }
    }
  }

  void check_header(const Exchange& x) const {
    if (x.in_head[0] != calls_ || x.in_head[1] != x.in_len) {
      throw CollectiveError("rank " + std::to_string(rank_) + ": ranks disagree: rank " +
                            std::to_string(x.peer) + " is at collective call " +
                            std::to_string(x.in_head[0]) + " with " + std::to_string(x.in_head[1]) +
                            " bytes, this rank at call " + std::to_string(calls_) + " with " +
                            std::to_string(x.in_len));
    }
  }

  void send(Exchange& x, size_t head) {
    while (x.sent < head + x.out_len) {
      const char* p;
      size_t left;
      if (x.sent < head) {
        p = reinterpret_cast<const char*>(x.out_head) + x.sent;
        left = head - x.sent;
      } else {
        p = x.out + (x.sent - head);
        left = x.out_len - (x.sent - head);
      }
      const ssize_t n = ::send(x.fd, p, left, MSG_NOSIGNAL);
      if (n > 0) {
        x.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      lost(x.peer, errno_text());
    }
  }

  void receive(Exchange& x, size_t head) {
    if (!x.receiving) {
      // Only sending to this peer: a hang-up shows as a failed send; other data is a protocol
      // error (the peer is at another call).
      char probe;
      const ssize_t n = ::recv(x.fd, &probe, 1, MSG_PEEK);
      if (n == 0) lost(x.peer, "the connection was closed");
      return;
    }
    while (x.received < head + x.in_len) {
      char* p;
      size_t left;
      if (x.received < head) {
        p = reinterpret_cast<char*>(x.in_head) + x.received;
        left = head - x.received;
      } else {
        p = x.in + (x.received - head);
        left = x.in_len - (x.received - head);
      }
      const ssize_t n = ::recv(x.fd, p, left, 0);
      if (n > 0) {
        x.received += static_cast<size_t>(n);
        // A header from another call, or of another size, fails before its payload lands.
        if (x.received == head) check_header(x);
        continue;
      }
      if (n == 0) lost(x.peer, "the connection was closed");
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      lost(x.peer, errno_text());
    }
  }

  [[noreturn]] void lost(int peer, const std::string& why) {
    throw CollectiveError("rank " + std::to_string(rank_) + " lost rank " + std::to_string(peer) +
                          " (" + why + "); it has probably failed: see its log");
  }

  int rank_, world_;
  std::vector<Fd> peers_;  // by rank; this rank's own slot is empty
  std::chrono::milliseconds idle_;
  std::vector<float> scratch_;
  uint64_t calls_ = 0;
  std::string broken_;  // why the group failed; every later call fails with it
};

std::string address_text(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  } else {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

void set_port(sockaddr_storage& a, uint16_t port) {
  if (a.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in&>(a).sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6&>(a).sin6_port = htons(port);
  }
}

uint16_t port_of(const sockaddr_storage& a) {
  return ntohs(a.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(a).sin_port
                                      : reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
}

Result<int> env_int(const char* name, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return invalid_argument(std::string(name) + " is not set");
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    return invalid_argument(std::string(name) + "=" + v + " is not an integer in [" +
                            std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(x);
}

// Rank 0: accepts every other rank, then sends each the table of everyone's addresses.
Result<std::vector<Fd>> gather_ranks(const ProcessGroupOptions& o, Clock::time_point deadline) {
  Fd listener(o.listener_fd);
  if (!listener) {
    socklen_t len = 0;
    MH_ASSIGN_OR_RETURN(sockaddr_storage addr, resolve(o.host, o.port, &len));
    MH_ASSIGN_OR_RETURN(listener, listen_on(addr, len, o.world * 2));
  }
  std::vector<Fd> peers(static_cast<size_t>(o.world));
  std::vector<std::pair<std::string, uint32_t>> table(static_cast<size_t>(o.world));
  for (int joined = 1; joined < o.world;) {
    MH_ASSIGN_OR_RETURN(Fd fd, accept_one(listener.get(), deadline));
    auto hello = recv_hello(fd.get(), o.token, hello_deadline(deadline));
    if (!hello.ok()) continue;  // a stranger: dropped, and we go on waiting
    if (hello->world != static_cast<uint32_t>(o.world) || hello->rank == 0 ||
        hello->rank >= static_cast<uint32_t>(o.world) || peers[hello->rank]) {
      return failed_precondition("rank " + std::to_string(hello->rank) + " of " +
                                 std::to_string(hello->world) + " joined a group of " +
                                 std::to_string(o.world) + " that does not expect it");
    }
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    ::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &plen);
    table[hello->rank] = {address_text(peer), hello->port};
    peers[hello->rank] = std::move(fd);
    ++joined;
  }
  std::string text;
  for (int r = 1; r < o.world; ++r) {
    text += table[static_cast<size_t>(r)].first + " " +
            std::to_string(table[static_cast<size_t>(r)].second) + "\n";
  }
  const auto size = static_cast<uint32_t>(text.size());
  for (int r = 1; r < o.world; ++r) {
    const int fd = peers[static_cast<size_t>(r)].get();
    MH_TRY(send_all(fd, &size, sizeof size, deadline));
    MH_TRY(send_all(fd, text.data(), text.size(), deadline));
  }
  return peers;
}

// Rank r > 0: joins rank 0, learns the table, connects to ranks 1 .. r-1 and accepts r+1 ...
Result<std::vector<Fd>> join_ranks(const ProcessGroupOptions& o, Clock::time_point deadline) {
  socklen_t len = 0;
  MH_ASSIGN_OR_RETURN(sockaddr_storage root, resolve(o.host, o.port, &len));
  std::vector<Fd> peers(static_cast<size_t>(o.world));
  MH_ASSIGN_OR_RETURN(peers[0], connect_to(root, len, deadline,
                                           "rank 0 at " + o.host + ":" + std::to_string(o.port)));
  // Listen on the interface that reaches rank 0, on any port; the table tells the others.
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  ::getsockname(peers[0].get(), reinterpret_cast<sockaddr*>(&local), &llen);
  set_port(local, 0);
  MH_ASSIGN_OR_RETURN(Fd listener, listen_on(local, llen, o.world * 2));
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &blen);
  Hello me{static_cast<uint32_t>(o.world), static_cast<uint32_t>(o.rank), port_of(bound), o.token};
  MH_TRY(send_hello(peers[0].get(), me, deadline));
  uint32_t size = 0;
  if (Status s = recv_all(peers[0].get(), &size, sizeof size, deadline); !s.ok()) {
    return unavailable(
        "rank 0 turned this rank away (a wrong token, or a group that does not "
        "expect rank " +
        std::to_string(o.rank) + "): " + s.message());
  }
  if (size > 1 << 20) return failed_precondition("rank 0 sent an oversized table");
  std::string text(size, '\0');
  MH_TRY(recv_all(peers[0].get(), text.data(), size, deadline));
  std::vector<std::pair<std::string, uint16_t>> table(1);
  size_t at = 0;
  while (at < text.size()) {
    const size_t nl = text.find('\n', at), sp = text.find(' ', at);
    if (nl == std::string::npos || sp == std::string::npos || sp > nl) break;
    table.emplace_back(text.substr(at, sp - at),
                       static_cast<uint16_t>(std::atoi(text.c_str() + sp + 1)));
    at = nl + 1;
  }
  if (table.size() != static_cast<size_t>(o.world)) {
    return failed_precondition("rank 0 sent a table of " + std::to_string(table.size()) +
                               " ranks for a group of " + std::to_string(o.world));
  }
  for (int p = 1; p < o.rank; ++p) {
    socklen_t plen = 0;
    MH_ASSIGN_OR_RETURN(sockaddr_storage a, resolve(table[static_cast<size_t>(p)].first,
                                                    table[static_cast<size_t>(p)].second, &plen));
    MH_ASSIGN_OR_RETURN(peers[static_cast<size_t>(p)],
                        connect_to(a, plen, deadline, "rank " + std::to_string(p)));
    MH_TRY(send_hello(peers[static_cast<size_t>(p)].get(), me, deadline));
  }
  for (int waiting = o.world - 1 - o.rank; waiting > 0;) {
    MH_ASSIGN_OR_RETURN(Fd fd, accept_one(listener.get(), deadline));
    auto hello = recv_hello(fd.get(), o.token, hello_deadline(deadline));
    if (!hello.ok()) continue;
    if (hello->rank <= static_cast<uint32_t>(o.rank) ||
        hello->rank >= static_cast<uint32_t>(o.world) || peers[hello->rank]) {
      return failed_precondition("rank " + std::to_string(hello->rank) + " connected to rank " +
                                 std::to_string(o.rank) + " unexpectedly");
    }
    peers[hello->rank] = std::move(fd);
    --waiting;
  }
  return peers;
}

}  // namespace

std::unique_ptr<Collective> make_single_rank() { return std::make_unique<SingleRank>(); }

std::vector<std::unique_ptr<Collective>> make_thread_group(int world) {
  auto group = std::make_shared<GroupState>(world);
  std::vector<std::unique_ptr<Collective>> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(std::make_unique<ThreadRank>(group, r));
  return ranks;
}

Result<std::optional<ProcessGroupOptions>> process_group_from_env() {
  if (std::getenv("MH_WORLD_SIZE") == nullptr) return std::optional<ProcessGroupOptions>();
  ProcessGroupOptions o;
  MH_ASSIGN_OR_RETURN(o.world, env_int("MH_WORLD_SIZE", 1, 65536));
  MH_ASSIGN_OR_RETURN(o.rank, env_int("MH_RANK", 0, o.world - 1));
  const char* at = std::getenv("MH_RENDEZVOUS");
  const std::string where = at ? at : "";
  const size_t colon = where.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalid_argument("MH_RENDEZVOUS must be host:port, not '" + where + "'");
  }
  o.host = where.substr(0, colon);
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') {
    o.host = o.host.substr(1, o.host.size() - 2);  // [::1]:port
  }
  char* end = nullptr;
  const long port = std::strtol(where.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) {
    return invalid_argument("MH_RENDEZVOUS's port in '" + where + "' is not in [1, 65535]");
  }
  o.port = static_cast<uint16_t>(port);
  if (const char* token = std::getenv("MH_RENDEZVOUS_TOKEN")) o.token = token;
  if (o.token.size() > kMaxToken) {
    return invalid_argument("MH_RENDEZVOUS_TOKEN is longer than " + std::to_string(kMaxToken));
  }
  if (o.rank == 0 && std::getenv("MH_RENDEZVOUS_FD") != nullptr) {
    MH_ASSIGN_OR_RETURN(const int fd, env_int("MH_RENDEZVOUS_FD", 0, 65535));
    int listening = 0;
    socklen_t size = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || listening != 1) {
      return invalid_argument("MH_RENDEZVOUS_FD=" + std::to_string(fd) +
                              " is not a listening socket");
    }
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // nothing the rank starts inherits it
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    o.listener_fd = fd;
  }
  return std::optional<ProcessGroupOptions>(o);
}

Result<std::unique_ptr<Collective>> connect_process_group(const ProcessGroupOptions& o) {
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
    return invalid_argument("rank " + std::to_string(o.rank) + " is not in a group of " +
                            std::to_string(o.world));
  }
  if (o.world == 1) {
    Fd unused(o.listener_fd);
    return make_single_rank();
  }
  const auto deadline = Clock::now() + o.connect_timeout;
  auto peers = o.rank == 0 ? gather_ranks(o, deadline) : join_ranks(o, deadline);
  if (!peers.ok()) {
    return Status(peers.status().code(), "rank " + std::to_string(o.rank) + " of " +
                                             std::to_string(o.world) + ": " +
                                             peers.status().message());
  }
  auto rank =
      std::make_unique<ProcessRank>(o.rank, o.world, std::move(peers).value(), o.idle_timeout);
  // Nobody returns before the whole mesh is up.
  float ready[1] = {1.0f};
  try {
    rank->all_reduce_sum(ready);
  } catch (const CollectiveError& e) {
    return unavailable(e.what());
  }
  if (ready[0] != static_cast<float>(o.world))
    return internal_error("the group's first sum is off");
  return std::unique_ptr<Collective>(std::move(rank));
}

}  // namespace mh::engine
