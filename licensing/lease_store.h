// LeaseStore: the seat leases' typed queries (table leases, read with the licence each is of),
// and the only place their SQL is written. The seat policy is the service's (seat_leases.h):
// the store asks it, inside the write transaction, so that two checkouts never both take the
// last seat.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/store/database.h"

namespace mh::licensing {

struct Lease {
  std::string id;  // "lease_…"
  std::string license_id;
  std::string tenant;
  std::string instance;  // who holds it, as the holder names itself ("host-1/pid-42")
  int64_t ttl_seconds = 0;
  int64_t created_at = 0;
  int64_t expires_at = 0;
  std::optional<int64_t> released_at;
};

// The leases of one licence live at a time: how many, and when the first of them expires.
struct LiveSeats {
  int64_t count = 0;
  int64_t next_expiry = 0;
};

// `caller` is the caller's tenant (nullopt for platform staff): a licence or lease of another
// tenant is not found, exactly as a missing one.
class LeaseStore {
 public:
  explicit LeaseStore(store::Database& db) : db_(db) {}

  // Checks out `lease` (its tenant is filled in from its licence) in one write: `decide`, given
  // the licence's tenant and its seats live at lease.created_at, answers OK to insert the lease
  // or the refusal, which is put in *refusal with nothing written.
  using SeatDecision = std::function<Status(const std::string& tenant, const LiveSeats& live)>;
  Status checkout(const std::optional<std::string>& caller, Lease& lease,
                  const SeatDecision& decide, Status* refusal);
  // Renews the lease at `now` by its time to live, in one write, if `decide` answers OK; if it
  // refuses, the refusal is put in *refusal and the lease, if still live, released at `now`.
  // Returns the lease as written.
  Result<Lease> heartbeat(const std::optional<std::string>& caller, std::string_view id,
                          int64_t now, const std::function<Status(const Lease&)>& decide,
                          Status* refusal);
  // Releases the lease at `now`; one released before comes back unchanged.
  Result<Lease> release(const std::optional<std::string>& caller, std::string_view id,
                        int64_t now);
  // The licence's leases live at `now`, oldest first.
  Result<std::vector<Lease>> live(const std::optional<std::string>& caller,
                                  std::string_view license_id, int64_t now) const;

 private:
  store::Database& db_;
};

}  // namespace mh::licensing
