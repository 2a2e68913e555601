// The worker sandbox, tried from inside a real worker: mh-worker sandbox-check, started by the
// executor as jobs' and replicas' workers are, says what it could read, write and reach.
#include "platform/executor/sandbox.h"

#include <doctest/doctest.h>
#include <elf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "platform/executor/worker_process.h"
#include "tests/executor/fixtures.h"

namespace mh::executor {
namespace {

// What sandbox-check printed, from the worker's log.
std::string run_check(const Sandbox& sandbox, const fs::path& work,
                      const std::vector<std::string>& args) {
  WorkerSpec spec;
  spec.argv = {test::mhworker_path().string(), "sandbox-check"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.work_dir = work;
  spec.sandbox = sandbox;
  Events events;
  auto w = WorkerProcess::start(spec, events.sink());
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  const WorkerExit exit = (*w)->wait(std::chrono::seconds(30)).value();
  std::ifstream in(work / "worker.log");
  std::string log((std::istreambuf_iterator<char>(in)), {});
  CHECK_MESSAGE(exit.ok(), log);
  return log;
}

struct Listener {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int port = 0;
  Listener() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd); }
};

TEST_CASE("a sandboxed worker reads only its inputs, writes only its directory, and reaches no one") {
  test::TempDir dir;
  // A store beside the worker's inputs, as the daemon's data directory is laid out: blobs, a
  // model that links to one of them, another tenant's blob, the daemon's keys.
  const fs::path blobs = dir.path() / "blobs", model = dir.path() / "models" / "acme" / "m";
  fs::create_directories(blobs);
  fs::create_directories(model);
  std::ofstream(blobs / "mine") << "acme's weights";
  std::ofstream(blobs / "theirs") << "globex's data";
  std::ofstream(dir.path() / "admin.key") << "secret";
  fs::create_symlink(blobs / "mine", model / "model.safetensors");
  const fs::path work = dir.path() / "jobs" / "acme" / "job";
  const fs::path elsewhere = dir.path() / "jobs" / "globex";
  fs::create_directories(elsewhere);
  Listener daemon;

  const std::vector<std::string> args = {
      "--try-read",    (model / "model.safetensors").string(),
      "--try-read",    (blobs / "theirs").string(),
      "--try-read",    (dir.path() / "admin.key").string(),
      "--try-read",    "/etc/hostname",
      "--try-write",   (work / "checkpoint").string(),
      "--try-write",   (elsewhere / "planted").string(),
      "--try-connect", std::to_string(daemon.port)};

  SUBCASE("a training worker: no network at all") {
    Sandbox s;
    s.enabled = true;
    s.read = {model};
    s.network = false;
    const std::string log = run_check(s, work, args);
    CHECK(log.find("sandbox: landlock") != std::string::npos);
    CHECK(log.find("read " + (model / "model.safetensors").string() + ": allowed") !=
          std::string::npos);
    CHECK(log.find("read " + (blobs / "theirs").string() + ": denied") != std::string::npos);
    CHECK(log.find("read " + (dir.path() / "admin.key").string() + ": denied") !=
          std::string::npos);
    CHECK(log.find("read /etc/hostname: denied") != std::string::npos);
    CHECK(log.find("write " + (work / "checkpoint").string() + ": allowed") != std::string::npos);
    CHECK(log.find("write " + (elsewhere / "planted").string() + ": denied") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(elsewhere / "planted"));
    CHECK(log.find("connect " + std::to_string(daemon.port) + ": denied") != std::string::npos);
    CHECK(log.find("ptrace: denied") != std::string::npos);
    CHECK(log.find("network: none") != std::string::npos);
    // Its own threads' names it may write (the CUDA driver does, or does not start).
    CHECK(log.find("name a thread: allowed") != std::string::npos);
    CHECK(log.find("name a thread, truncating: allowed") != std::string::npos);
  }
  SUBCASE("a replica: it may listen, but connects to no one") {
    Sandbox s;
    s.enabled = true;
    s.read = {model};
    s.connect = false;
    const std::string log = run_check(s, work, args);
    CHECK(log.find("read " + (blobs / "theirs").string() + ": denied") != std::string::npos);
    CHECK(log.find("connect " + std::to_string(daemon.port) + ": denied") != std::string::npos);
    CHECK(log.find("ptrace: denied") != std::string::npos);
  }
  SUBCASE("without a sandbox the same worker reaches all of it (the check can tell)") {
    const std::string log = run_check(Sandbox{}, work, args);
    CHECK(log.find("read " + (blobs / "theirs").string() + ": allowed") != std::string::npos);
    CHECK(log.find("connect " + std::to_string(daemon.port) + ": allowed") != std::string::npos);
  }
}

// A worker installed with a loader of its own (as a relocated installation or a bundle that
// carries its loader and libraries is): a copy of mh-worker whose ELF interpreter is a copy of
// the system's loader outside the system's directories. The sandbox lets it start there.
TEST_CASE("a sandboxed worker whose loader is its own starts, and is still contained") {
  // The interpreter's path is rewritten in place, so the new one must fit the old one's room.
  std::string root = "/tmp/mh-ld-XXXXXX";
  REQUIRE(::mkdtemp(root.data()) != nullptr);
  struct Remove {
    fs::path path;
    ~Remove() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } remove{root};
  const fs::path worker = fs::path(root) / "mh-worker", loader = fs::path(root) / "ld.so";
  std::string image = test::read_file(test::mhworker_path());
  Elf64_Ehdr eh{};
  std::memcpy(&eh, image.data(), sizeof eh);
  bool rewritten = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_INTERP) continue;
    const std::string system_loader(image.data() + ph.p_offset);
    REQUIRE(loader.string().size() < ph.p_filesz);
    fs::copy_file(system_loader, loader);
    std::memset(image.data() + ph.p_offset, 0, ph.p_filesz);
    std::memcpy(image.data() + ph.p_offset, loader.c_str(), loader.string().size());
    rewritten = true;
  }
  REQUIRE(rewritten);
  std::ofstream(worker, std::ios::binary) << image;
  fs::permissions(worker, fs::perms::owner_all);
  fs::permissions(loader, fs::perms::owner_all);
  std::ofstream(fs::path(root) / "secret") << "not for workers";

  WorkerSpec spec;
  spec.argv = {worker.string(), "sandbox-check", "--try-read", root + "/secret"};
  spec.work_dir = fs::path(root) / "work";
  spec.sandbox.enabled = true;
  spec.sandbox.network = false;
  Events events;
  auto w = WorkerProcess::start(spec, events.sink());
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  const WorkerExit exit = (*w)->wait(std::chrono::seconds(30)).value();
  const std::string log = test::read_file(spec.work_dir / "worker.log");
  CHECK_MESSAGE(exit.ok(), log);
  CHECK(log.find("sandbox: landlock") != std::string::npos);
  // The loader's file is readable, its folder's other files are not.
  CHECK(log.find("read " + root + "/secret: denied") != std::string::npos);
}

TEST_CASE("a sandboxed worker's limits hold: no core dumps, a memory cap, a file size cap") {
  test::TempDir dir;
  Sandbox s;
  s.enabled = true;
  s.address_space_bytes = uint64_t{8} << 30;
  s.file_size_bytes = uint64_t{1} << 20;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "ulimit -c; ulimit -v; ulimit -f"};
  spec.work_dir = dir.path() / "w";
  spec.sandbox = s;
  Events events;
  auto w = WorkerProcess::start(spec, events.sink());
  REQUIRE_MESSAGE(w.ok(), w.status().to_string());
  CHECK((*w)->wait(std::chrono::seconds(30)).value().ok());
  std::ifstream in(spec.work_dir / "worker.log");
  std::string log((std::istreambuf_iterator<char>(in)), {});
  CHECK_MESSAGE(log.find("\n0\n8388608\n2048\n") != std::string::npos, log);
}

}  // namespace
}  // namespace mh::executor
