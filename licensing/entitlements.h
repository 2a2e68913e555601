// Entitlements: the one check every admission point calls (training, deployment, model upload,
// seat leases): is this tenant's license in force, and does it grant this feature? Licenses are
// verified once, when installed or loaded; the check reads an immutable snapshot, so it costs
// a hash lookup and a few comparisons, never a signature verification.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "licensing/license.h"

namespace mh::licensing {

struct Entitlement {
  License license;
  std::optional<int64_t> revoked_at;
  std::string revoke_reason;
};

class Entitlements {
 public:
  Entitlements();
  // Makes `entitlement` the tenant's (replacing any earlier license of that tenant).
  void put(Entitlement entitlement);
  void remove(std::string_view tenant);
  std::shared_ptr<const Entitlement> find(std::string_view tenant) const;

  // OK if the tenant holds a license that is not revoked, is in force at `now`, and (when
  // `feature` is not empty) grants `feature`. Otherwise permission_denied naming the license
  // and the reason.
  Status check(std::string_view tenant, std::string_view feature, int64_t now) const;

 private:
  using Map = std::unordered_map<std::string, std::shared_ptr<const Entitlement>>;
  std::atomic<std::shared_ptr<const Map>> map_;
};

}  // namespace mh::licensing
