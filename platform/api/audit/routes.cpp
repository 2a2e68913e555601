#include <boost/json.hpp>

#include "platform/api/audit_routes.h"

namespace mh::api {

void add_audit_routes(Router& router, store::AuditLog& audit) {
  router.add("GET", "/v1/admin/audit", Access::kAdmin, [&audit](Request& request) {
    auto page = parse_page(request, 100, 1000);
    if (!page.ok()) return Response::error(page.status());
    int64_t after = 0;
    if (!page->after.empty()) {
      if (page->after.find_first_not_of("0123456789") != std::string::npos ||
          page->after.size() > 18) {
        return Response::error(invalid_argument("'after' must be an entry's seq", "after"));
      }
      after = std::stoll(page->after);
    }
    bool has_more = false;
    auto entries = audit.list(after, page->limit, &has_more);
    if (!entries.ok()) return Response::error(entries.status());
    auto head = audit.head();
    if (!head.ok()) return Response::error(head.status());
    boost::json::array data;
    for (const auto& e : *entries) {
      data.push_back(boost::json::object{{"seq", e.seq},
                                         {"at", e.at},
                                         {"actor", e.actor},
                                         {"action", e.action},
                                         {"subject", e.subject},
                                         {"detail", e.detail},
                                         {"prev_hash", e.prev_hash},
                                         {"hash", e.hash}});
    }
    return Response::json(
        200, boost::json::object{
                 {"object", "list"},
                 {"data", std::move(data)},
                 {"has_more", has_more},
                 {"head", boost::json::object{{"seq", head->seq}, {"hash", head->hash}}}});
  });
}

}  // namespace mh::api
