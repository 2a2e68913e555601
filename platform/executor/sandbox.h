// Containment for worker processes. A worker parses tenant-supplied files (weights, tokenizers,
// chat templates, training data), so it runs as if those parsers could be subverted, with what
// Linux gives:
// - Landlock: it may read only the system's directories (not /etc's secrets, not /tmp, not the
//   daemon's data), its program and its inputs, and write only its own directory and /dev (the
//   GPU's device files, shared memory); it cannot signal processes outside its own sandbox;
// - no network: a network namespace of its own with no interface up (a training worker), or no
//   outgoing TCP connection (Landlock's network rules: a replica, which only listens);
// - seccomp: system calls no worker needs and that widen an attack (ptrace, mount, bpf, keyctl,
//   new namespaces, kernel modules, …) fail with EPERM, under no_new_privs;
// - resource limits: address space (CPU workers), file size, open files, no core dumps.
// A kernel without some of these (Landlock before 5.13, its network rules before 6.7) runs the
// worker with the rest; summary() says what applies, and the worker's log starts with it.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "platform/base/status.h"

namespace mh::executor {

struct Sandbox {
  bool enabled = false;
  // Inputs it may read, beside the system's directories and its program. A directory's symbolic
  // links are followed to where they point (a model laid out as links to its blobs).
  std::vector<std::filesystem::path> read;
  bool network = true;  // false: no network at all
  bool connect = true;  // false: no outgoing TCP connection (it may still listen)
  uint64_t address_space_bytes = 0;  // RLIMIT_AS; 0: none (CUDA reserves huge address ranges)
  uint64_t file_size_bytes = 0;      // RLIMIT_FSIZE; 0: none
};

// The sandbox as arguments of `mh-worker contain`, for a worker that no executor of ours
// forks (a Slurm batch job): `mh-worker contain <these> -- <program> <args…>` enters it and
// runs the program in its place. parse_contain_args reads them back (what precedes "--").
std::vector<std::string> contain_args(const Sandbox& sandbox);
Result<Sandbox> parse_contain_args(const std::vector<std::string>& args);

// A sandbox made ready in the parent (paths opened, filters compiled: after fork a child of a
// threaded process may only make system calls) and entered by the child before exec.
class PreparedSandbox {
 public:
  static Result<std::unique_ptr<PreparedSandbox>> prepare(const Sandbox& sandbox,
                                                          const std::filesystem::path& work_dir,
                                                          const std::filesystem::path& program);
  ~PreparedSandbox();
  PreparedSandbox(const PreparedSandbox&) = delete;
  PreparedSandbox& operator=(const PreparedSandbox&) = delete;

  // In the child, after fork and before exec: 0, or the errno of the step that failed.
  int enter() const noexcept;
  // What applies, for the worker's log: "landlock 7 (files, tcp connect, signals), network
  // namespace, seccomp, limits".
  const std::string& summary() const { return summary_; }

 private:
  PreparedSandbox() = default;

  int ruleset_fd_ = -1;
  uint64_t own_task_rights_ = 0;  // on its own threads' names: write, truncate (ABI 3)
  bool own_network_ = false;
  bool user_namespace_ = false;  // not root: a network namespace needs a user namespace too
  std::string uid_map_, gid_map_;
  std::vector<sock_filter> filter_;
  uint64_t address_space_bytes_ = 0, file_size_bytes_ = 0;
  std::string summary_;
};

}  // namespace mh::executor
