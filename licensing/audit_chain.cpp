#include "licensing/audit_chain.h"

#include <fmt/format.h>

#include "platform/base/crypto.h"

namespace mh::licensing {

std::string audit_entry_hash(const AuditEntry& e) {
  Sha256 hash;
  auto field = [&](std::string_view value) {
    std::string length = std::to_string(value.size()) + ":";
    hash.update(length);
    hash.update(value);
  };
  field("macrohard audit v1");
  field(std::to_string(e.seq));
  field(std::to_string(e.at));
  field(e.actor);
  field(e.action);
  field(e.subject);
  field(e.detail);
  field(e.prev_hash);
  return hex_encode(hash.finish());
}

Result<ChainHead> verify_audit_chain(std::span<const AuditEntry> entries,
                                     const std::optional<ChainHead>& expected_head) {
  ChainHead head;
  for (const AuditEntry& e : entries) {
    if (e.seq != head.seq + 1) {
      return failed_precondition(fmt::format(
          "audit log broken: entry {} follows entry {}: entries are missing", e.seq, head.seq));
    }
    if (e.prev_hash != head.hash) {
      return failed_precondition(fmt::format(
          "audit log broken at entry {}: it does not link to entry {} (an entry before it was "
          "changed or removed)",
          e.seq, head.seq));
    }
    if (audit_entry_hash(e) != e.hash) {
      return failed_precondition(
          fmt::format("audit log broken at entry {}: its contents do not match its hash (it was "
                      "edited)",
                      e.seq));
    }
    head = {e.seq, e.hash};
  }
  if (expected_head && (expected_head->seq != head.seq || expected_head->hash != head.hash)) {
    return failed_precondition(fmt::format(
        "audit log broken: it ends at entry {} but the recorded head is entry {} (entries were "
        "removed from the end, or the head was altered)",
        head.seq, expected_head->seq));
  }
  return head;
}

}  // namespace mh::licensing
