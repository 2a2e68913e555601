// What the control plane's service tests stand on: a real SQLite store and blob store in a
// temporary directory, two tenants (acme, globex), and the Context services are built from.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "licensing/entitlements.h"
#include "licensing/trusted_clock.h"
#include "platform/api/context.h"
#include "platform/base/time.h"
#include "platform/blobs/blob_store.h"
#include "platform/store/sqlite_database.h"
#include "tenants/tenants.h"
#include "tests/support/harness.h"

namespace mh::api {

struct ServicePlatform {
  test::TempDir dir;
  std::unique_ptr<store::Database> db = store::open_sqlite(dir.path() / "db.sqlite").value();
  std::unique_ptr<blobs::BlobStore> blobs = blobs::BlobStore::open(dir.path() / "blobs").value();
  tenants::TenantRegistry tenants{*db};
  licensing::Entitlements entitlements;
  licensing::TrustedClock clock{*db, 300};
  tenants::UsageLedger usage{*db};
  DeviceHoldings holdings;
  LicenceWatch watch{entitlements, usage, tenants, clock};
  Context context{*db, *blobs, tenants, entitlements, clock, usage, holdings, watch};

  ServicePlatform() {
    REQUIRE(clock.load().ok());
    REQUIRE(tenants.create("acme", "Acme", {}, "test").ok());
    REQUIRE(tenants.create("globex", "Globex", {}, "test").ok());
  }

  // A licence in force for `tenant` (as the registry would leave it once verified), granting
  // `features` within `limits`.
  void license(const std::string& tenant, std::set<std::string> features,
               const licensing::Limits& limits) {
    licensing::Entitlement e;
    e.license.terms.id = "lic_" + tenant;
    e.license.terms.tenant = tenant;
    e.license.terms.not_before = e.license.terms.issued_at = unix_seconds() - 60;
    e.license.terms.expires_at = unix_seconds() + 86400;
    e.license.terms.features = std::move(features);
    e.license.terms.limits = limits;
    entitlements.put(std::move(e));
  }
};

}  // namespace mh::api
