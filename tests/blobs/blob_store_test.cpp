#include "platform/blobs/blob_store.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "tests/support/harness.h"

namespace mh::blobs {
namespace {
namespace fs = std::filesystem;

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

TEST_CASE("a blob is named by its SHA-256 and reads back whole") {
  test::TempDir dir;
  auto store = BlobStore::open(dir.path() / "blobs");
  REQUIRE(store.ok());
  auto info = (*store)->put("abc");
  REQUIRE(info.ok());
  CHECK(info->sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(info->size == 3);
  CHECK((*store)->contains(info->sha256));
  CHECK((*store)->read(info->sha256).value() == "abc");
  CHECK(fs::exists(dir.path() / "blobs" / "ba" / info->sha256));
  // The same content again is the same blob.
  CHECK((*store)->put("abc")->sha256 == info->sha256);
  CHECK(count_files(dir.path() / "blobs") == 1);
}

TEST_CASE("list names every blob and nothing else under the root") {
  test::TempDir dir;
  auto store = BlobStore::open(dir.path() / "blobs");
  REQUIRE(store.ok());
  CHECK((*store)->list().value().empty());
  const std::string a = (*store)->put("abc")->sha256, b = (*store)->put("xyz")->sha256;
  auto writer = (*store)->create().value();  // unfinished: a temporary file, not a blob
  REQUIRE(writer->write("partial").ok());
  auto names = (*store)->list().value();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want = {a, b};
  std::sort(want.begin(), want.end());
  CHECK(names == want);
  REQUIRE((*store)->remove(a).ok());
  CHECK((*store)->list().value() == std::vector<std::string>{b});
}

TEST_CASE("streamed writes hash as they go — an aborted writer leaves nothing") {
  test::TempDir dir;
  auto store = BlobStore::open(dir.path());
  REQUIRE(store.ok());
  {
    auto writer = (*store)->create();
    REQUIRE(writer.ok());
    REQUIRE((*writer)->write("a").ok());
    REQUIRE((*writer)->write("bc").ok());
    CHECK((*writer)->bytes_written() == 3);
    CHECK(count_files(dir.path()) == 1);  // the temporary file
  }                                       // destroyed without commit
  CHECK(count_files(dir.path()) == 0);
  auto writer = (*store)->create();
  REQUIRE((*writer)->write("a").ok());
  REQUIRE((*writer)->write("bc").ok());
  auto info = (*writer)->commit();
  REQUIRE(info.ok());
  CHECK(info->sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK((*writer)->write("more").code() == Code::kFailedPrecondition);
}

TEST_CASE("a writer refuses to grow past its limit and cleans up") {
  test::TempDir dir;
  auto store = BlobStore::open(dir.path());
  auto writer = (*store)->create(4);
  REQUIRE((*writer)->write("1234").ok());
  Status over = (*writer)->write("5");
  CHECK(over.code() == Code::kPayloadTooLarge);
  CHECK(count_files(dir.path()) == 0);
  CHECK_FALSE((*writer)->commit().ok());
}

TEST_CASE("bad names are refused and missing blobs are not found") {
  test::TempDir dir;
  auto store = BlobStore::open(dir.path());
  CHECK((*store)->read("../../etc/passwd").status().code() == Code::kInvalidArgument);
  CHECK((*store)->read(std::string(64, 'A')).status().code() == Code::kInvalidArgument);
  CHECK((*store)->read(std::string(64, 'a')).status().code() == Code::kNotFound);
  CHECK((*store)->remove(std::string(64, 'a')).code() == Code::kNotFound);
  auto info = (*store)->put("x");
  CHECK((*store)->remove(info->sha256).ok());
  CHECK_FALSE((*store)->contains(info->sha256));
}

TEST_CASE("temporary files left by a crash are swept at open") {
  test::TempDir dir;
  {
    auto store = BlobStore::open(dir.path());
    auto writer = (*store)->create();
    REQUIRE((*writer)->write("partial").ok());
    // Simulate a crash: the temporary file survives the process.
    fs::copy_file(fs::directory_iterator(dir.path() / "tmp")->path(),
                  dir.path() / "tmp" / "x.part");
  }
  CHECK(count_files(dir.path() / "tmp") == 1);
  auto reopened = BlobStore::open(dir.path());
  REQUIRE(reopened.ok());
  CHECK(count_files(dir.path()) == 0);
  CHECK((*reopened)->check_writable().ok());
}

}  // namespace
}  // namespace mh::blobs
