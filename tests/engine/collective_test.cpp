#include "platform/engine/collective.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>

#include "platform/engine/random.h"

using namespace mh;
using namespace mh::engine;

namespace {

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A socket listening on a loopback port the kernel picks, as the executor hands rank 0 one.
int loopback_listener(sockaddr_in* where) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  *where = {};
  where->sin_family = AF_INET;
  where->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof *where;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(where), sizeof *where) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(where), &len) == 0);
  return fd;
}

ProcessGroupOptions options(int rank, int world, uint16_t port, std::string token = "secret") {
  ProcessGroupOptions o;
  o.rank = rank;
  o.world = world;
  o.port = port;
  o.token = std::move(token);
  o.connect_timeout = std::chrono::seconds(20);
  o.idle_timeout = std::chrono::seconds(20);
  return o;
}

// Joins `world` ranks of a process group, each from its own thread (real sockets on loopback).
std::vector<std::unique_ptr<Collective>> join_all(int world) {
  const uint16_t port = free_port();
  std::vector<std::future<Result<std::unique_ptr<Collective>>>> joining;
  for (int r = 0; r < world; ++r) {
    joining.push_back(std::async(std::launch::async,
                                 [=] { return connect_process_group(options(r, world, port)); }));
  }
  std::vector<std::unique_ptr<Collective>> ranks;
  for (auto& j : joining) {
    auto c = j.get();
    REQUIRE_MESSAGE(c.ok(), c.status().message());
    ranks.push_back(std::move(c).value());
  }
  return ranks;
}

std::vector<std::vector<float>> random_buffers(int world, size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<float>> bufs(static_cast<size_t>(world), std::vector<float>(n));
  for (auto& b : bufs) {
    for (float& x : b) x = static_cast<float>(rng.normal() * 1000.0);
  }
  return bufs;
}

// Runs one all_reduce_sum on every rank at once.
void reduce_all(std::vector<std::unique_ptr<Collective>>& ranks,
                std::vector<std::vector<float>>& bufs) {
  std::vector<std::thread> threads;
  for (size_t r = 0; r < ranks.size(); ++r) {
    threads.emplace_back([&, r] { ranks[r]->all_reduce_sum(bufs[r]); });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

TEST_CASE("a process group's all-reduce sums in rank order: bit-identical to the thread group") {
  for (int world : {2, 3, 5}) {
    for (size_t n : {size_t{1}, size_t{4}, size_t{1000}, size_t{300'001}}) {
      CAPTURE(world);
      CAPTURE(n);
      auto procs = join_all(world);
      auto threads = make_thread_group(world);
      auto a = random_buffers(world, n, 7 + n);
      auto b = a;
      // Sums of values far apart in magnitude: any other order of addition rounds differently.
      std::vector<float> expected(n, 0.0f);
      for (size_t i = 0; i < n; ++i) {
        for (int r = 0; r < world; ++r) expected[i] += a[static_cast<size_t>(r)][i];
      }
      reduce_all(procs, a);
      reduce_all(threads, b);
      for (int r = 0; r < world; ++r) {
        CHECK(std::memcmp(a[static_cast<size_t>(r)].data(), expected.data(), n * 4) == 0);
        CHECK(std::memcmp(b[static_cast<size_t>(r)].data(), expected.data(), n * 4) == 0);
      }
    }
  }
}

TEST_CASE("a process group keeps working over many calls and broadcasts bytes") {
  auto ranks = join_all(3);
  for (int call = 0; call < 50; ++call) {
    auto bufs = random_buffers(3, 17 + static_cast<size_t>(call), static_cast<uint64_t>(call));
    std::vector<float> expected(bufs[0].size(), 0.0f);
    for (size_t i = 0; i < expected.size(); ++i) {
      for (auto& b : bufs) expected[i] += b[i];
    }
    reduce_all(ranks, bufs);
    for (auto& b : bufs) REQUIRE(b == expected);
  }
  std::vector<std::vector<uint8_t>> bytes(3, std::vector<uint8_t>(128));
  for (size_t i = 0; i < 128; ++i) bytes[1][i] = static_cast<uint8_t>(i * 7);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back(
        [&, r] { ranks[static_cast<size_t>(r)]->broadcast(bytes[static_cast<size_t>(r)], 1); });
  }
  for (auto& t : threads) t.join();
  CHECK(bytes[0] == bytes[1]);
  CHECK(bytes[2] == bytes[1]);
}

TEST_CASE("a connection without the job's token cannot join, and the group still forms") {
  const uint16_t port = free_port();
  auto root =
      std::async(std::launch::async, [=] { return connect_process_group(options(0, 2, port)); });
  // An intruder with the wrong token is turned away...
  auto intruder = connect_process_group(options(1, 2, port, "guess"));
  CHECK_FALSE(intruder.ok());
  CHECK(intruder.status().message().find("turned this rank away") != std::string::npos);
  // ...and the rank with the right one still joins.
  auto member = connect_process_group(options(1, 2, port));
  REQUIRE_MESSAGE(member.ok(), member.status().message());
  auto r0 = root.get();
  REQUIRE(r0.ok());
}

TEST_CASE("a connection that never greets does not hold up the group") {
  const uint16_t port = free_port();
  auto root =
      std::async(std::launch::async, [=] { return connect_process_group(options(0, 2, port)); });
  // A silent client connects first and says nothing.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  for (int i = 0; i < 200 && ::connect(silent, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto started = std::chrono::steady_clock::now();
  auto member = connect_process_group(options(1, 2, port));
  REQUIRE_MESSAGE(member.ok(), member.status().message());
  REQUIRE(root.get().ok());
  // Within the greeting's few seconds, not the group's two minutes.
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(15));
  ::close(silent);
}

TEST_CASE("a rank that goes away makes the others' calls fail, naming it") {
  auto ranks = join_all(3);
  ranks[2].reset();  // its sockets close, as when its process dies
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> data(100, 1.0f);
      try {
        ranks[static_cast<size_t>(r)]->all_reduce_sum(data);
      } catch (const CollectiveError& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  // Both fail; the first to notice names rank 2 and hangs up, so the other may only see that.
  for (const auto& e : errors) CHECK(e.find(" lost rank ") != std::string::npos);
  CHECK((errors[0] + errors[1]).find("lost rank 2") != std::string::npos);
}

TEST_CASE("ranks that call with different sizes fail loudly instead of mixing data") {
  auto ranks = join_all(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> data(r == 0 ? 100 : 120, 1.0f);
      try {
        ranks[static_cast<size_t>(r)]->all_reduce_sum(data);
      } catch (const CollectiveError& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  // Both fail at once; at least one says why (the other may only see its peer hang up).
  CHECK_FALSE(errors[0].empty());
  CHECK_FALSE(errors[1].empty());
  CHECK((errors[0] + errors[1]).find("ranks disagree") != std::string::npos);
  std::vector<float> again(10, 1.0f);
  CHECK_THROWS_AS(ranks[0]->all_reduce_sum(again), CollectiveError);
}

TEST_CASE("a rank no one joins gives up after its connect timeout with a clear error") {
  auto o = options(1, 2, free_port());
  o.connect_timeout = std::chrono::milliseconds(300);
  auto r = connect_process_group(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("rank 0 at 127.0.0.1") != std::string::npos);
}

TEST_CASE("rank 0 accepts the group on a socket it inherited, which is closed once formed") {
  sockaddr_in a{};
  const int listener = loopback_listener(&a);
  const uint16_t port = ntohs(a.sin_port);
  auto o0 = options(0, 2, port);
  o0.port = 1;  // rank 0 never binds: the socket it was handed is what counts
  o0.listener_fd = listener;
  auto joined0 = std::async(std::launch::async, [&] { return connect_process_group(o0); });
  auto one = connect_process_group(options(1, 2, port));
  auto zero = joined0.get();
  REQUIRE_MESSAGE(zero.ok(), zero.status().message());
  REQUIRE_MESSAGE(one.ok(), one.status().message());
  std::vector<std::unique_ptr<Collective>> ranks;
  ranks.push_back(std::move(zero).value());
  ranks.push_back(std::move(one).value());
  std::vector<std::vector<float>> bufs = {{1, 2}, {10, 20}};
  reduce_all(ranks, bufs);
  CHECK(bufs[0] == std::vector<float>{11, 22});
  // The port is given up once the group has formed: no one can queue on it any more.
  const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  CHECK(::connect(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0);
  ::close(probe);
}

TEST_CASE("the executor's bootstrap variables are read and checked") {
  ::unsetenv("MH_WORLD_SIZE");
  CHECK_FALSE(process_group_from_env().value().has_value());
  ::setenv("MH_WORLD_SIZE", "4", 1);
  ::setenv("MH_RANK", "3", 1);
  ::setenv("MH_RENDEZVOUS", "127.0.0.1:29500", 1);
  ::setenv("MH_RENDEZVOUS_TOKEN", "abc", 1);
  auto o = process_group_from_env();
  REQUIRE(o.ok());
  REQUIRE(o->has_value());
  CHECK((*o)->rank == 3);
  CHECK((*o)->world == 4);
  CHECK((*o)->host == "127.0.0.1");
  CHECK((*o)->port == 29500);
  CHECK((*o)->token == "abc");
  ::setenv("MH_RENDEZVOUS", "[::1]:7000", 1);
  CHECK(process_group_from_env().value()->host == "::1");
  ::setenv("MH_RANK", "4", 1);
  CHECK(process_group_from_env().status().message().find("MH_RANK=4") != std::string::npos);
  ::setenv("MH_RANK", "0", 1);
  ::setenv("MH_RENDEZVOUS", "nowhere", 1);
  CHECK(process_group_from_env().status().message().find("host:port") != std::string::npos);
  ::setenv("MH_RENDEZVOUS", "h:99999", 1);
  CHECK_FALSE(process_group_from_env().ok());
  ::setenv("MH_RENDEZVOUS", "127.0.0.1:29500", 1);
  CHECK(process_group_from_env().value()->listener_fd == -1);
  // Rank 0's inherited listening socket: taken when it listens, refused when it does not.
  sockaddr_in a{};
  const int listening = loopback_listener(&a);
  ::setenv("MH_RENDEZVOUS_FD", std::to_string(listening).c_str(), 1);
  CHECK(process_group_from_env().value()->listener_fd == listening);
  const int idle = ::socket(AF_INET, SOCK_STREAM, 0);
  ::setenv("MH_RENDEZVOUS_FD", std::to_string(idle).c_str(), 1);
  CHECK(process_group_from_env().status().message() ==
        "MH_RENDEZVOUS_FD=" + std::to_string(idle) + " is not a listening socket");
  ::setenv("MH_RENDEZVOUS_FD", "four", 1);
  CHECK(process_group_from_env().status().message().find("MH_RENDEZVOUS_FD=four") !=
        std::string::npos);
  ::setenv("MH_RANK", "1", 1);  // only rank 0 listens
  CHECK(process_group_from_env().value()->listener_fd == -1);
  ::close(listening);
  ::close(idle);
  for (const char* v :
       {"MH_WORLD_SIZE", "MH_RANK", "MH_RENDEZVOUS", "MH_RENDEZVOUS_TOKEN", "MH_RENDEZVOUS_FD"}) {
    ::unsetenv(v);
  }
}
