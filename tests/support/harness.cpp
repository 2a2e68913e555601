#include "tests/support/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mh::test {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

fs::path macrohardd_path() { return MH_TEST_MACROHARDD; }
fs::path mhctl_path() { return MH_TEST_MHCTL; }
fs::path mhworker_path() { return MH_TEST_MHWORKER; }
fs::path source_dir() { return MH_TEST_SOURCE_DIR; }
fs::path binary_dir() { return MH_TEST_BINARY_DIR; }

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/mh-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

fs::path find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    fs::path candidate = fs::path(std::string(rest.substr(0, colon))) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  return {};
}

namespace {

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

// Starts argv with stdout and stderr sent to `output`, and `env` added.
pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const fs::path& output) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    if (!env.contains(name)) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_wait_status(status);
    if (r < 0) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env,
                          std::chrono::seconds timeout) {
  TempDir dir;
  fs::path output = dir.path() / "output";
  pid_t pid = spawn(argv, env, output);
  ProcessResult result;
  auto code = wait_for(pid, timeout);
  if (!code) {
    ::kill(pid, SIGKILL);
    code = wait_for(pid, 10s);
    result.output = "[killed after timeout]\n";
  }
  result.exit_code = code.value_or(-1);
  result.output += read_file(output);
  return result;
}

Daemon::Daemon(DaemonOptions options) : scheme_(options.scheme) {
  if (options.data_dir.empty()) {
    owned_dir_.emplace();
    data_dir_ = owned_dir_->path() / "data";
    work_dir_ = owned_dir_->path();
  } else {
    data_dir_ = options.data_dir;
    work_dir_ = data_dir_.parent_path();
  }
  fs::path port_file = work_dir_ / "port";
  fs::path key_file = work_dir_ / "admin.key";
  fs::remove(port_file);
  std::vector<std::string> argv = {macrohardd_path().string(),
                                   "--data-dir",
                                   data_dir_.string(),
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file.string(),
                                   "--admin-key-file",
                                   key_file.string(),
                                   "--threads",
                                   "2",
                                   "--log-level",
                                   "debug"};
  argv.insert(argv.end(), options.args.begin(), options.args.end());
  std::error_code ignored;
  log_offset_ = static_cast<size_t>(fs::file_size(work_dir_ / "daemon.log", ignored));
  if (ignored) log_offset_ = 0;
  pid_ = spawn(argv, {}, work_dir_ / "daemon.log");
  auto deadline = Clock::now() + 20s;
  while (!fs::exists(port_file)) {
    if (auto code = wait_for(pid_, 0ms)) {
      exit_code_ = code;
      throw std::runtime_error("macrohardd exited with " + std::to_string(*code) + ":\n" +
                               output());
    }
    if (Clock::now() > deadline) throw std::runtime_error("macrohardd did not start:\n" + output());
    std::this_thread::sleep_for(10ms);
  }
  port_ = static_cast<uint16_t>(std::stoi(read_file(port_file)));
  std::string key = read_file(key_file);
  admin_key_ = key.substr(0, key.find('\n'));
}

Daemon::~Daemon() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_for(pid_, 10s);
  }
}

std::string Daemon::url() const { return scheme_ + "://127.0.0.1:" + std::to_string(port_); }

bool Daemon::running() {
  if (exit_code_) return false;
  if (auto code = wait_for(pid_, 0ms)) {
    exit_code_ = code;
    return false;
  }
  return true;
}

int Daemon::stop(int signal, std::chrono::seconds timeout) {
  if (!running()) return *exit_code_;
  ::kill(pid_, signal);
  auto code = wait_exit(timeout);
  if (!code) {
    ::kill(pid_, SIGKILL);
    code = wait_exit(10s);
  }
  return code.value_or(-1);
}

std::optional<int> Daemon::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  exit_code_ = wait_for(pid_, timeout);
  return exit_code_;
}

std::string Daemon::output() const {
  std::string log = read_file(work_dir_ / "daemon.log");
  return log.size() > log_offset_ ? log.substr(log_offset_) : std::string();
}

std::string RawResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

RawConnection::RawConnection(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

void RawConnection::send(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
    sent += static_cast<size_t>(n);
  }
}

// Waits until `deadline` for data and appends it to the buffer. kTimeout when nothing came,
// kClosed on end of stream or error.
RawConnection::Read RawConnection::receive(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return Read::kTimeout;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return Read::kTimeout;
  char chunk[65536];
  ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n <= 0) return Read::kClosed;
  buffer_.append(chunk, static_cast<size_t>(n));
  return Read::kData;
}

std::optional<RawResponse> RawConnection::read_response(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto fill = [&] { return receive(deadline) == Read::kData; };
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  RawResponse response;
  std::istringstream head(buffer_.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (line.size() < 12) return std::nullopt;
  response.status = std::stoi(line.substr(9, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    response.headers[name] = value;
  }
  if (response.header("transfer-encoding") == "chunked") {
    // Chunks until the zero-length one (no trailers are sent).
    size_t at = end + 4;
    for (;;) {
      size_t eol;
      while ((eol = buffer_.find("\r\n", at)) == std::string::npos) {
        if (!fill()) return std::nullopt;
      }
      const size_t size = std::stoul(buffer_.substr(at, eol - at), nullptr, 16);
      while (buffer_.size() < eol + 2 + size + 2) {
        if (!fill()) return std::nullopt;
      }
      response.body += buffer_.substr(eol + 2, size);
      at = eol + 2 + size + 2;
      if (size == 0) break;
    }
    buffer_.erase(0, at);
    return response;
  }
  size_t length = std::stoul(
      response.header("content-length").empty() ? "0" : response.header("content-length"));
  while (buffer_.size() < end + 4 + length) {
    if (!fill()) return std::nullopt;
  }
  response.body = buffer_.substr(end + 4, length);
  buffer_.erase(0, end + 4 + length);
  return response;
}

std::optional<std::string> RawConnection::read_until(const std::string& needle, size_t count,
                                                     std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto occurrences = [&] {
    size_t n = 0;
    for (size_t at = buffer_.find(needle); at != std::string::npos;
         at = buffer_.find(needle, at + needle.size())) {
      ++n;
    }
    return n;
  };
  while (occurrences() < count) {
    if (receive(deadline) != Read::kData) return std::nullopt;
  }
  return buffer_;
}

bool RawConnection::closed_by_peer(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    switch (receive(deadline)) {
      case Read::kClosed:
        return true;
      case Read::kTimeout:
        return false;
      case Read::kData:
        buffer_.clear();
        break;
    }
  }
}

RawResponse http_request(uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body,
                         const std::map<std::string, std::string>& headers) {
  RawConnection conn(port);
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [k, v] : headers) request += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "Connection: close\r\n\r\n" + body;
  conn.send(request);
  auto response = conn.read_response();
  if (!response) throw std::runtime_error("no response to " + method + " " + target);
  return *response;
}

}  // namespace mh::test
