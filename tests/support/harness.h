// Test support: temporary directories, child processes, a real macrohardd on a loopback port,
// and a raw TCP connection for sending HTTP that no well-behaved client would send.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mh::test {

using namespace std::chrono_literals;

// Paths baked in by tests/CMakeLists.txt.
std::filesystem::path macrohardd_path();
std::filesystem::path mhctl_path();
std::filesystem::path mhworker_path();
std::filesystem::path source_dir();
std::filesystem::path binary_dir();

// A directory removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ProcessResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string output;  // stdout and stderr together
};

// Runs argv to completion (killing it after `timeout`), with `env` added to the environment.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env = {},
                          std::chrono::seconds timeout = 120s);

std::string read_file(const std::filesystem::path& path);
// The full path of a program on PATH, or empty.
std::filesystem::path find_program(const std::string& name);

struct DaemonOptions {
  std::vector<std::string> args;   // extra flags
  std::filesystem::path data_dir;  // empty: a fresh temporary one
  std::string scheme = "http";
};
inline DaemonOptions with_args(std::vector<std::string> args, std::string scheme = "http") {
  DaemonOptions options;
  options.args = std::move(args);
  options.scheme = std::move(scheme);
  return options;
}
inline DaemonOptions with_data_dir(std::filesystem::path dir) {
  DaemonOptions options;
  options.data_dir = std::move(dir);
  return options;
}

// A real macrohardd on 127.0.0.1 and an ephemeral port, started in the constructor (which
// waits until it listens) and killed in the destructor if still running.
class Daemon {
 public:
  explicit Daemon(DaemonOptions options = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const;
  const std::string& admin_key() const { return admin_key_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal` and waits for the exit; returns the exit code (-signal if killed).
  int stop(int signal = SIGTERM, std::chrono::seconds timeout = 30s);
  // Waits for an exit already under way.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // What this daemon process printed (stdout and stderr).
  std::string output() const;

 private:
  std::optional<TempDir> owned_dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path work_dir_;
  std::string scheme_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string admin_key_;
  std::optional<int> exit_code_;
  size_t log_offset_ = 0;  // where this process's output begins in the shared log
};

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const;
};

// A blocking loopback TCP connection.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void send(const std::string& bytes);
  // Reads one response (headers and a Content-Length or chunked body); nullopt if the connection
  // closed or nothing complete arrived within the timeout.
  std::optional<RawResponse> read_response(std::chrono::milliseconds timeout = 10s);
  // Reads until what has arrived holds `needle` `count` times; all of it, or nullopt if the
  // connection closed or the time ran out first.
  std::optional<std::string> read_until(const std::string& needle, size_t count,
                                        std::chrono::milliseconds timeout = 10s);
  // True if the peer closes the connection within the timeout (reads and drops any data).
  bool closed_by_peer(std::chrono::milliseconds timeout);

 private:
  enum class Read { kData, kClosed, kTimeout };
  Read receive(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string buffer_;
};

// One request on a fresh connection, "Connection: close".
RawResponse http_request(uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body = {},
                         const std::map<std::string, std::string>& headers = {});

}  // namespace mh::test
