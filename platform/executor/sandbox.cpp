#include "platform/executor/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <elf.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>

namespace mh::executor {

namespace fs = std::filesystem;

namespace {

// Landlock's interface (linux/landlock.h), written out: the build machine's kernel headers may
// be older than the kernel the workers run on, and the ABI is stable.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};
struct PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

constexpr uint32_t kCreateRulesetVersion = 1U << 0;
constexpr int kFirstFreeFd = 16;
constexpr int kRulePathBeneath = 1;

constexpr uint64_t kExecute = 1ULL << 0, kWriteFile = 1ULL << 1, kReadFile = 1ULL << 2,
                   kReadDir = 1ULL << 3, kRemoveDir = 1ULL << 4, kRemoveFile = 1ULL << 5,
                   kMakeChar = 1ULL << 6, kMakeDir = 1ULL << 7, kMakeReg = 1ULL << 8,
                   kMakeSock = 1ULL << 9, kMakeFifo = 1ULL << 10, kMakeBlock = 1ULL << 11,
                   kMakeSym = 1ULL << 12, kRefer = 1ULL << 13, kTruncate = 1ULL << 14,
                   kIoctlDev = 1ULL << 15;
constexpr uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;
constexpr uint64_t kConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeSignal = 1ULL << 1;

// Everything a Landlock ABI can restrict on files.
uint64_t fs_rights(long abi) {
  uint64_t all = kExecute | kWriteFile | kReadFile | kReadDir | kRemoveDir | kRemoveFile |
                 kMakeChar | kMakeDir | kMakeReg | kMakeSock | kMakeFifo | kMakeBlock | kMakeSym;
  if (abi >= 2) all |= kRefer;
  if (abi >= 3) all |= kTruncate;
  if (abi >= 5) all |= kIoctlDev;
  return all;
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// The system's directories a program and its libraries need, read-only; /etc only for the
// dynamic loader's files (it may hold the platform's TLS key and other secrets). The NVIDIA
// driver looks for its persistence daemon's socket, and must find the folder or be refused
// as missing, not as forbidden.
constexpr const char* kSystemRead[] = {"/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin",
                                       "/opt", "/proc", "/sys", "/run/nvidia-persistenced",
                                       "/etc/ld.so.cache",
                                       "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"};

// System calls no worker needs, and that would widen what a subverted one could do.
constexpr const char* kDenied[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "bpf", "perf_event_open", "keyctl", "add_key",
    "request_key", "setns", "unshare", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
    "iopl", "ioperm", "acct", "quotactl", "lookup_dcookie", "fsopen", "fsmount", "fsconfig",
    "fspick", "move_mount", "open_tree", "mount_setattr", "syslog", "vhangup", "settimeofday",
    "clock_settime", "adjtimex", "sethostname", "setdomainname"};

// Where a program's own loader and libraries are, beside the system's directories: its ELF
// interpreter and its RPATH and RUNPATH directories ($ORIGIN read as the program's folder).
// A relocated installation (a prefix of its own, a bundle carrying its loader and libraries)
// runs from these; a program that is not a 64-bit ELF file names none. Only the headers and
// the strings named are read (a program may be hundreds of megabytes).
std::vector<fs::path> program_loader_paths(const fs::path& program) {
  std::vector<fs::path> paths;
  const int fd = ::open(program.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return paths;
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close{fd};
  auto read_at = [&](uint64_t offset, void* out, size_t size) {
    return ::pread(fd, out, size, static_cast<off_t>(offset)) == static_cast<ssize_t>(size);
  };
  // A string at a file offset, up to its terminator (at most PATH_MAX bytes).
  auto string_at = [&](uint64_t offset) -> std::string {
    std::string text(4096, '\0');
    const ssize_t n = ::pread(fd, text.data(), text.size(), static_cast<off_t>(offset));
    text.resize(n > 0 ? strnlen(text.data(), static_cast<size_t>(n)) : 0);
    return text;
  };
  Elf64_Ehdr eh{};
  if (!read_at(0, &eh, sizeof eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
      eh.e_phnum > 512) {
    return paths;
  }
  std::vector<Elf64_Phdr> segments(eh.e_phnum);
  if (!read_at(eh.e_phoff, segments.data(), segments.size() * sizeof(Elf64_Phdr))) return paths;
  // A virtual address's file offset, through the loaded segment that holds it.
  auto file_offset = [&](uint64_t address) -> std::optional<uint64_t> {
    for (const auto& ph : segments) {
      if (ph.p_type == PT_LOAD && address >= ph.p_vaddr && address - ph.p_vaddr < ph.p_filesz) {
        return ph.p_offset + (address - ph.p_vaddr);
      }
    }
    return std::nullopt;
  };
  const fs::path origin = fs::absolute(program).parent_path();
  for (const auto& ph : segments) {
    if (ph.p_type == PT_INTERP) {
      const std::string interpreter = string_at(ph.p_offset);
      if (!interpreter.empty()) paths.emplace_back(interpreter);
    }
    if (ph.p_type != PT_DYNAMIC || ph.p_filesz > (uint64_t{1} << 20)) continue;
    std::vector<Elf64_Dyn> dynamic(ph.p_filesz / sizeof(Elf64_Dyn));
    if (!read_at(ph.p_offset, dynamic.data(), dynamic.size() * sizeof(Elf64_Dyn))) continue;
    std::optional<uint64_t> strtab;
    std::vector<uint64_t> search;  // DT_RPATH and DT_RUNPATH, as offsets into the table
    for (const Elf64_Dyn& dyn : dynamic) {
      if (dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag == DT_STRTAB) strtab = file_offset(dyn.d_un.d_ptr);
      if (dyn.d_tag == DT_RPATH || dyn.d_tag == DT_RUNPATH) search.push_back(dyn.d_un.d_val);
    }
    if (!strtab) continue;
    for (uint64_t entry : search) {
      std::stringstream list(string_at(*strtab + entry));
      for (std::string dir; std::getline(list, dir, ':');) {
        for (const char* name : {"$ORIGIN", "${ORIGIN}"}) {
          if (dir.starts_with(name)) dir = origin.string() + dir.substr(std::strlen(name));
        }
        if (!dir.empty() && dir.front() == '/') paths.emplace_back(dir);
      }
    }
  }
  return paths;
}

Result<std::vector<sock_filter>> compile_filter() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return internal_error("seccomp_init failed");
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { seccomp_release(ctx); }
  } release{ctx};
  auto deny = [&](int nr, uint32_t action, unsigned count = 0, scmp_arg_cmp arg = {}) {
    return count == 0 ? seccomp_rule_add(ctx, action, nr, 0)
                      : seccomp_rule_add(ctx, action, nr, 1, arg);
  };
  for (const char* name : kDenied) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture or libseccomp
    if (int rc = deny(nr, SCMP_ACT_ERRNO(EPERM)); rc != 0) {
      return internal_error(std::string("seccomp rule for ") + name + ": " + std::strerror(-rc));
    }
  }
  // New namespaces: clone's flags are checked; clone3's are behind a pointer, so it answers
  // ENOSYS and the C library falls back to clone.
  for (uint64_t flag : {uint64_t{CLONE_NEWNS}, uint64_t{CLONE_NEWUSER}, uint64_t{CLONE_NEWNET},
                        uint64_t{CLONE_NEWPID}, uint64_t{CLONE_NEWIPC}, uint64_t{CLONE_NEWUTS},
                        uint64_t{CLONE_NEWCGROUP}}) {
    if (int rc = deny(SCMP_SYS(clone), SCMP_ACT_ERRNO(EPERM), 1,
                      SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
        rc != 0) {
      return internal_error(std::string("seccomp rule for clone: ") + std::strerror(-rc));
    }
  }
  if (const int nr = seccomp_syscall_resolve_name("clone3"); nr != __NR_SCMP_ERROR) {
    if (int rc = deny(nr, SCMP_ACT_ERRNO(ENOSYS)); rc != 0) {
      return internal_error(std::string("seccomp rule for clone3: ") + std::strerror(-rc));
    }
  }
  // libseccomp 2.5 exports to a descriptor: through a memory file.
  const int fd = static_cast<int>(::syscall(SYS_memfd_create, "seccomp", MFD_CLOEXEC));
  if (fd < 0) return internal_error(errno_text("memfd_create"));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close{fd};
  if (int rc = seccomp_export_bpf(ctx, fd); rc != 0) {
    return internal_error(std::string("seccomp_export_bpf: ") + std::strerror(-rc));
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    return internal_error("seccomp_export_bpf wrote no program");
  }
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(fd, program.data(), static_cast<size_t>(size), 0) != size) {
    return internal_error(errno_text("reading the seccomp program"));
  }
  return program;
}

}  // namespace

Result<std::unique_ptr<PreparedSandbox>> PreparedSandbox::prepare(const Sandbox& sandbox,
                                                                  const fs::path& work_dir,
                                                                  const fs::path& program) {
  std::unique_ptr<PreparedSandbox> p(new PreparedSandbox());
  std::string applies;
  auto note = [&](const std::string& what) { applies += (applies.empty() ? "" : ", ") + what; };

  // Landlock: the rules are made here, on descriptors opened here; the child only enters them.
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  if (abi >= 1) {
    RulesetAttr attr{fs_rights(abi), 0, 0};
    size_t attr_size = sizeof(uint64_t);
    if (abi >= 4 && !sandbox.connect) attr.handled_access_net = kConnectTcp;
    if (abi >= 4) attr_size = 2 * sizeof(uint64_t);
    if (abi >= 6) {
      attr.scoped = kScopeSignal;
      attr_size = sizeof attr;
    }
    const int ruleset =
        static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0));
    if (ruleset < 0) return internal_error(errno_text("landlock_create_ruleset"));
    // Above the descriptors the child sets up for the worker (0 to 4), which it overwrites.
    p->ruleset_fd_ = ::fcntl(ruleset, F_DUPFD_CLOEXEC, kFirstFreeFd);
    ::close(ruleset);
    if (p->ruleset_fd_ < 0) return internal_error(errno_text("moving the Landlock ruleset"));
    const uint64_t all = fs_rights(abi);
    p->own_task_rights_ = (kWriteFile | kTruncate) & all;
    const uint64_t read = (kReadFile | kReadDir | kExecute) & all;
    const uint64_t devices =
        (kReadFile | kWriteFile | kReadDir | kMakeReg | kRemoveFile | kTruncate | kIoctlDev) & all;
    std::set<fs::path> seen;
    // A path that is missing is skipped (not every system has /lib32); one that cannot be
    // opened otherwise is an error.
    auto allow = [&](const fs::path& path, uint64_t rights) -> Status {
      const int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return {};
        return internal_error(errno_text("sandbox: opening " + path.string()));
      }
      struct stat st {};
      const bool is_dir = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
      PathBeneathAttr rule{is_dir ? rights : (rights & kFileRights), fd};
      const long rc = ::syscall(SYS_landlock_add_rule, p->ruleset_fd_, kRulePathBeneath, &rule, 0);
      const int err = errno;
      ::close(fd);
      if (rc != 0) {
        errno = err;
        return internal_error(errno_text("sandbox: a rule for " + path.string()));
      }
      return {};
    };
    // An input and, for a directory, where its links point (a model laid out as links to its
    // blobs gets those blobs, and nothing else of the blob store).
    auto allow_input = [&](const fs::path& path, uint64_t rights) -> Status {
      MH_TRY(allow(path, rights));
      std::error_code ec;
      if (!fs::is_directory(path, ec)) return {};
      for (auto it = fs::recursive_directory_iterator(path, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_symlink(ec)) continue;
        const fs::path target = fs::canonical(it->path(), ec);
        if (ec) {
          ec.clear();
          continue;
        }
        if (seen.insert(target).second) MH_TRY(allow(target, rights));
      }
      return {};
    };
    for (const char* system : kSystemRead) MH_TRY(allow(system, read));
    MH_TRY(allow("/dev", devices));
    MH_TRY(allow(program, read));
    for (const auto& path : program_loader_paths(program)) MH_TRY(allow(path, read));
    for (const auto& path : sandbox.read) MH_TRY(allow_input(path, read));
    MH_TRY(allow(work_dir, all));
    note("landlock " + std::to_string(abi) + " (files" +
         (attr.handled_access_net != 0 ? ", no tcp connect" : "") +
         (attr.scoped != 0 ? ", signals" : "") + ")");
  } else {
    note("no landlock (the kernel lacks it)");
  }

  if (!sandbox.network) {
    p->own_network_ = true;
    if (::geteuid() != 0) {
      p->user_namespace_ = true;
      p->uid_map_ = std::to_string(::getuid()) + " " + std::to_string(::getuid()) + " 1\n";
      p->gid_map_ = std::to_string(::getgid()) + " " + std::to_string(::getgid()) + " 1\n";
    }
    note("no network");
  }
  MH_ASSIGN_OR_RETURN(p->filter_, compile_filter());
  note("seccomp");
  if (::geteuid() == 0) note("no capabilities");
  p->address_space_bytes_ = sandbox.address_space_bytes;
  p->file_size_bytes_ = sandbox.file_size_bytes;
  note("limits");
  p->summary_ = "sandbox: " + applies + "\n";
  return p;
}

PreparedSandbox::~PreparedSandbox() {
  if (ruleset_fd_ >= 0) ::close(ruleset_fd_);
}

std::vector<std::string> contain_args(const Sandbox& sandbox) {
  std::vector<std::string> args;
  for (const auto& path : sandbox.read) args.insert(args.end(), {"--read", path.string()});
  if (!sandbox.network) args.emplace_back("--no-network");
  if (!sandbox.connect) args.emplace_back("--no-connect");
  if (sandbox.address_space_bytes > 0) {
    args.insert(args.end(), {"--address-space", std::to_string(sandbox.address_space_bytes)});
  }
  if (sandbox.file_size_bytes > 0) {
    args.insert(args.end(), {"--file-size", std::to_string(sandbox.file_size_bytes)});
  }
  return args;
}

Result<Sandbox> parse_contain_args(const std::vector<std::string>& args) {
  Sandbox sandbox;
  sandbox.enabled = true;
  auto bytes = [](const std::string& flag, const std::string& text) -> Result<uint64_t> {
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v == 0) {
      return invalid_argument(flag + " must be a positive number of bytes, not '" + text + "'");
    }
    return v;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--no-network") {
      sandbox.network = false;
    } else if (a == "--no-connect") {
      sandbox.connect = false;
    } else if (a == "--read" && has_value) {
      sandbox.read.emplace_back(args[++i]);
    } else if (a == "--address-space" && has_value) {
      MH_ASSIGN_OR_RETURN(sandbox.address_space_bytes, bytes(a, args[++i]));
    } else if (a == "--file-size" && has_value) {
      MH_ASSIGN_OR_RETURN(sandbox.file_size_bytes, bytes(a, args[++i]));
    } else {
      return invalid_argument("contain: '" + a + "' is not an option here" +
                              (has_value ? "" : " (or its value is missing)"));
    }
  }
  return sandbox;
}

int PreparedSandbox::enter() const noexcept {
  // Limits first: no core dumps (a dump would hold tenants' data), then the sizes.
  const std::pair<int, uint64_t> limits[] = {
      {RLIMIT_CORE, 0}, {RLIMIT_AS, address_space_bytes_}, {RLIMIT_FSIZE, file_size_bytes_}};
  for (auto [resource, value] : limits) {
    if (resource != RLIMIT_CORE && value == 0) continue;
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = value;
    if (::setrlimit(resource, &rl) != 0) return errno;
  }
  if (own_network_) {
    if (::unshare(user_namespace_ ? CLONE_NEWUSER | CLONE_NEWNET : CLONE_NEWNET) != 0) return errno;
    if (user_namespace_) {
      auto put = [](const char* file, const std::string& text) {
        const int fd = ::open(file, O_WRONLY | O_CLOEXEC);
        if (fd < 0) return errno;
        const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        const int err = errno;
        ::close(fd);
        return ok ? 0 : err;
      };
      if (int err = put("/proc/self/setgroups", "deny"); err != 0) return err;
      if (int err = put("/proc/self/uid_map", uid_map_); err != 0) return err;
      if (int err = put("/proc/self/gid_map", gid_map_); err != 0) return err;
    }
  }
  // Root keeps its uid but no capability survives the exec: the bounding set is emptied.
  if (::geteuid() == 0) {
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
      return errno;
    }
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  if (ruleset_fd_ >= 0) {
    // Its own threads' names: the CUDA driver names the threads it starts by writing
    // /proc/<pid>/task/<tid>/comm (opened for writing, perhaps truncating), and will not start
    // when it cannot. The rule is on this
    // process's own task folder, which only the process itself can name before the exec (the
    // threads it starts later are beneath it); nothing else of /proc becomes writable.
    const int task = ::open("/proc/self/task", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (task < 0) return errno;
    PathBeneathAttr rule{own_task_rights_, task};
    const long rc = ::syscall(SYS_landlock_add_rule, ruleset_fd_, kRulePathBeneath, &rule, 0);
    const int err = errno;
    ::close(task);
    if (rc != 0) return err;
    if (::syscall(SYS_landlock_restrict_self, ruleset_fd_, 0) != 0) return errno;
  }
  if (!filter_.empty()) {
    sock_fprog program{static_cast<unsigned short>(filter_.size()),
                       const_cast<sock_filter*>(filter_.data())};
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0) return errno;
  }
  [[maybe_unused]] ssize_t n = ::write(2, summary_.data(), summary_.size());
  return 0;
}

}  // namespace mh::executor
