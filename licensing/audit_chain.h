// The audit log's hash chain. Each entry's hash covers its own fields and the previous entry's
// hash, so editing, inserting or deleting any entry breaks every hash after it; comparing the
// last hash with one recorded elsewhere (the daemon keeps it, staff can note it) also catches
// entries cut off the end.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "platform/base/status.h"

namespace mh::licensing {

inline const std::string kGenesisHash(64, '0');

struct AuditEntry {
  int64_t seq = 0;      // 1, 2, 3, … with no gaps
  int64_t at = 0;       // Unix seconds
  std::string actor;    // "admin:akey_…", "system"
  std::string action;   // "license.install", "lease.refuse", …
  std::string subject;  // what it concerns: a license id, a key id
  std::string detail;   // JSON
  std::string prev_hash;
  std::string hash;
};

// SHA-256 (hex) over the entry's fields, length-prefixed so that no two entries share bytes.
std::string audit_entry_hash(const AuditEntry& entry);

struct ChainHead {
  int64_t seq = 0;
  std::string hash = kGenesisHash;
};

// Checks that the entries form an unbroken chain from the genesis and, if `expected_head` is
// given, end there. The error names the first entry at fault.
Result<ChainHead> verify_audit_chain(std::span<const AuditEntry> entries,
                                     const std::optional<ChainHead>& expected_head);

}  // namespace mh::licensing
