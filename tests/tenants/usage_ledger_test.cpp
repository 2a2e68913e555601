#include "tenants/usage_ledger.h"

#include <doctest/doctest.h>

#include "platform/store/sqlite_database.h"
#include "tenants/tenants.h"
#include "tests/support/harness.h"

namespace mh::tenants {
namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kT0 = 1'795'000'000 / kDay * kDay;  // a UTC midnight

struct Ledger {
  test::TempDir dir;
  std::unique_ptr<store::Database> db = store::open_sqlite(dir.path() / "db.sqlite").value();
  UsageLedger ledger{*db};
  Ledger() {
    TenantRegistry registry(*db);
    REQUIRE(registry.create("acme", "Acme", {}, "test").ok());
    REQUIRE(registry.create("globex", "Globex", {}, "test").ok());
  }
  void add(const char* tenant, int64_t at, UsageDimension d, double q, const char* subject) {
    REQUIRE(ledger.record({tenant, at, d, q, "job", subject}).ok());
  }
};

TEST_CASE("usage totals by day, by whole period and by subject, one tenant only") {
  Ledger l;
  l.add("acme", kT0 + 10, UsageDimension::kGpuSeconds, 100, "ftjob-1");
  l.add("acme", kT0 + 20, UsageDimension::kGpuSeconds, 50, "ftjob-2");
  l.add("acme", kT0 + kDay + 5, UsageDimension::kGpuSeconds, 25, "ftjob-1");
  l.add("acme", kT0 + kDay + 6, UsageDimension::kOutputTokens, 1000, "ftjob-1");
  l.add("globex", kT0 + 30, UsageDimension::kGpuSeconds, 9999, "ftjob-9");

  auto daily = l.ledger.totals("acme", {kT0, kT0 + 2 * kDay, kDay, false, std::nullopt});
  REQUIRE(daily.ok());
  REQUIRE(daily->size() == 3);
  CHECK((*daily)[0].bucket_start == kT0);
  CHECK((*daily)[0].quantity == 150);
  CHECK((*daily)[0].records == 2);
  CHECK((*daily)[1].bucket_start == kT0 + kDay);
  CHECK((*daily)[1].quantity == 25);
  CHECK((*daily)[2].dimension == UsageDimension::kOutputTokens);

  auto total =
      l.ledger.totals("acme", {kT0 + 15, kT0 + 2 * kDay, 0, false, UsageDimension::kGpuSeconds});
  REQUIRE(total->size() == 1);
  CHECK((*total)[0].bucket_start == kT0 + 15);
  CHECK((*total)[0].quantity == 75);  // the first record is before the period

  auto subjects =
      l.ledger.totals("acme", {kT0, kT0 + 2 * kDay, 0, true, UsageDimension::kGpuSeconds});
  REQUIRE(subjects->size() == 2);
  CHECK((*subjects)[0].subject_id == "ftjob-1");
  CHECK((*subjects)[0].quantity == 125);

  CHECK(l.ledger.totals("globex", {kT0, kT0 + kDay, 0, false, std::nullopt})->front().quantity ==
        9999);
  CHECK(l.ledger.totals("acme", {kT0, kT0, 0, false, std::nullopt}).status().code() ==
        Code::kInvalidArgument);
}

TEST_CASE("usage accrued between records is recorded once: by the next record or at start") {
  Ledger l;
  auto gpu = [&](const char* tenant) {
    auto t = l.ledger.totals(tenant, {kT0, kT0 + kDay, 0, false, UsageDimension::kGpuSeconds});
    REQUIRE(t.ok());
    return t->empty() ? 0.0 : t->front().quantity;
  };
  // A running job accrues every second (each replacing the last) and records every few.
  REQUIRE(l.ledger.accrue({"acme", kT0 + 1, UsageDimension::kGpuSeconds, 1, "job", "j1"}).ok());
  REQUIRE(l.ledger.accrue({"acme", kT0 + 2, UsageDimension::kGpuSeconds, 2, "job", "j1"}).ok());
  CHECK(gpu("acme") == 0);  // accrued is not recorded
  l.add("acme", kT0 + 3, UsageDimension::kGpuSeconds, 3, "j1");  // clears j1's accrued
  REQUIRE(l.ledger.accrue({"acme", kT0 + 4, UsageDimension::kGpuSeconds, 1, "job", "j1"}).ok());
  REQUIRE(l.ledger.accrue({"acme", kT0 + 4, UsageDimension::kGpuSeconds, 7, "job", "j2"}).ok());
  REQUIRE(l.ledger.accrue({"globex", kT0 + 5, UsageDimension::kOutputTokens, 9, "job", "j3"}).ok());
  CHECK_FALSE(l.ledger.accrue({"acme", kT0, UsageDimension::kGpuSeconds, -1, "job", "j"}).ok());
  // The process dies here; the next one records what was left, once.
  auto settled = l.ledger.settle_accrued();
  REQUIRE(settled.ok());
  CHECK(*settled == 3);
  CHECK(gpu("acme") == 3 + 1 + 7);
  CHECK(*l.ledger.settle_accrued() == 0);
  CHECK(gpu("acme") == 11);
  // When each subject's device-seconds were last accrued or recorded, for its process's tail.
  CHECK(l.ledger.last_accrued("job", "j1").has_value());
  CHECK(l.ledger.last_accrued("job", "j2").has_value());
  CHECK_FALSE(l.ledger.last_accrued("job", "j3").has_value());  // tokens only
  CHECK_FALSE(l.ledger.last_accrued("job", "j9").has_value());
  auto tokens = l.ledger.totals("globex", {kT0, kT0 + kDay, 0, false, std::nullopt});
  REQUIRE(tokens->size() == 1);
  CHECK(tokens->front().quantity == 9);
  CHECK(tokens->front().bucket_start == kT0);
}

TEST_CASE("the ledger refuses bad records, is append-only, and exports CSV") {
  Ledger l;
  CHECK_FALSE(l.ledger.record({"acme", kT0, UsageDimension::kGpuSeconds, -1, "job", "j"}).ok());
  CHECK_FALSE(l.ledger.record({"acme", kT0, UsageDimension::kGpuSeconds, 1, "", ""}).ok());
  CHECK_FALSE(l.ledger.record({"nobody", kT0, UsageDimension::kGpuSeconds, 1, "job", "j"}).ok());
  CHECK(l.ledger.record({"acme", kT0, UsageDimension::kStoredBytes, -4096, "file", "f,1"}).ok());
  l.add("globex", kT0 + 1, UsageDimension::kInputTokens, 12, "replica-1");
  Status edit = l.db->write(
      [](store::Session& s) { return s.exec("UPDATE usage_records SET quantity = 0").status(); });
  CHECK_FALSE(edit.ok());
  auto csv = l.ledger.export_csv(std::nullopt, kT0, kT0 + kDay);
  REQUIRE(csv.ok());
  CHECK(*csv ==
        "tenant,at,dimension,quantity,subject_kind,subject_id\n"
        "acme," +
            std::to_string(kT0) +
            ",stored_bytes,-4096,file,\"f,1\"\n"
            "globex," +
            std::to_string(kT0 + 1) + ",input_tokens,12,job,replica-1\n");
  CHECK(l.ledger.export_csv("acme", kT0, kT0 + kDay)->find("globex") == std::string::npos);
}

}  // namespace
}  // namespace mh::tenants
