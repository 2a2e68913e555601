// Router: maps (method, path) to a handler. Patterns are literal segments and `{name}`
// parameters ("/v1/files/{id}/content"). An unknown path answers 404, a known path with another
// method 405 with an Allow header. Authentication runs before the handler, by the route's Access.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "platform/api/http.h"
#include "tenants/roles.h"

namespace mh::api {

// Who may call a route.
struct Access {
  enum class Kind {
    kPublic,  // no key needed (health, version, metrics)
    kAdmin,   // a platform-admin key
    kTenant,  // a tenant's key whose role grants `permission`
    kAnyKey,  // a platform-admin key, or a tenant key whose role grants `permission`
  };
  Kind kind = Kind::kPublic;
  tenants::Permission permission = tenants::Permission::kRead;

  static const Access kPublic;
  static const Access kAdmin;
  static constexpr Access tenant(tenants::Permission p) { return {Kind::kTenant, p}; }
  static constexpr Access any_key(tenants::Permission p) { return {Kind::kAnyKey, p}; }
};
inline constexpr Access Access::kPublic{Access::Kind::kPublic, tenants::Permission::kRead};
inline constexpr Access Access::kAdmin{Access::Kind::kAdmin, tenants::Permission::kRead};

using Handler = std::function<Response(Request&)>;
// Returns who is calling, or the error to answer with (401, 403, 429). A 429 carries the
// seconds to wait in the Status's param, which the router sends as Retry-After.
using Authenticator = std::function<Result<Principal>(const Request&, Access)>;

class Router {
 public:
  void set_authenticator(Authenticator authenticator) { authenticator_ = std::move(authenticator); }
  void add(std::string method, std::string pattern, Access access, Handler handler);

  // Routes, authenticates and runs the handler; never throws. `route` is set to the matched
  // pattern (the metrics label), or "unmatched".
  Response dispatch(Request& request, std::string_view* route) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{id}" marks a parameter
    Access access;
    Handler handler;
  };
  const Route* match(Request& request, std::string* allow) const;
  static bool match_segments(const Route& route, std::string_view path,
                             std::vector<std::pair<std::string, std::string>>* params);

  std::vector<Route> routes_;
  // Parameter-free patterns, keyed by path, for the common case of an exact match.
  std::unordered_map<std::string, std::vector<size_t>> literal_;
  Authenticator authenticator_;
};

}  // namespace mh::api
