// The route of the audit log, for staff (protocol in protocol.h; the log is store/audit_log.h).
#pragma once

#include "platform/api/transport.h"
#include "platform/store/audit_log.h"

namespace mh::api {

// GET /v1/admin/audit?after=<seq>&limit=<n>: entries in order, with the recorded head.
void add_audit_routes(Router& router, store::AuditLog& audit);

}  // namespace mh::api
