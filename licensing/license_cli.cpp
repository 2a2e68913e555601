#include "licensing/license_cli.h"

#include <fmt/format.h>
#include <boost/json.hpp>
#include <cstdio>
#include <ctime>
#include <memory>

#include "licensing/license.h"
#include "platform/base/crypto.h"
#include "platform/base/files.h"
#include "platform/base/time.h"

namespace mh::licensing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

int fail(const Status& status) {
  std::fprintf(stderr, "mhctl license: %s\n", status.message().c_str());
  return 1;
}

Result<KeyRing> load_ring(const std::vector<std::string>& files) {
  KeyRing ring;
  for (const std::string& file : files) {
    MH_ASSIGN_OR_RETURN(std::string text, read_small_file(file, 64 * 1024));
    auto key = parse_public_key(text);
    if (!key.ok()) return invalid_argument(file + ": " + key.status().message());
    MH_TRY(ring.add(std::move(*key)));
  }
  return ring;
}

// "2027-11-22", "2027-11-22T08:00:00Z", or Unix seconds.
Result<int64_t> parse_time(const std::string& text, std::string_view what) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos &&
      text.size() <= 12) {
    return std::stoll(text);
  }
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') {
    tm = {};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (end == nullptr || *end != '\0') {
    return invalid_argument(fmt::format(
        "{} '{}' is not a date (2027-11-22, 2027-11-22T08:00:00Z, or Unix seconds)", what, text));
  }
  return static_cast<int64_t>(timegm(&tm));
}

struct IssueOptions {
  std::string key_file, spec_file, out_file;
  std::string id, licensee, tenant, not_before, expires;
  int64_t days = 365, grace_days = 7;
  std::vector<std::string> features, pools;
  Limits limits;
};

// Terms from a JSON spec (the payload's fields; version, id and issued_at may be left out) or
// from flags.
Result<LicenseTerms> terms_from(const IssueOptions& o) {
  const int64_t now = unix_seconds();
  if (!o.spec_file.empty()) {
    MH_ASSIGN_OR_RETURN(std::string text, read_small_file(o.spec_file, 64 * 1024));
    boost::system::error_code ec;
    json::value spec = json::parse(text, ec);
    if (ec || !spec.is_object()) return invalid_argument(o.spec_file + " is not a JSON object");
    json::object& object = spec.as_object();
    if (!object.contains("version")) object["version"] = kPayloadVersion;
    if (!object.contains("issued_at")) object["issued_at"] = now;
    if (!object.contains("id")) object["id"] = "lic_" + secure_random_base64url(12);
    auto terms = decode_payload(json::serialize(spec));
    if (!terms.ok()) return invalid_argument(o.spec_file + ": " + terms.status().message());
    return terms;
  }
  LicenseTerms t;
  t.id = o.id.empty() ? "lic_" + secure_random_base64url(12) : o.id;
  t.licensee = o.licensee;
  t.tenant = o.tenant;
  t.issued_at = now;
  t.not_before = now;
  if (!o.not_before.empty()) {
    MH_ASSIGN_OR_RETURN(t.not_before, parse_time(o.not_before, "--not-before"));
  }
  t.expires_at = t.not_before + o.days * 86400;
  if (!o.expires.empty()) {
    MH_ASSIGN_OR_RETURN(t.expires_at, parse_time(o.expires, "--expires"));
  }
  t.grace_seconds = o.grace_days * 86400;
  t.features = {o.features.begin(), o.features.end()};
  t.limits = o.limits;
  t.pools = o.pools;
  MH_TRY(validate_terms(t));
  return t;
}

}  // namespace

void add_license_commands(CLI::App& app, int* exit_code) {
  auto* license = app.add_subcommand("license", "issue and check licenses (offline; staff)");
  license->require_subcommand(1);

  // keygen
  auto* keygen = license->add_subcommand("keygen", "make an Ed25519 signing key pair");
  auto key_id = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>(".");
  keygen->add_option("--key-id", *key_id, "the key's name, e.g. staff-2026")->required();
  keygen->add_option("--out-dir", *out_dir, "where to write <id>.key and <id>.pub")
      ->capture_default_str();
  keygen->callback([=] {
    auto key = generate_key(*key_id);
    if (!key.ok()) return void(*exit_code = fail(key.status()));
    fs::create_directories(*out_dir);
    fs::path priv = fs::path(*out_dir) / (*key_id + ".key");
    fs::path pub = fs::path(*out_dir) / (*key_id + ".pub");
    PublicKey public_key = key->public_key().value();
    if (Status s = write_new_file(priv, key->encode(), 0600); !s.ok()) {
      return void(*exit_code = fail(s));
    }
    if (Status s = write_new_file(pub, encode_public_key(public_key), 0644); !s.ok()) {
      fs::remove(priv);
      return void(*exit_code = fail(s));
    }
    std::printf(
        "private key  %s (mode 0600: keep it offline)\npublic key   %s (give it to "
        "macrohardd --license-public-key and to SDK users)\nfingerprint  %s\n",
        priv.c_str(), pub.c_str(), public_key.fingerprint().c_str());
    *exit_code = 0;
  });

  // issue
  auto* issue = license->add_subcommand("issue", "sign a license from flags or a JSON spec");
  auto io = std::make_shared<IssueOptions>();
  issue->add_option("--key", io->key_file, "the private key file")->required();
  issue->add_option("--spec", io->spec_file, "JSON spec with the payload's fields");
  issue->add_option("--out", io->out_file, "write the license here (default: stdout)");
  issue->add_option("--id", io->id, "license id (default: random lic_…)");
  issue->add_option("--licensee", io->licensee, "the company's name");
  issue->add_option("--tenant", io->tenant, "the tenant it entitles");
  issue->add_option("--not-before", io->not_before, "start (date or Unix time; default now)");
  issue->add_option("--days", io->days, "validity in days from the start")->capture_default_str();
  issue->add_option("--expires", io->expires, "end (date or Unix time), instead of --days");
  issue->add_option("--grace-days", io->grace_days, "days after expiry before work stops")
      ->capture_default_str();
  issue->add_option("--feature", io->features, "train, deploy, custom_models, multi_gpu, …");
  issue->add_option("--max-gpus", io->limits.max_gpus)->capture_default_str();
  issue->add_option("--gpu-hours-per-month", io->limits.gpu_hours_per_month)->capture_default_str();
  issue->add_option("--max-deployments", io->limits.max_deployments)->capture_default_str();
  issue->add_option("--max-model-params", io->limits.max_model_params)->capture_default_str();
  issue->add_option("--seats", io->limits.seats)->capture_default_str();
  issue->add_option("--pool", io->pools, "allowed pools (default: all)");
  issue->callback([=] {
    auto key_text = read_small_file(io->key_file, 64 * 1024);
    if (!key_text.ok()) return void(*exit_code = fail(key_text.status()));
    auto key = parse_private_key(*key_text);
    if (!key.ok()) return void(*exit_code = fail(key.status()));
    auto terms = terms_from(*io);
    if (!terms.ok()) return void(*exit_code = fail(terms.status()));
    auto text = issue_license(*terms, *key);
    if (!text.ok()) return void(*exit_code = fail(text.status()));
    if (io->out_file.empty()) {
      std::fputs(text->c_str(), stdout);
    } else if (Status s = write_new_file(io->out_file, *text, 0644); !s.ok()) {
      return void(*exit_code = fail(s));
    } else {
      std::fprintf(stderr, "issued %s for %s (tenant %s), signed with key %s, to %s\n",
                   terms->id.c_str(), terms->licensee.c_str(), terms->tenant.c_str(),
                   key->id().c_str(), io->out_file.c_str());
    }
    *exit_code = 0;
  });

  // inspect and verify
  auto file = std::make_shared<std::string>();
  auto keys = std::make_shared<std::vector<std::string>>();
  auto* inspect =
      license->add_subcommand("inspect", "show a license in plain words, and whether it is valid");
  inspect->add_option("file", *file, "the license file")->required();
  inspect->add_option("--public-key", *keys, "trusted public key files, to check the signature");
  auto* verify =
      license->add_subcommand("verify", "check a license against public keys (exit 0 if in force)");
  verify->add_option("file", *file, "the license file")->required();
  verify->add_option("--public-key", *keys, "trusted public key files")->required();

  auto check = [=](bool show) {
    auto text = read_small_file(*file, 64 * 1024);
    if (!text.ok()) return fail(text.status());
    auto ring = load_ring(*keys);
    if (!ring.ok()) return fail(ring.status());
    const int64_t now = unix_seconds();
    auto claimed = read_unverified(*text);
    if (show) {
      if (!claimed.ok()) {
        std::printf("%s: not a readable license: %s\n", file->c_str(),
                    claimed.status().message().c_str());
        return 1;
      }
      std::printf("%ssigned by   %s\n", describe(claimed->terms, now).c_str(),
                  claimed->key_id.c_str());
    }
    if (keys->empty()) {
      std::printf("signature   not checked (give --public-key to check it)\n");
      return 0;
    }
    auto verified = verify_license(*text, *ring);
    Status in_force = verified.ok() ? check_in_force(verified->terms, now) : verified.status();
    std::printf("%s%s\n", show ? "verdict     " : "",
                in_force.ok() ? "valid: the signature checks and the license is in force"
                              : ("INVALID: " + in_force.message()).c_str());
    return in_force.ok() ? 0 : 1;
  };
  inspect->callback([=] { *exit_code = check(true); });
  verify->callback([=] { *exit_code = check(false); });
}

}  // namespace mh::licensing
