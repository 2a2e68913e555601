// License: what a licensee may do on the platform, signed by platform staff.
//
// A license file (docs/license-format.md) is armored text holding the signing key's id, the
// payload (a JSON document, base64-encoded so its exact bytes travel unchanged) and an Ed25519
// signature over kSignatureDomain followed by those payload bytes. Verifiers check the signature
// over the bytes as received and only then parse them: nothing is ever re-serialised to check.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "licensing/keys.h"
#include "platform/base/status.h"

namespace mh::licensing {

// Prefixed to the payload before signing, so that a license signature can never be replayed as
// a signature over anything else made with the same key.
inline constexpr std::string_view kSignatureDomain = "macrohard license v1\n";
inline constexpr int kPayloadVersion = 1;

struct Limits {
  int64_t max_gpus = 0;
  int64_t gpu_hours_per_month = 0;
  int64_t max_deployments = 0;
  int64_t max_model_params = 0;
  int64_t seats = 0;
};

// The payload's fields. Times are Unix seconds.
struct LicenseTerms {
  std::string id;        // "lic_…"
  std::string licensee;  // the company, for people
  std::string tenant;    // the platform tenant it entitles
  int64_t issued_at = 0;
  int64_t not_before = 0;
  int64_t expires_at = 0;
  int64_t grace_seconds = 0;  // after expiry, running work continues; new work is refused
  std::set<std::string> features;
  Limits limits;
  std::vector<std::string> pools;  // empty: every pool

  bool has_feature(std::string_view feature) const {
    return features.contains(std::string(feature));
  }
};

// A license whose signature has been checked.
struct License {
  LicenseTerms terms;
  std::string key_id;
  std::string payload;  // the exact signed bytes
  std::string text;     // the whole file
};

// Checks the terms for sense (ids, times in order, non-negative limits, known field shapes).
Status validate_terms(const LicenseTerms& terms);
// The terms as JSON: the payload's fields without "version" (also how the API shows them).
boost::json::object terms_json(const LicenseTerms& terms);
// The canonical payload bytes for terms (what `mhctl license issue` signs).
std::string encode_payload(const LicenseTerms& terms);
// Parses payload bytes strictly: every field present and of its type, nothing unknown.
Result<LicenseTerms> decode_payload(std::string_view payload);

// Signs terms into a license file.
Result<std::string> issue_license(const LicenseTerms& terms, const PrivateKey& key);

// Parses a license file and checks its signature against the key ring. Errors name the cause:
// not a license file, unknown key id, signature mismatch (altered or another key), key retired
// before the license was issued, malformed payload.
Result<License> verify_license(std::string_view text, const KeyRing& keys);

// Reads a license file's key id and terms WITHOUT checking its signature: for showing what a
// file claims (`mhctl license inspect`), never for deciding anything.
Result<License> read_unverified(std::string_view text);

// Where a license stands at a moment.
enum class Standing { kNotYetValid, kValid, kGrace, kExpired };
Standing standing_at(const LicenseTerms& terms, int64_t now);
std::string_view standing_name(Standing standing);

// OK while the license allows new work at `now` (valid or in grace); otherwise
// permission_denied with a message naming the license and the reason.
Status check_in_force(const LicenseTerms& terms, int64_t now);

// A plain-words description for `mhctl license inspect`.
std::string describe(const LicenseTerms& terms, int64_t now);

}  // namespace mh::licensing
