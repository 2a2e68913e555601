// The platform's side of licensing on a real store, with no HTTP: the licence registry, seat
// leases that belong to the licence in force, and the clock that will not run backwards.
#include <doctest/doctest.h>

#include "licensing/registry.h"
#include "licensing/seat_leases.h"
#include "licensing/trusted_clock.h"
#include "platform/base/time.h"
#include "platform/store/sqlite_database.h"
#include "tests/support/harness.h"

namespace mh::licensing {
namespace {

constexpr int64_t kDay = 86400;

struct Platform {
  test::TempDir dir;
  std::unique_ptr<store::Database> db = store::open_sqlite(dir.path() / "db.sqlite").value();
  PrivateKey key = generate_key("test-2026").value();
  KeyRing keys;
  Entitlements entitlements;
  TrustedClock clock{*db, 300};
  store::AuditLog audit{*db};
  LicenseRegistry registry{*db, keys, entitlements, clock};
  SeatLeases leases{*db, entitlements, clock, audit, 60};

  Platform() {
    REQUIRE(keys.add(key.public_key().value()).ok());
    REQUIRE(clock.load().ok());
    REQUIRE(registry.load().ok());
  }

  // A licence for acme, signed by the platform's key, installed.
  LicenseRecord install(const std::string& id, int64_t seats) {
    const int64_t now = unix_seconds();
    LicenseTerms t;
    t.id = id;
    t.licensee = "Acme Corporation";
    t.tenant = "acme";
    t.issued_at = t.not_before = now - kDay;
    t.expires_at = now + 30 * kDay;
    t.features = {"train"};
    t.limits.seats = seats;
    auto record = registry.install(issue_license(t, key).value(), "admin:test");
    REQUIRE_MESSAGE(record.ok(), record.status().to_string());
    return *record;
  }
};

TEST_CASE("seats are the licence in force's: at most its seats, none left on one superseded") {
  Platform p;
  p.install("lic_acme_1", 2);
  const std::optional<std::string> acme = "acme";
  auto a = p.leases.checkout(acme, "lic_acme_1", "host-1/pid-1", std::nullopt, "tenant:acme/k");
  auto b = p.leases.checkout(acme, "lic_acme_1", "host-2/pid-2", 120, "tenant:acme/k");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(b->expires_at - b->created_at == 120);
  auto c = p.leases.checkout(acme, "lic_acme_1", "host-3/pid-3", std::nullopt, "tenant:acme/k");
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::kResourceExhausted);
  CHECK(p.leases.live(acme, "lic_acme_1")->size() == 2);
  // Another tenant sees neither the licence nor its leases.
  CHECK(p.leases.heartbeat(std::string("globex"), a->id).status().code() == Code::kNotFound);
  CHECK(p.leases.live(std::string("globex"), "lic_acme_1").status().code() == Code::kNotFound);

  // A new licence for the tenant: the old one's leases stop renewing, the new one has its own.
  p.install("lic_acme_2", 1);
  CHECK(p.leases.heartbeat(acme, a->id).status().code() == Code::kConflict);
  CHECK(p.leases.checkout(acme, "lic_acme_1", "h", std::nullopt, "t").status().code() ==
        Code::kConflict);
  REQUIRE(p.leases.checkout(acme, "lic_acme_2", "host-1/pid-1", std::nullopt, "t").ok());
  CHECK_FALSE(p.leases.checkout(acme, "lic_acme_2", "host-2/pid-2", std::nullopt, "t").ok());
  CHECK(p.leases.live(acme, "lic_acme_1")->empty());

  // Revoked: no seat, and the check every admission point makes refuses the tenant.
  REQUIRE(p.registry.revoke("lic_acme_2", "unpaid", "admin:test").ok());
  CHECK_FALSE(p.leases.checkout(acme, "lic_acme_2", "h", std::nullopt, "t").ok());
  CHECK_FALSE(p.entitlements.check("acme", "train", unix_seconds()).ok());
  // Kept across a restart: a new registry on the same store loads the same answer.
  Entitlements again;
  LicenseRegistry reloaded(*p.db, p.keys, again, p.clock);
  REQUIRE(reloaded.load().ok());
  CHECK_FALSE(again.check("acme", "train", unix_seconds()).ok());
  bool more = true;
  auto page = reloaded.list("", 1, &more);
  REQUIRE(page.ok());
  CHECK(page->size() == 1);
  CHECK(more);
}

TEST_CASE("the trusted clock refuses to answer once the system clock is set back") {
  Platform p;
  REQUIRE(p.clock.now().ok());
  // A high-water mark a day ahead of the system clock, as a clock wound back would leave it.
  REQUIRE(p.db->write([&](store::Session& s) {
                 return s
                     .exec("INSERT INTO meta (key, value) VALUES ('clock_high_water', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           {std::to_string(unix_seconds() + kDay)})
                     .status();
               })
              .ok());
  TrustedClock later(*p.db, 300);
  REQUIRE(later.load().ok());
  auto now = later.now();
  REQUIRE_FALSE(now.ok());
  CHECK(now.status().code() == Code::kFailedPrecondition);
  CHECK(now.status().message().find("set back") != std::string::npos);
  // Within the tolerance it answers.
  TrustedClock tolerant(*p.db, 2 * kDay);
  REQUIRE(tolerant.load().ok());
  CHECK(tolerant.now().ok());
}

}  // namespace
}  // namespace mh::licensing
