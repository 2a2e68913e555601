#include "licensing/entitlements.h"

#include <fmt/format.h>

#include "platform/base/time.h"

namespace mh::licensing {

Entitlements::Entitlements() : map_(std::make_shared<const Map>()) {}

// Writers copy the map and swap it in: writes are rare (install, revoke), reads constant.
void Entitlements::put(Entitlement entitlement) {
  auto current = map_.load();
  for (;;) {
    auto next = std::make_shared<Map>(*current);
    (*next)[entitlement.license.terms.tenant] = std::make_shared<const Entitlement>(entitlement);
    if (map_.compare_exchange_weak(current, std::shared_ptr<const Map>(std::move(next)))) return;
  }
}

void Entitlements::remove(std::string_view tenant) {
  auto current = map_.load();
  for (;;) {
    auto next = std::make_shared<Map>(*current);
    next->erase(std::string(tenant));
    if (map_.compare_exchange_weak(current, std::shared_ptr<const Map>(std::move(next)))) return;
  }
}

std::shared_ptr<const Entitlement> Entitlements::find(std::string_view tenant) const {
  auto map = map_.load();
  auto it = map->find(std::string(tenant));
  return it == map->end() ? nullptr : it->second;
}

Status Entitlements::check(std::string_view tenant, std::string_view feature, int64_t now) const {
  auto entitlement = find(tenant);
  if (!entitlement) {
    return permission_denied(fmt::format("tenant '{}' has no license installed", tenant));
  }
  const LicenseTerms& terms = entitlement->license.terms;
  if (entitlement->revoked_at) {
    return permission_denied(
        fmt::format("license {} was revoked at {}{}", terms.id, rfc3339(*entitlement->revoked_at),
                    entitlement->revoke_reason.empty() ? "" : ": " + entitlement->revoke_reason));
  }
  MH_TRY(check_in_force(terms, now));
  if (!feature.empty() && !terms.has_feature(feature)) {
    return permission_denied(
        fmt::format("license {} does not include the feature '{}'", terms.id, feature));
  }
  return {};
}

}  // namespace mh::licensing
