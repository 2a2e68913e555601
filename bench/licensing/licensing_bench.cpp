// licensing_bench: how fast licenses are checked.
//   signature   Ed25519 verifications per second through licensing::verify_signature
//   license     whole license files verified per second (armor, base64, signature, JSON)
//   entitlement one cached Entitlements::check, in nanoseconds
// Prints "name value unit" lines for bench/licensing/run.sh.
#include <chrono>
#include <cstdio>
#include <string>

#include "licensing/entitlements.h"
#include "licensing/license.h"
#include "platform/base/time.h"

using Clock = std::chrono::steady_clock;
using namespace mh::licensing;

// Runs fn repeatedly for about `seconds`; returns calls per second.
template <typename Fn>
double rate(double seconds, Fn&& fn) {
  auto start = Clock::now();
  long calls = 0;
  double elapsed = 0;
  do {
    for (int i = 0; i < 64; ++i) fn();
    calls += 64;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(calls) / elapsed;
}

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::stod(argv[1]) : 3.0;
  PrivateKey key = generate_key("bench").value();
  PublicKey pub = key.public_key().value();
  KeyRing ring;
  (void)ring.add(pub);

  // The same message size as `openssl speed ed25519` signs (20 bytes).
  const std::string message(20, 'm');
  Ed25519Signature signature = key.sign(message).value();
  volatile bool sink = true;
  double verifies = rate(seconds, [&] { sink = verify_signature(pub, message, signature); });
  if (!sink) return 1;

  const int64_t now = mh::unix_seconds();
  LicenseTerms t;
  t.id = "lic_bench";
  t.licensee = "Bench Corp";
  t.tenant = "bench";
  t.issued_at = t.not_before = now - 60;
  t.expires_at = now + 86400;
  t.features = {"train", "deploy"};
  t.limits = {8, 100, 2, 1000000, 4};
  const std::string text = issue_license(t, key).value();
  double licenses = rate(seconds, [&] { sink = verify_license(text, ring).ok(); });

  Entitlements entitlements;
  Entitlement e;
  e.license = verify_license(text, ring).value();
  entitlements.put(e);
  for (int i = 0; i < 1000; ++i) {  // a platform with many tenants
    Entitlement other = e;
    other.license.terms.tenant = "tenant-" + std::to_string(i);
    entitlements.put(other);
  }
  double checks = rate(seconds, [&] { sink = entitlements.check("bench", "train", now).ok(); });

  std::printf("signature %.0f verify/s\n", verifies);
  std::printf("license %.0f verify/s\n", licenses);
  std::printf("entitlement %.1f ns\n", 1e9 / checks);
  return sink ? 0 : 1;
}
