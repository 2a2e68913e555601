// The audit log on the wire (the log is store/audit_log.h; its hash chain licensing/audit_chain.h).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "licensing/audit_chain.h"
#include "platform/base/status.h"

namespace mh::api {

// ?after= of GET /v1/admin/audit: an entry's seq (0 when empty).
Result<int64_t> parse_audit_after(std::string_view after);

// {"object": "list", "data": entries, "has_more", "head": {"seq", "hash"}}.
boost::json::object audit_page_json(const std::vector<licensing::AuditEntry>& entries,
                                    bool has_more, const licensing::ChainHead& head);

}  // namespace mh::api
