#include <doctest/doctest.h>

#include "platform/store/sqlite_database.h"
#include "tenants/admin_keys.h"
#include "tenants/api_keys.h"
#include "tenants/rate_limiter.h"
#include "tenants/roles.h"
#include "tenants/tenant_scope.h"
#include "tenants/tenants.h"
#include "tests/support/harness.h"

namespace mh::tenants {
namespace {

using P = Permission;

TEST_CASE("the role table: owners do everything, developers all but keys, viewers only read") {
  for (P p : {P::kRead, P::kWrite, P::kInfer, P::kHoldSeat, P::kManageKeys}) {
    CAPTURE(permission_name(p));
    CHECK(allows(Role::kOwner, p));
    CHECK(allows(Role::kDeveloper, p) == (p != P::kManageKeys));
    CHECK(allows(Role::kViewer, p) == (p == P::kRead));
  }
  for (Role r : {Role::kOwner, Role::kDeveloper, Role::kViewer}) {
    CHECK(parse_role(role_name(r)) == r);
  }
  CHECK_FALSE(parse_role("admin").has_value());
}

TEST_CASE("the token bucket grants its burst, then one token per 1/rate seconds") {
  RateLimiter limiter;
  auto t0 = RateLimiter::Clock::time_point{};
  for (int i = 0; i < 3; ++i) CHECK_FALSE(limiter.acquire("a", 2.0, 3.0, t0).has_value());
  auto wait = limiter.acquire("a", 2.0, 3.0, t0);
  REQUIRE(wait.has_value());
  CHECK(wait->count() == 500);
  CHECK_FALSE(limiter.acquire("b", 2.0, 3.0, t0).has_value());  // buckets are per key
  CHECK_FALSE(limiter.acquire("a", 2.0, 3.0, t0 + std::chrono::milliseconds(500)).has_value());
  CHECK(limiter.acquire("a", 2.0, 3.0, t0 + std::chrono::milliseconds(500)).has_value());
  // A long pause refills only up to the burst.
  auto later = t0 + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) CHECK_FALSE(limiter.acquire("a", 2.0, 3.0, later).has_value());
  CHECK(limiter.acquire("a", 2.0, 3.0, later).has_value());
}

// A store on disk with the tenants "acme" and "globex".
struct TwoTenantStore {
  test::TempDir dir;
  std::unique_ptr<store::Database> db_owner = store::open_sqlite(dir.path() / "db.sqlite").value();
  store::Database* db = db_owner.get();
  TenantRegistry registry{*db};
  TenantKeys keys{*db};
  TwoTenantStore() {
    REQUIRE(registry.create("acme", "Acme", {}, "test").ok());
    REQUIRE(registry.create("globex", "Globex", {}, "test").ok());
  }
};

TEST_CASE("TenantScope confines reads and writes to one tenant") {
  TwoTenantStore t;
  auto& db = t.db;
  auto& registry = t.registry;
  auto& keys = t.keys;
  auto acme_key = keys.create("acme", "k", Role::kDeveloper, "test");
  REQUIRE(acme_key.ok());
  const std::string id = acme_key->record.id;
  (void)db->write([&](store::Session& s) -> Status {
    TenantScope acme(s, "acme"), globex(s, "globex");
    CHECK(acme.get("api_keys", "id, name", id, "API key").ok());
    auto other = globex.get("api_keys", "id, name", id, "API key");
    CHECK(other.status().code() == Code::kNotFound);
    CHECK(other.status().message() == "API key '" + id + "' not found");
    CHECK(globex.update("api_keys", "name = ?", {std::string("stolen")}, id, "API key").code() ==
          Code::kNotFound);
    bool more = false;
    CHECK(globex.page("api_keys", "id", "", 10, &more)->empty());
    CHECK(acme.page("api_keys", "id", "", 10, &more)->size() == 1);
    return {};
  });
  CHECK(keys.authenticate(acme_key->secret)->tenant == "acme");
  CHECK(keys.revoke("globex", id, "test").status().code() == Code::kNotFound);
  CHECK(keys.authenticate(acme_key->secret).ok());  // untouched
  CHECK(keys.create("nobody", "k", Role::kOwner, "test").status().code() == Code::kNotFound);
  CHECK(registry.create("acme", "again", {}, "test").status().code() == Code::kConflict);
  CHECK(registry.suspend("acme", "why", "test")->suspended_at.has_value());
  CHECK(registry.cached("acme")->suspend_reason == "why");
  CHECK_FALSE(registry.resume("acme", "test")->suspended_at.has_value());
  CHECK(registry.cached("nobody") == nullptr);
}

TEST_CASE("a cached key is refused as soon as it is revoked") {
  TwoTenantStore t;
  auto& keys = t.keys;
  auto owner = keys.create("acme", "owner", Role::kOwner, "test");
  auto dev = keys.create("acme", "dev", Role::kDeveloper, "test");
  REQUIRE(owner.ok());
  REQUIRE(dev.ok());
  for (int i = 0; i < 3; ++i) CHECK(keys.authenticate(dev->secret).ok());  // now cached
  REQUIRE(keys.revoke("acme", dev->record.id, "test").ok());
  CHECK(keys.authenticate(dev->secret).status().code() == Code::kUnauthenticated);
  CHECK(keys.authenticate(owner->secret).ok());
  // The last owner key stays.
  CHECK(keys.revoke("acme", owner->record.id, "test").status().code() == Code::kConflict);
  CHECK(keys.authenticate(owner->secret).ok());
}

TEST_CASE("admin keys: one made at first start, shown once, revoked at once, never the last") {
  test::TempDir dir;
  auto db = store::open_sqlite(dir.path() / "db.sqlite").value();
  AdminKeys keys(*db);
  auto first = keys.bootstrap();
  REQUIRE(first.ok());
  REQUIRE(first->has_value());
  CHECK((*first)->secret.starts_with(kAdminKeyPrefix));
  CHECK_FALSE(keys.bootstrap()->has_value());  // only ever once
  // The store keeps no secret, only what tells the key apart.
  auto stored = db->read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT * FROM admin_keys"));
    for (const auto& row : rows) {
      for (size_t i = 0; i < row.size(); ++i) {
        if (const auto* text = std::get_if<std::string>(&row.value(i))) {
          CHECK(text->find((*first)->secret) == std::string::npos);
        }
      }
    }
    return {};
  });
  REQUIRE(stored.ok());
  auto second = keys.create("ci", "admin:test");
  REQUIRE(second.ok());
  CHECK(keys.authenticate(second->secret)->id == second->record.id);
  CHECK(keys.authenticate("mh_admin_not-a-key").status().code() == Code::kUnauthenticated);
  bool more = false;
  auto page = keys.list("", 1, &more);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 1);
  CHECK(more);
  CHECK(keys.list(page->at(0).id, 10, &more)->size() == 1);
  REQUIRE(keys.revoke((*first)->record.id, "admin:test").ok());
  CHECK(keys.authenticate((*first)->secret).status().code() == Code::kUnauthenticated);
  CHECK(keys.revoke(second->record.id, "admin:test").status().code() == Code::kConflict);
  CHECK(keys.authenticate(second->secret).ok());
}

}  // namespace
}  // namespace mh::tenants
