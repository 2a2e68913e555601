// Context: what the control plane's services are built on, handed to each service's constructor
// as one object: the store and the blobs, the tenants, licences and the clock that checks them,
// the tenants' usage, the devices they hold and the watch that stops work a licence no longer
// allows. The daemon
// makes it once (platform/main/daemon.cpp); a service test makes one over a store of its own.
#pragma once

#include "licensing/entitlements.h"
#include "licensing/trusted_clock.h"
#include "platform/api/admission.h"
#include "platform/blobs/blob_store.h"
#include "platform/store/database.h"
#include "tenants/tenants.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

struct Context {
  store::Database& db;
  blobs::BlobStore& blobs;
  tenants::TenantRegistry& tenants;
  const licensing::Entitlements& entitlements;
  licensing::TrustedClock& clock;
  tenants::UsageLedger& usage;
  DeviceHoldings& holdings;
  LicenceWatch& watch;
};

}  // namespace mh::api
