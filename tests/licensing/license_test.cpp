#include "licensing/license.h"

#include <doctest/doctest.h>

#include "licensing/armor.h"
#include "platform/base/crypto.h"

namespace mh::licensing {
namespace {

constexpr int64_t kNow = 1'795'000'000;  // 2026-11-18
constexpr int64_t kDay = 86400;

LicenseTerms acme() {
  LicenseTerms t;
  t.id = "lic_acme_2026";
  t.licensee = "Acme Corporation";
  t.tenant = "acme";
  t.issued_at = kNow - kDay;
  t.not_before = kNow - kDay;
  t.expires_at = kNow + 365 * kDay;
  t.grace_seconds = 7 * kDay;
  t.features = {"train", "deploy", "custom_models"};
  t.limits = {8, 1000, 4, 1'000'000'000, 10};
  t.pools = {"default"};
  return t;
}

PrivateKey key(const char* id) { return generate_key(id).value(); }

KeyRing ring_of(const PrivateKey& k) {
  KeyRing ring;
  REQUIRE(ring.add(k.public_key().value()).ok());
  return ring;
}

// A license over arbitrary payload bytes, to test what the verifier does with them.
std::string sign_raw(const PrivateKey& k, const std::string& payload,
                     std::string_view domain = kSignatureDomain) {
  auto sig = k.sign(std::string(domain) + payload).value();
  return encode_armor("LICENSE", {{"Key-Id", k.id()},
                                  {"Payload", base64_encode(payload.data(), payload.size())},
                                  {"Signature", base64_encode(sig.data(), sig.size())}});
}

TEST_CASE("a license issued with a key verifies with its public key, terms intact") {
  PrivateKey k = key("staff-2026");
  std::string text = issue_license(acme(), k).value();
  CHECK(text.starts_with("-----BEGIN MACROHARD LICENSE-----\nKey-Id: staff-2026\nPayload: "));
  auto license = verify_license(text, ring_of(k));
  REQUIRE(license.ok());
  CHECK(license->key_id == "staff-2026");
  CHECK(license->terms.id == "lic_acme_2026");
  CHECK(license->terms.tenant == "acme");
  CHECK(license->terms.limits.seats == 10);
  CHECK(license->terms.limits.max_model_params == 1'000'000'000);
  CHECK(license->terms.has_feature("train"));
  CHECK_FALSE(license->terms.has_feature("multi_gpu"));
  CHECK(license->terms.pools == std::vector<std::string>{"default"});
  CHECK(license->payload == encode_payload(acme()));
}

TEST_CASE("every single-byte change of a license file is rejected") {
  PrivateKey k = key("staff-2026");
  KeyRing ring = ring_of(k);
  const std::string text = issue_license(acme(), k).value();
  REQUIRE(verify_license(text, ring).ok());
  int checked = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    for (unsigned char flip : {0x01, 0x20, 0x80}) {
      std::string changed = text;
      changed[i] = static_cast<char>(static_cast<unsigned char>(changed[i]) ^ flip);
      CAPTURE(i);
      CAPTURE(flip);
      CHECK_FALSE(verify_license(changed, ring).ok());
      ++checked;
    }
  }
  // Truncation and appending are changes too.
  CHECK_FALSE(verify_license(text.substr(0, text.size() - 1), ring).ok());
  CHECK_FALSE(verify_license(text + "\n", ring).ok());
  CHECK_FALSE(verify_license("\n" + text, ring).ok());
  CHECK(checked == static_cast<int>(text.size()) * 3);
}

TEST_CASE("a license signed by another key with the same id is rejected as altered") {
  PrivateKey real = key("staff-2026");
  PrivateKey impostor = key("staff-2026");
  std::string forged = issue_license(acme(), impostor).value();
  auto result = verify_license(forged, ring_of(real));
  CHECK(result.status().code() == Code::kPermissionDenied);
  CHECK(result.status().message().find("signature does not match key 'staff-2026'") !=
        std::string::npos);
}

TEST_CASE("a license signed with an unknown key id is rejected, naming the trusted keys") {
  PrivateKey other = key("somebody-else");
  auto result = verify_license(issue_license(acme(), other).value(), ring_of(key("staff-2026")));
  CHECK(result.status().code() == Code::kPermissionDenied);
  CHECK(result.status().message().find("'somebody-else', which is not a trusted key") !=
        std::string::npos);
  CHECK(result.status().message().find("trusted: staff-2026") != std::string::npos);
  CHECK(verify_license(issue_license(acme(), other).value(), KeyRing{})
            .status()
            .message()
            .find("none configured") != std::string::npos);
}

TEST_CASE("a signature made without the domain prefix does not verify") {
  PrivateKey k = key("staff-2026");
  std::string text = sign_raw(k, encode_payload(acme()), "");
  CHECK(verify_license(text, ring_of(k)).status().code() == Code::kPermissionDenied);
  CHECK(verify_license(sign_raw(k, encode_payload(acme())), ring_of(k)).ok());
}

TEST_CASE("payloads are read strictly: missing, unknown, mistyped fields and newer versions") {
  PrivateKey k = key("staff-2026");
  KeyRing ring = ring_of(k);
  std::string good = encode_payload(acme());
  auto with = [&](std::string from, std::string to) {
    std::string p = good;
    size_t at = p.find(from);
    REQUIRE(at != std::string::npos);
    p.replace(at, from.size(), to);
    return verify_license(sign_raw(k, p), ring);
  };
  CHECK(with("\"version\":1", "\"version\":2").status().message().find("upgrade") !=
        std::string::npos);
  CHECK(with("\"tenant\":\"acme\",", "").status().message().find("missing field 'tenant'") !=
        std::string::npos);
  CHECK(with("\"tenant\":\"acme\"", "\"tenant\":\"acme\",\"extra\":1")
            .status()
            .message()
            .find("unknown field 'extra'") != std::string::npos);
  CHECK(with("\"seats\":10", "\"seats\":10.5").status().message().find("limits.seats") !=
        std::string::npos);
  CHECK(with("\"seats\":10", "\"seats\":-1").status().code() == Code::kInvalidArgument);
  CHECK(with("\"seats\":10", "\"seats\":10,\"cpus\":1").status().message().find("limits.cpus") !=
        std::string::npos);
  CHECK(with("\"features\":[", "\"features\":[\"train\",").status().message().find("twice") !=
        std::string::npos);
  CHECK(with("\"tenant\":\"acme\"", "\"tenant\":\"ACME corp\"").status().param() == "tenant");
  CHECK_FALSE(verify_license(sign_raw(k, "not json"), ring).ok());
  CHECK_FALSE(verify_license(sign_raw(k, "[]"), ring).ok());
}

TEST_CASE("standing in time: not yet valid, valid, grace, expired — each refusal says why") {
  LicenseTerms t = acme();
  CHECK(standing_at(t, t.not_before - 1) == Standing::kNotYetValid);
  CHECK(standing_at(t, t.not_before) == Standing::kValid);
  CHECK(standing_at(t, t.expires_at - 1) == Standing::kValid);
  CHECK(standing_at(t, t.expires_at) == Standing::kGrace);
  CHECK(standing_at(t, t.expires_at + t.grace_seconds) == Standing::kExpired);

  Status early = check_in_force(t, t.not_before - 10);
  CHECK(early.code() == Code::kPermissionDenied);
  CHECK(early.message().find("lic_acme_2026 is not valid yet") != std::string::npos);
  CHECK(check_in_force(t, t.expires_at + 10).ok());  // grace: still in force
  Status late = check_in_force(t, t.expires_at + t.grace_seconds);
  CHECK(late.code() == Code::kPermissionDenied);
  CHECK(late.message().find("lic_acme_2026 expired at") != std::string::npos);
  CHECK(late.message().find("grace period ended") != std::string::npos);
  CHECK(describe(t, kNow).find("status      valid, expires in 365 days") != std::string::npos);
}

TEST_CASE("rotation: a retired key's licenses verify to expiry — ones it signs later do not") {
  PrivateKey old_key = key("staff-2025");
  PrivateKey new_key = key("staff-2026");
  KeyRing ring;
  PublicKey retired = old_key.public_key().value();
  retired.retired_at = kNow;
  REQUIRE(ring.add(retired).ok());
  REQUIRE(ring.add(new_key.public_key().value()).ok());

  LicenseTerms before = acme();
  before.issued_at = kNow - 30 * kDay;
  auto old_license = verify_license(issue_license(before, old_key).value(), ring);
  REQUIRE(old_license.ok());
  CHECK(check_in_force(old_license->terms, kNow + 100 * kDay).ok());

  LicenseTerms after = acme();
  after.issued_at = kNow + kDay;
  auto late = verify_license(issue_license(after, old_key).value(), ring);
  CHECK(late.status().code() == Code::kPermissionDenied);
  CHECK(late.status().message().find("after its key 'staff-2025' was retired") !=
        std::string::npos);
  CHECK(verify_license(issue_license(after, new_key).value(), ring).ok());
}

TEST_CASE("key files round-trip — the ring refuses one id for two keys") {
  PrivateKey k = key("staff-2026");
  auto again = parse_private_key(k.encode());
  REQUIRE(again.ok());
  CHECK(again->public_key()->key == k.public_key()->key);
  PublicKey pub = k.public_key().value();
  pub.retired_at = kNow;
  auto parsed = parse_public_key(encode_public_key(pub));
  REQUIRE(parsed.ok());
  CHECK(parsed->key == pub.key);
  CHECK(parsed->retired_at == kNow);
  CHECK(parsed->fingerprint().starts_with("SHA256:"));
  KeyRing ring;
  CHECK(ring.add(pub).ok());
  CHECK(ring.add(pub).ok());  // the same key again is fine
  CHECK(ring.add(key("staff-2026").public_key().value()).code() == Code::kConflict);
  CHECK(generate_key("Bad Id").status().code() == Code::kInvalidArgument);
  CHECK_FALSE(parse_private_key(encode_public_key(pub)).ok());
  CHECK_FALSE(parse_public_key("-----BEGIN MACROHARD PUBLIC KEY-----\nKey-Id: a\nKey: AAAA\n"
                               "-----END MACROHARD PUBLIC KEY-----\n")
                  .ok());
}

}  // namespace
}  // namespace mh::licensing
