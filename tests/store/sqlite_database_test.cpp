#include "platform/store/sqlite_database.h"

#include "platform/store/migrations.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

namespace mh::store {
namespace {

constexpr Migration kSchemaV1[] = {
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"},
};
constexpr Migration kSchemaV2[] = {
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"},
    {2, "item sizes", "ALTER TABLE items ADD COLUMN size REAL;"},
};
constexpr Migration kBroken[] = {
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"},
    {2, "broken", "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;"},
};

TEST_CASE("migrations apply once, in order, and survive reopening") {
  test::TempDir dir;
  auto file = dir.path() / "db.sqlite";
  {
    auto db = open_sqlite(file, {}, kSchemaV1);
    REQUIRE(db.ok());
    CHECK((*db)->schema_version() == 1);
    CHECK((*db)->dialect() == "sqlite");
    REQUIRE((*db)
                ->write([](Session& s) {
                  return s.exec("INSERT INTO items (name) VALUES (?)", {std::string("a")}).status();
                })
                .ok());
  }
  auto db = open_sqlite(file, {}, kSchemaV2);
  REQUIRE(db.ok());
  CHECK((*db)->schema_version() == 2);
  Status read = (*db)->read([](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT name, size FROM items"));
    CHECK(rows.size() == 1);
    CHECK(rows[0].text(0) == "a");
    CHECK(rows[0].is_null(1));
    return {};
  });
  CHECK(read.ok());
}

TEST_CASE("migration 9 rebuilds the jobs table: rows, their events and the files' bytes kept") {
  test::TempDir dir;
  auto file = dir.path() / "db.sqlite";
  {
    auto v8 = open_sqlite(file, {}, migrations().first(8));
    REQUIRE(v8.ok());
    Status seeded = (*v8)->write([](Session& s) -> Status {
      MH_TRY(s.exec("INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', 1)")
                 .status());
      MH_TRY(s.exec("INSERT INTO files (id, tenant_id, purpose, filename, bytes, sha256, "
                    "created_at) VALUES ('file-t', 'acme', 'fine-tune', 't.jsonl', 3, 'aa', 1), "
                    "('file-v', 'acme', 'fine-tune', 'v.jsonl', 3, 'bb', 1)")
                 .status());
      MH_TRY(s.exec("INSERT INTO fine_tuning_jobs (id, tenant_id, model, training_file, "
                    "validation_file, status, n_epochs, batch_size, lr_multiplier, seed, "
                    "created_at, priority) VALUES ('ftjob-1', 'acme', 'm', 'file-t', 'file-v', "
                    "'running', 1, 4, 1.0, 7, 1, 3)")
                 .status());
      return s
          .exec("INSERT INTO fine_tuning_events (id, job_id, tenant_id, created_at, level, "
                "message, type) VALUES ('ftevent-1', 'ftjob-1', 'acme', 1, 'info', 'hi', "
                "'message')")
          .status();
    });
    REQUIRE_MESSAGE(seeded.ok(), seeded.to_string());
  }
  auto db = open_sqlite(file, {}, migrations());
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  CHECK((*db)->schema_version() >= 9);
  Status checked = (*db)->write([](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT training_file, validation_file, "
                                           "training_sha256, validation_sha256, priority, status "
                                           "FROM fine_tuning_jobs"));
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].text(0) == "file-t");
    CHECK(rows[0].text(1) == "file-v");
    CHECK(rows[0].text(2) == "aa");
    CHECK(rows[0].text(3) == "bb");
    CHECK(rows[0].integer(4) == 3);
    CHECK(rows[0].text(5) == "running");
    // The events still belong to their job, and keys are still enforced.
    MH_ASSIGN_OR_RETURN(auto events, s.query("SELECT e.message FROM fine_tuning_events e JOIN "
                                             "fine_tuning_jobs j ON j.id = e.job_id"));
    CHECK(events.size() == 1);
    CHECK_FALSE(s.exec("INSERT INTO fine_tuning_events (id, job_id, tenant_id, created_at, "
                       "level, message, type) VALUES ('x', 'no-such-job', 'acme', 1, 'info', "
                       "'', 'message')")
                    .ok());
    // A file a job used can be deleted now.
    return s.exec("DELETE FROM files WHERE id = 'file-t'").status();
  });
  CHECK_MESSAGE(checked.ok(), checked.to_string());
}

TEST_CASE("a database newer than the build is refused, not touched") {
  test::TempDir dir;
  auto file = dir.path() / "db.sqlite";
  REQUIRE(open_sqlite(file, {}, kSchemaV2).ok());
  auto old = open_sqlite(file, {}, kSchemaV1);
  REQUIRE_FALSE(old.ok());
  CHECK(old.status().code() == Code::kFailedPrecondition);
  CHECK(old.status().message().find("schema version 2") != std::string::npos);
}

TEST_CASE("a failing migration is rolled back whole and named") {
  test::TempDir dir;
  auto file = dir.path() / "db.sqlite";
  auto db = open_sqlite(file, {}, kBroken);
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().message().find("migration 2 (broken)") != std::string::npos);
  auto v1 = open_sqlite(file, {}, kSchemaV1);
  REQUIRE(v1.ok());
  CHECK((*v1)->schema_version() == 1);
  Status no_half = (*v1)->read([](Session& s) { return s.query("SELECT * FROM half").status(); });
  CHECK_FALSE(no_half.ok());
}

TEST_CASE("a write transaction that fails leaves nothing behind") {
  test::TempDir dir;
  auto db = open_sqlite(dir.path() / "db.sqlite", {}, kSchemaV1);
  REQUIRE(db.ok());
  Status s = (*db)->write([](Session& s) -> Status {
    MH_TRY(s.exec("INSERT INTO items (name) VALUES (?)", {std::string("x")}).status());
    return conflict("changed my mind");
  });
  CHECK(s.code() == Code::kConflict);
  Status dup = (*db)->write([](Session& s) -> Status {
    MH_TRY(s.exec("INSERT INTO items (name) VALUES (?)", {std::string("y")}).status());
    return s.exec("INSERT INTO items (name) VALUES (?)", {std::string("y")}).status();
  });
  CHECK(dup.code() == Code::kConflict);  // UNIQUE violation
  (void)(*db)->read([](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT COUNT(*) FROM items"));
    CHECK(rows[0].integer(0) == 0);
    return {};
  });
}

TEST_CASE("parameters bind by type and a wrong count is an error") {
  test::TempDir dir;
  auto db = open_sqlite(dir.path() / "db.sqlite", {}, kSchemaV2);
  REQUIRE(db.ok());
  Status s = (*db)->write([](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(int64_t n, s.exec("INSERT INTO items (name, size) VALUES (?, ?)",
                                          {std::string("it's; DROP TABLE items"), 2.5}));
    CHECK(n == 1);
    auto wrong = s.exec("INSERT INTO items (name) VALUES (?)", {std::string("a"), int64_t{1}});
    CHECK(wrong.status().code() == Code::kInternal);
    MH_ASSIGN_OR_RETURN(
        auto row, s.query_one("SELECT name, size FROM items WHERE size > ?", {int64_t{2}}, "item"));
    CHECK(row.text(0) == "it's; DROP TABLE items");
    CHECK(row.real(1) == doctest::Approx(2.5));
    auto none = s.query_one("SELECT name FROM items WHERE size > ?", {100.0}, "big item");
    CHECK(none.status().code() == Code::kNotFound);
    return {};
  });
  CHECK(s.ok());
}

TEST_CASE("readers see committed data while a writer works, from many threads") {
  test::TempDir dir;
  auto db = open_sqlite(dir.path() / "db.sqlite", {}, kSchemaV1);
  REQUIRE(db.ok());
  Database& d = **db;
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Status w = d.write([&](Session& s) {
          return s
              .exec("INSERT INTO items (name) VALUES (?)",
                    {std::to_string(t) + "-" + std::to_string(i)})
              .status();
        });
        Status r =
            d.read([](Session& s) { return s.query("SELECT COUNT(*) FROM items").status(); });
        if (!w.ok() || !r.ok()) failed = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK_FALSE(failed.load());
  (void)d.read([](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT COUNT(*) FROM items"));
    CHECK(rows[0].integer(0) == 200);
    return {};
  });
}

}  // namespace
}  // namespace mh::store

namespace mh::store {
namespace {

constexpr Migration kNamed[] = {
    {1, "things", "CREATE TABLE things (id TEXT PRIMARY KEY, n INTEGER NOT NULL);"},
};

TEST_CASE("select_page walks a table in insertion order by cursor") {
  test::TempDir dir;
  auto db = open_sqlite(dir.path() / "db.sqlite", {}, kNamed);
  REQUIRE(db.ok());
  REQUIRE((*db)
              ->write([](Session& s) -> Status {
                for (int i = 0; i < 5; ++i) {
                  // Ids out of alphabetical order: pages follow insertion, not the id.
                  MH_TRY(s.exec("INSERT INTO things (id, n) VALUES (?, ?)",
                                {std::string(1, static_cast<char>('e' - i)), int64_t{i}})
                             .status());
                }
                return {};
              })
              .ok());
  (void)(*db)->read([](Session& s) -> Status {
    bool more = false;
    auto first = select_page(s, "things", "id, n", "", 2, &more);
    REQUIRE(first.ok());
    CHECK(first->size() == 2);
    CHECK((*first)[0].text(0) == "e");
    CHECK(more);
    auto last = select_page(s, "things", "id, n", "b", 2, &more);
    REQUIRE(last.ok());
    CHECK(last->size() == 1);
    CHECK((*last)[0].integer(1) == 4);
    CHECK_FALSE(more);
    auto bad = select_page(s, "things", "id, n", "zz", 2, &more);
    CHECK(bad.status().code() == Code::kInvalidArgument);
    CHECK(bad.status().param() == "after");
    return {};
  });
}

}  // namespace
}  // namespace mh::store
