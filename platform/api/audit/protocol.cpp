#include "platform/api/audit/protocol.h"

#include <boost/json.hpp>
#include <string>

namespace mh::api {

namespace json = boost::json;

Result<int64_t> parse_audit_after(std::string_view after) {
  if (after.empty()) return int64_t{0};
  if (after.find_first_not_of("0123456789") != std::string_view::npos || after.size() > 18) {
    return invalid_argument("'after' must be an entry's seq", "after");
  }
  return static_cast<int64_t>(std::stoll(std::string(after)));
}

json::object audit_page_json(const std::vector<licensing::AuditEntry>& entries, bool has_more,
                             const licensing::ChainHead& head) {
  json::array data;
  for (const auto& e : entries) {
    data.push_back(json::object{{"seq", e.seq},
                                {"at", e.at},
                                {"actor", e.actor},
                                {"action", e.action},
                                {"subject", e.subject},
                                {"detail", e.detail},
                                {"prev_hash", e.prev_hash},
                                {"hash", e.hash}});
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"has_more", has_more},
          {"head", json::object{{"seq", head.seq}, {"hash", head.hash}}}};
}

}  // namespace mh::api
