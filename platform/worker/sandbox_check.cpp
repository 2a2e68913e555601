#include "platform/worker/sandbox_check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>

namespace mh::worker {

namespace {

void report(const std::string& what, bool ok, int err) {
  if (ok) {
    std::printf("%s: allowed\n", what.c_str());
  } else {
    std::printf("%s: denied (%s)\n", what.c_str(), std::strerror(err));
  }
}

}  // namespace

int sandbox_check(const std::vector<std::string>& read, const std::vector<std::string>& write,
                  const std::vector<std::string>& connect) {
  for (const std::string& path : read) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    char byte;
    const bool ok = fd >= 0 && ::read(fd, &byte, 1) >= 0;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    report("read " + path, ok, err);
  }
  for (const std::string& path : write) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const bool ok = fd >= 0 && ::write(fd, "x", 1) == 1;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    report("write " + path, ok, err);
  }
  for (const std::string& port : connect) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::atoi(port.c_str())));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok =
        fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    report("connect " + port, ok, err);
  }
  // Naming another of its threads (a write to /proc/self/task/<tid>/comm, opened as the C
  // library does and as fopen's "w" does, truncating), as the CUDA driver does when it starts.
  {
    std::promise<pid_t> started;
    std::promise<void> named;
    std::thread other([&] {
      started.set_value(::gettid());
      named.get_future().wait();
    });
    const pid_t tid = started.get_future().get();
    const int err = ::pthread_setname_np(other.native_handle(), "sandbox-check");
    report("name a thread", err == 0, err);
    const std::string comm = "/proc/self/task/" + std::to_string(tid) + "/comm";
    const int fd = ::open(comm.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    const bool ok = fd >= 0 && ::write(fd, "sandbox-check\n", 14) == 14;
    const int write_err = errno;
    if (fd >= 0) ::close(fd);
    report("name a thread, truncating", ok, write_err);
    named.set_value();
    other.join();
  }
  // Tracing its parent (the daemon) must fail, whatever the rest allows. PTRACE_SEIZE does not
  // stop the tracee, so the check harms nothing where it succeeds.
  const bool traced = ::ptrace(PTRACE_SEIZE, ::getppid(), nullptr, nullptr) == 0;
  report("ptrace", traced, errno);
  if (traced) ::ptrace(PTRACE_DETACH, ::getppid(), nullptr, nullptr);
  // Whether any network interface but loopback is up.
  bool network = false;
  if (struct if_nameindex* names = ::if_nameindex()) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (struct if_nameindex* n = names; n->if_index != 0 && fd >= 0; ++n) {
      ifreq req{};
      std::strncpy(req.ifr_name, n->if_name, IFNAMSIZ - 1);
      if (::ioctl(fd, SIOCGIFFLAGS, &req) == 0 && (req.ifr_flags & IFF_UP) &&
          !(req.ifr_flags & IFF_LOOPBACK)) {
        network = true;
      }
    }
    if (fd >= 0) ::close(fd);
    ::if_freenameindex(names);
  }
  std::printf("network: %s\n", network ? "up" : "none");
  return 0;
}

}  // namespace mh::worker
