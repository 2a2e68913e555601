#include "platform/worker/contain.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "platform/executor/sandbox.h"

namespace mh::worker {

int contain(int argc, char** argv) {
  std::vector<std::string> options;
  int program = 2;
  for (; program < argc && std::strcmp(argv[program], "--") != 0; ++program) {
    options.emplace_back(argv[program]);
  }
  ++program;  // past "--"
  if (program >= argc) {
    std::fprintf(stderr, "mh-worker: contain: nothing to run (usage: mh-worker contain "
                         "[--read PATH]… [--no-network] [--no-connect] [--address-space BYTES] "
                         "[--file-size BYTES] -- PROGRAM [ARGS…])\n");
    return 2;
  }
  auto sandbox = executor::parse_contain_args(options);
  if (!sandbox.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", sandbox.status().message().c_str());
    return 2;
  }
  std::error_code ec;
  const std::filesystem::path here = std::filesystem::current_path(ec);
  if (ec) {
    std::fprintf(stderr, "mh-worker: contain: no working directory: %s\n", ec.message().c_str());
    return 126;
  }
  auto prepared = executor::PreparedSandbox::prepare(*sandbox, here, argv[program]);
  if (!prepared.ok()) {
    std::fprintf(stderr, "mh-worker: contain: %s\n", prepared.status().message().c_str());
    return 126;
  }
  if (int err = (*prepared)->enter(); err != 0) {
    std::fprintf(stderr, "mh-worker: contain: entering the sandbox: %s\n", std::strerror(err));
    return 126;
  }
  ::execv(argv[program], argv + program);
  std::fprintf(stderr, "mh-worker: contain: cannot run %s: %s\n", argv[program],
               std::strerror(errno));
  return 126;
}

}  // namespace mh::worker
