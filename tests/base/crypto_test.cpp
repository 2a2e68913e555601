#include "platform/base/crypto.h"

#include <doctest/doctest.h>

#include <set>

namespace mh {
namespace {

TEST_CASE("SHA-256 matches the FIPS 180-2 test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 incremental;
  incremental.update("a");
  incremental.update("bc");
  CHECK(hex_encode(incremental.finish()) == sha256_hex("abc"));
}

TEST_CASE("base64url encodes without padding, RFC 4648 vectors") {
  auto enc = [](std::string_view s) { return base64url_encode(s.data(), s.size()); };
  CHECK(enc("") == "");
  CHECK(enc("f") == "Zg");
  CHECK(enc("fo") == "Zm8");
  CHECK(enc("foo") == "Zm9v");
  CHECK(enc("foob") == "Zm9vYg");
  CHECK(enc("fooba") == "Zm9vYmE");
  CHECK(enc("foobar") == "Zm9vYmFy");
  CHECK(enc("\xfb\xff") == "-_8");
}

TEST_CASE("secure random tokens do not repeat and have the asked length") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string token = secure_random_base64url(32);
    CHECK(token.size() == 43);
    seen.insert(token);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("constant_time_equal compares contents and lengths") {
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
  CHECK(constant_time_equal("", ""));
}

}  // namespace
}  // namespace mh

namespace mh {
namespace {

TEST_CASE("base64 decodes only canonical text") {
  auto dec = [](std::string_view s) { return base64_decode(s); };
  CHECK(dec("") == "");
  CHECK(dec("Zg==") == "f");
  CHECK(dec("Zm8=") == "fo");
  CHECK(dec("Zm9vYmFy") == "foobar");
  CHECK(base64_encode("foob", 4) == "Zm9vYg==");
  CHECK_FALSE(dec("Zh==").has_value());  // unused bits set
  CHECK_FALSE(dec("Zm9=").has_value());
  CHECK_FALSE(dec("Zg=").has_value());
  CHECK_FALSE(dec("Zg").has_value());
  CHECK_FALSE(dec("Z===").has_value());
  CHECK_FALSE(dec("Zm9v\n").has_value());
  CHECK_FALSE(dec("Zm 9").has_value());
  CHECK_FALSE(dec("Zg==Zg==").has_value());
  CHECK_FALSE(dec("-_8A").has_value());  // the URL alphabet is not this one
  for (int n = 0; n < 40; ++n) {
    std::string bytes(n, '\0');
    for (int i = 0; i < n; ++i) bytes[i] = static_cast<char>(i * 37 + n);
    CHECK(dec(base64_encode(bytes.data(), bytes.size())) == bytes);
  }
}

}  // namespace
}  // namespace mh
