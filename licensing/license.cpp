#include "licensing/license.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "licensing/armor.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::licensing {

namespace json = boost::json;

namespace {

constexpr std::string_view kKind = "LICENSE";
constexpr int64_t kMaxGraceSeconds = 366 * 86400;

bool is_name(std::string_view s, size_t max, bool allow_upper) {
  if (s.empty() || s.size() > max) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (allow_upper && c >= 'A' && c <= 'Z') ||
              (i > 0 && (c == '-' || c == '_' || c == '.'));
    if (!ok) return false;
  }
  return true;
}

// Strict field access for the payload decoder.
class Fields {
 public:
  explicit Fields(const json::object& object, std::string where)
      : object_(object), where_(std::move(where)) {}

  Result<std::string> string(std::string_view key) {
    MH_ASSIGN_OR_RETURN(const json::value* v, get(key));
    if (!v->is_string()) return bad(key, "a string");
    return std::string(v->as_string());
  }
  Result<int64_t> integer(std::string_view key) {
    MH_ASSIGN_OR_RETURN(const json::value* v, get(key));
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
      return static_cast<int64_t>(v->as_uint64());
    }
    return bad(key, "an integer");
  }
  Result<std::vector<std::string>> strings(std::string_view key) {
    MH_ASSIGN_OR_RETURN(const json::value* v, get(key));
    if (!v->is_array()) return bad(key, "an array of strings");
    std::vector<std::string> out;
    for (const auto& item : v->as_array()) {
      if (!item.is_string()) return bad(key, "an array of strings");
      out.emplace_back(item.as_string());
    }
    return out;
  }
  Result<const json::object*> object(std::string_view key) {
    MH_ASSIGN_OR_RETURN(const json::value* v, get(key));
    if (!v->is_object()) return bad(key, "an object");
    return &v->as_object();
  }
  // Every key of the object must have been read: unknown fields are refused.
  Status no_others() const {
    for (const auto& [key, value] : object_) {
      if (!seen_.contains(std::string(key))) {
        return invalid_argument(
            fmt::format("license payload: unknown field '{}{}'", where_, std::string_view(key)));
      }
    }
    return {};
  }

 private:
  Result<const json::value*> get(std::string_view key) {
    seen_.insert(std::string(key));
    const json::value* v = object_.if_contains(key);
    if (v == nullptr) {
      return invalid_argument(fmt::format("license payload: missing field '{}{}'", where_, key));
    }
    return v;
  }
  Status bad(std::string_view key, std::string_view type) const {
    return invalid_argument(fmt::format("license payload: '{}{}' must be {}", where_, key, type));
  }

  const json::object& object_;
  std::string where_;
  std::set<std::string> seen_;
};

std::string when(int64_t t) { return rfc3339(t); }

std::string span(int64_t seconds) {
  seconds = seconds < 0 ? -seconds : seconds;
  if (seconds >= 2 * 86400) return fmt::format("{} days", seconds / 86400);
  if (seconds >= 2 * 3600) return fmt::format("{} hours", seconds / 3600);
  if (seconds >= 120) return fmt::format("{} minutes", seconds / 60);
  return fmt::format("{} seconds", seconds);
}

}  // namespace

Status validate_terms(const LicenseTerms& t) {
  if (!is_name(t.id, 100, true)) {
    return invalid_argument("license id must be 1 to 100 of A-Z, a-z, 0-9, '.', '_', '-'", "id");
  }
  if (t.licensee.empty() || t.licensee.size() > 200) {
    return invalid_argument("licensee must be 1 to 200 characters", "licensee");
  }
  if (!is_name(t.tenant, 63, false)) {
    return invalid_argument("tenant must be 1 to 63 of a-z, 0-9, '.', '_', '-'", "tenant");
  }
  if (t.issued_at <= 0 || t.not_before <= 0 || t.expires_at <= 0) {
    return invalid_argument("issued_at, not_before and expires_at must be positive Unix times");
  }
  if (t.not_before >= t.expires_at) {
    return invalid_argument("not_before must come before expires_at", "expires_at");
  }
  if (t.grace_seconds < 0 || t.grace_seconds > kMaxGraceSeconds) {
    return invalid_argument("grace_seconds must be from 0 to 366 days", "grace_seconds");
  }
  for (const std::string& f : t.features) {
    if (!is_name(f, 40, false)) return invalid_argument(fmt::format("bad feature name '{}'", f));
  }
  const Limits& l = t.limits;
  for (int64_t v :
       {l.max_gpus, l.gpu_hours_per_month, l.max_deployments, l.max_model_params, l.seats}) {
    if (v < 0) return invalid_argument("limits must not be negative", "limits");
  }
  std::set<std::string> pools;
  for (const std::string& p : t.pools) {
    if (!is_name(p, 63, false)) return invalid_argument(fmt::format("bad pool name '{}'", p));
    if (!pools.insert(p).second) return invalid_argument(fmt::format("pool '{}' listed twice", p));
  }
  return {};
}

json::object terms_json(const LicenseTerms& t) {
  json::array features;
  for (const auto& f : t.features) features.emplace_back(f);
  json::array pools;
  for (const auto& p : t.pools) pools.emplace_back(p);
  return {
      {"id", t.id},
      {"licensee", t.licensee},
      {"tenant", t.tenant},
      {"issued_at", t.issued_at},
      {"not_before", t.not_before},
      {"expires_at", t.expires_at},
      {"grace_seconds", t.grace_seconds},
      {"features", std::move(features)},
      {"limits", json::object{{"max_gpus", t.limits.max_gpus},
                              {"gpu_hours_per_month", t.limits.gpu_hours_per_month},
                              {"max_deployments", t.limits.max_deployments},
                              {"max_model_params", t.limits.max_model_params},
                              {"seats", t.limits.seats}}},
      {"pools", std::move(pools)},
  };
}

std::string encode_payload(const LicenseTerms& t) {
  json::object payload{{"version", kPayloadVersion}};
  for (auto& [key, value] : terms_json(t)) payload.emplace(key, std::move(value));
  return json::serialize(payload);
}

Result<LicenseTerms> decode_payload(std::string_view payload) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 8;
  json::value value = json::parse(payload, ec, {}, options);
  if (ec || !value.is_object()) return invalid_argument("license payload is not a JSON object");
  Fields f(value.as_object(), "");
  MH_ASSIGN_OR_RETURN(int64_t version, f.integer("version"));
  if (version != kPayloadVersion) {
    return invalid_argument(fmt::format(
        "license payload version {} is not understood by this software (it reads version {}); "
        "upgrade Macrohard",
        version, kPayloadVersion));
  }
  LicenseTerms t;
  MH_ASSIGN_OR_RETURN(t.id, f.string("id"));
  MH_ASSIGN_OR_RETURN(t.licensee, f.string("licensee"));
  MH_ASSIGN_OR_RETURN(t.tenant, f.string("tenant"));
  MH_ASSIGN_OR_RETURN(t.issued_at, f.integer("issued_at"));
  MH_ASSIGN_OR_RETURN(t.not_before, f.integer("not_before"));
  MH_ASSIGN_OR_RETURN(t.expires_at, f.integer("expires_at"));
  MH_ASSIGN_OR_RETURN(t.grace_seconds, f.integer("grace_seconds"));
  MH_ASSIGN_OR_RETURN(auto features, f.strings("features"));
  for (auto& feature : features) {
    if (!t.features.insert(std::move(feature)).second) {
      return invalid_argument("license payload: a feature is listed twice");
    }
  }
  MH_ASSIGN_OR_RETURN(const json::object* limits, f.object("limits"));
  Fields l(*limits, "limits.");
  MH_ASSIGN_OR_RETURN(t.limits.max_gpus, l.integer("max_gpus"));
  MH_ASSIGN_OR_RETURN(t.limits.gpu_hours_per_month, l.integer("gpu_hours_per_month"));
  MH_ASSIGN_OR_RETURN(t.limits.max_deployments, l.integer("max_deployments"));
  MH_ASSIGN_OR_RETURN(t.limits.max_model_params, l.integer("max_model_params"));
  MH_ASSIGN_OR_RETURN(t.limits.seats, l.integer("seats"));
  MH_TRY(l.no_others());
  MH_ASSIGN_OR_RETURN(t.pools, f.strings("pools"));
  MH_TRY(f.no_others());
  MH_TRY(validate_terms(t));
  return t;
}

Result<std::string> issue_license(const LicenseTerms& terms, const PrivateKey& key) {
  MH_TRY(validate_terms(terms));
  std::string payload = encode_payload(terms);
  std::string message = std::string(kSignatureDomain) + payload;
  MH_ASSIGN_OR_RETURN(Ed25519Signature signature, key.sign(message));
  return encode_armor(kKind, {{"Key-Id", key.id()},
                              {"Payload", base64_encode(payload.data(), payload.size())},
                              {"Signature", base64_encode(signature.data(), signature.size())}});
}

namespace {
struct Unpacked {
  License license;
  std::string signature;
};

Result<Unpacked> unpack(std::string_view text) {
  static constexpr std::string_view kNames[] = {"Key-Id", "Payload", "Signature"};
  MH_ASSIGN_OR_RETURN(auto fields, decode_armor(text, kKind, kNames));
  Unpacked out;
  out.license.key_id = fields[0];
  out.license.text = std::string(text);
  auto payload = base64_decode(fields[1]);
  if (!payload) return invalid_argument("license file: Payload is not canonical base64");
  out.license.payload = std::move(*payload);
  out.signature = fields[2];
  return out;
}
}  // namespace

Result<License> read_unverified(std::string_view text) {
  MH_ASSIGN_OR_RETURN(Unpacked unpacked, unpack(text));
  MH_ASSIGN_OR_RETURN(unpacked.license.terms, decode_payload(unpacked.license.payload));
  return std::move(unpacked.license);
}

Result<License> verify_license(std::string_view text, const KeyRing& keys) {
  MH_ASSIGN_OR_RETURN(Unpacked unpacked, unpack(text));
  License& license = unpacked.license;
  const std::string& payload = license.payload;
  auto signature_bytes = base64_decode(unpacked.signature);
  if (!signature_bytes || signature_bytes->size() != 64) {
    return invalid_argument("license file: Signature is not 64 bytes of canonical base64");
  }
  const PublicKey* key = keys.find(license.key_id);
  if (key == nullptr) {
    std::string trusted;
    for (const auto& id : keys.ids()) trusted += (trusted.empty() ? "" : ", ") + id;
    return permission_denied(fmt::format(
        "license rejected: it is signed with key '{}', which is not a trusted key (trusted: {})",
        license.key_id, trusted.empty() ? "none configured" : trusted));
  }
  Ed25519Signature signature{};
  std::copy(signature_bytes->begin(), signature_bytes->end(), signature.begin());
  if (!verify_signature(*key, std::string(kSignatureDomain) + payload, signature)) {
    return permission_denied(fmt::format(
        "license rejected: its signature does not match key '{}': the file was altered, or it "
        "was not signed by that key",
        license.key_id));
  }
  MH_ASSIGN_OR_RETURN(license.terms, decode_payload(payload));
  if (key->retired_at && license.terms.issued_at > *key->retired_at) {
    return permission_denied(fmt::format(
        "license {} rejected: it was issued at {}, after its key '{}' was retired at {}",
        license.terms.id, when(license.terms.issued_at), key->id, when(*key->retired_at)));
  }
  return std::move(license);
}

Standing standing_at(const LicenseTerms& t, int64_t now) {
  if (now < t.not_before) return Standing::kNotYetValid;
  if (now < t.expires_at) return Standing::kValid;
  if (now < t.expires_at + t.grace_seconds) return Standing::kGrace;
  return Standing::kExpired;
}

std::string_view standing_name(Standing standing) {
  switch (standing) {
    case Standing::kNotYetValid:
      return "not yet valid";
    case Standing::kValid:
      return "valid";
    case Standing::kGrace:
      return "in its grace period";
    case Standing::kExpired:
      return "expired";
  }
  return "unknown";
}

Status check_in_force(const LicenseTerms& t, int64_t now) {
  switch (standing_at(t, now)) {
    case Standing::kValid:
    case Standing::kGrace:
      return {};
    case Standing::kNotYetValid:
      return permission_denied(
          fmt::format("license {} is not valid yet: it starts at {}", t.id, when(t.not_before)));
    case Standing::kExpired:
      return permission_denied(
          fmt::format("license {} expired at {}{}; ask your Macrohard account team for a renewal",
                      t.id, when(t.expires_at),
                      t.grace_seconds > 0 ? fmt::format(" and its grace period ended at {}",
                                                        when(t.expires_at + t.grace_seconds))
                                          : ""));
  }
  return internal_error("unreachable");
}

std::string describe(const LicenseTerms& t, int64_t now) {
  Standing s = standing_at(t, now);
  std::string status(standing_name(s));
  switch (s) {
    case Standing::kNotYetValid:
      status += fmt::format(", starts in {}", span(t.not_before - now));
      break;
    case Standing::kValid:
      status += fmt::format(", expires in {}", span(t.expires_at - now));
      break;
    case Standing::kGrace:
      status += fmt::format(": expired {} ago; new work refused in {}", span(now - t.expires_at),
                            span(t.expires_at + t.grace_seconds - now));
      break;
    case Standing::kExpired:
      status += fmt::format(" {} ago", span(now - t.expires_at));
      break;
  }
  std::string features;
  for (const auto& f : t.features) features += (features.empty() ? "" : ", ") + f;
  std::string pools;
  for (const auto& p : t.pools) pools += (pools.empty() ? "" : ", ") + p;
  const Limits& l = t.limits;
  return fmt::format(
      "license     {}\nlicensee    {}\ntenant      {}\nstatus      {}\nissued      {}\n"
      "valid from  {}\nexpires     {} (grace {})\nfeatures    {}\n"
      "limits      max_gpus {}, gpu_hours_per_month {}, max_deployments {}, "
      "max_model_params {}, seats {}\npools       {}\n",
      t.id, t.licensee, t.tenant, status, when(t.issued_at), when(t.not_before), when(t.expires_at),
      t.grace_seconds > 0 ? span(t.grace_seconds) : "none", features.empty() ? "none" : features,
      l.max_gpus, l.gpu_hours_per_month, l.max_deployments, l.max_model_params, l.seats,
      pools.empty() ? "all" : pools);
}

}  // namespace mh::licensing
