#include "platform/api/audit/routes.h"

#include <boost/json.hpp>

#include "platform/api/audit/protocol.h"

namespace mh::api {

void add_audit_routes(Router& router, store::AuditLog& audit) {
  router.add("GET", "/v1/admin/audit", Access::kAdmin, [&audit](Request& request) {
    auto page = parse_page(request, 100, 1000);
    if (!page.ok()) return Response::error(page.status());
    auto after = parse_audit_after(page->after);
    if (!after.ok()) return Response::error(after.status());
    bool has_more = false;
    auto entries = audit.list(*after, page->limit, &has_more);
    if (!entries.ok()) return Response::error(entries.status());
    auto head = audit.head();
    if (!head.ok()) return Response::error(head.status());
    return Response::json(200, audit_page_json(*entries, has_more, *head));
  });
}

}  // namespace mh::api
