// The routes of usage (protocol in protocol.h; the service is tenants/usage_ledger.h):
// GET /v1/usage (a tenant's totals by period and dimension) and GET /v1/admin/usage/export
// (every record as CSV, for staff).
#pragma once

#include "platform/api/transport.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

void add_usage_routes(Router& router, const tenants::UsageLedger& ledger);

}  // namespace mh::api
