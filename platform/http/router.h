// Router: maps (method, path) to a handler. Patterns are literal segments and `{name}`
// parameters ("/v1/files/{id}/content"). An unknown path answers 404, a known path with another
// method 405 with an Allow header. Authentication runs before the handler, by the route's Access.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "platform/http/http.h"

namespace mh::http {

// Who may call a route. The transport only carries `permission`: what it means (a role's right
// to read, write, infer, …) is the authenticator's to decide, from an enum of its own.
struct Access {
  enum class Kind {
    kPublic,  // no key needed (health, version, metrics)
    kAdmin,   // a platform-admin key
    kTenant,  // a tenant's key whose role grants `permission`
    kAnyKey,  // a platform-admin key, or a tenant key whose role grants `permission`
  };
  Kind kind = Kind::kPublic;
  int permission = 0;

  static const Access kPublic;
  static const Access kAdmin;
  template <typename Permission>
  static constexpr Access tenant(Permission p) {
    return {Kind::kTenant, static_cast<int>(p)};
  }
  template <typename Permission>
  static constexpr Access any_key(Permission p) {
    return {Kind::kAnyKey, static_cast<int>(p)};
  }
};

inline constexpr Access Access::kPublic{Access::Kind::kPublic, 0};
inline constexpr Access Access::kAdmin{Access::Kind::kAdmin, 0};

using Handler = std::function<Response(Request&)>;

// Where a route's handler runs. One that may block (the store, the disk, a wait on another
// thread) runs on the server's handler pool and answers on its connection's strand; one that
// never blocks (it reads memory, or starts asynchronous work and returns a stream) runs on the
// I/O thread that read the request, saving the two hops.
enum class Runs { kOnPool, kInline };

// A handler's answer that comes later, from another thread (a service calling back once a wait
// is over), without a thread held meanwhile: the handler returns `response` at once, and
// `reply` is called once, from any thread, with the answer. A 500 is logged and concealed
// behind the request id, as for an answer returned at once.
struct Later {
  Response response;
  std::function<void(Response)> reply;
};
Later answer_later(const Request& request);

// Where an upload route's body goes, chunk by chunk, as it arrives. The server calls write()
// for each chunk and finish() at the end; a sink destroyed without finish() (client gone,
// timeout, an error) must leave nothing behind.
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual Status write(std::string_view chunk) = 0;
  virtual Response finish() = 0;
};
// Called with the request's headers (no body yet): a sink, or the error to answer at once.
using UploadHandler = std::function<Result<std::unique_ptr<BodySink>>(Request&)>;
// Returns who is calling, or the error to answer with (401, 403, 429). A 429 carries the
// seconds to wait in the Status's param, which the router sends as Retry-After. Called with
// `may_block` false (on an I/O thread) it must not touch the store or the disk: it returns
// nullopt when it cannot decide from memory alone, and the request goes to the handler pool,
// where it is called again with `may_block` true and must decide.
using Authenticator =
    std::function<std::optional<Result<Principal>>(const Request&, Access, bool may_block)>;

class Router {
 public:
  void set_authenticator(Authenticator authenticator) { authenticator_ = std::move(authenticator); }
  // At most `limit` requests of one tenant in flight at once (0: no cap); past it a request is
  // answered 429 with Retry-After at once, before its handler runs. A request is in flight from
  // its authentication until its response is written (a streamed one's last chunk, an upload's
  // whole body read and answered) or its connection closes.
  void set_tenant_in_flight_limit(size_t limit);
  void add(std::string method, std::string pattern, Access access, Handler handler,
           Runs runs = Runs::kOnPool);
  // A route whose body is streamed to a sink instead of being read into memory. Its sink is
  // made, written and finished on the handler pool.
  void add_upload(std::string method, std::string pattern, Access access, UploadHandler handler);

  // Whether (method, path) is an upload route; decided from the header alone.
  bool is_upload(const Request& request) const;
  // For an upload route: authenticates and asks the handler for a sink. Sets *sink, or returns
  // the response to answer with instead. `route` is set as by dispatch(). May block.
  std::optional<Response> begin_upload(Request& request, std::string_view* route,
                                       std::unique_ptr<BodySink>* sink) const;

  // Routes, authenticates and runs the handler; never throws. `route` is set to the matched
  // pattern (the metrics label), or "unmatched". May block: the server calls it on its pool.
  Response dispatch(Request& request, std::string_view* route) const;
  // The same, for an I/O thread as the request's header or body arrives: authenticates the
  // caller if that needs memory alone, and answers when it can without blocking (no such route,
  // a caller refused, an inline route); else nullopt: the server then calls dispatch() (or, for
  // an upload route, begin_upload()) on its pool, which authenticates only if this did not.
  std::optional<Response> dispatch_inline(Request& request, std::string_view* route) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{id}" marks a parameter
    Access access;
    Handler handler;
    UploadHandler upload;  // set for upload routes
    Runs runs = Runs::kOnPool;
  };
  // The route, or nullptr with *answer set to the 404 or 405 to send.
  const Route* find(Request& request, std::string_view* route_label, Response* answer) const;
  const Route* match(Request& request, std::string* allow) const;
  // Authenticates for the route: false when that needs blocking and `may_block` is false;
  // else true, with *refused set to the error response if the caller may not proceed.
  bool authenticate(const Route& route, Request& request, bool may_block,
                    std::optional<Response>* refused) const;
  Response run(const Route& route, Request& request) const;
  static bool match_segments(const Route& route, std::string_view path,
                             std::vector<std::pair<std::string, std::string>>* params);

  std::vector<Route> routes_;
  // Parameter-free patterns, keyed by path, for the common case of an exact match.
  std::unordered_map<std::string, std::vector<size_t>> literal_;
  Authenticator authenticator_;
  struct InFlight;
  std::shared_ptr<InFlight> in_flight_;  // shared with the places handed out
};

}  // namespace mh::http
