// mh-worker sandbox-check: what this process may do, tried for real. The platform's tests run
// it as a worker (under the sandbox a job's or a replica's worker gets) to show what a worker
// can and cannot reach; an operator can run it the same way.
#pragma once

#include <string>
#include <vector>

namespace mh::worker {

// Prints one line per attempt: "read PATH: allowed" or "read PATH: denied (Permission
// denied)", likewise "write PATH", "connect PORT", "ptrace" and "network". Returns 0.
int sandbox_check(const std::vector<std::string>& read, const std::vector<std::string>& write,
                  const std::vector<std::string>& connect);

}  // namespace mh::worker
