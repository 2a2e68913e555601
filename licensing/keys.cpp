#include "licensing/keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fmt/format.h>
#include <memory>

#include "licensing/armor.h"
#include "platform/base/crypto.h"

namespace mh::licensing {
namespace {

struct PKeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, PKeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

constexpr std::string_view kPrivateKind = "PRIVATE KEY";
constexpr std::string_view kPublicKind = "PUBLIC KEY";

template <size_t N>
Result<std::array<uint8_t, N>> decode_fixed(std::string_view base64, std::string_view what) {
  auto bytes = base64_decode(base64);
  if (!bytes || bytes->size() != N) {
    return invalid_argument(fmt::format("{} must be {} bytes in base64", what, N));
  }
  std::array<uint8_t, N> out{};
  std::copy(bytes->begin(), bytes->end(), out.begin());
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return out;
}

}  // namespace

std::string PublicKey::fingerprint() const {
  std::string digest = sha256_hex(std::string_view(reinterpret_cast<const char*>(key.data()), 32));
  return "SHA256:" + digest.substr(0, 32);
}

Status validate_key_id(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 64;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    char c = id[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    ok = alnum || (i > 0 && (c == '-' || c == '_' || c == '.'));
  }
  if (!ok) {
    return invalid_argument(fmt::format(
        "key id '{}' must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        id));
  }
  return {};
}

PrivateKey::PrivateKey(std::string id, const std::array<uint8_t, 32>& seed)
    : id_(std::move(id)), seed_(seed) {}
PrivateKey::PrivateKey(PrivateKey&& other) noexcept
    : id_(std::move(other.id_)), seed_(other.seed_) {
  OPENSSL_cleanse(other.seed_.data(), other.seed_.size());
}
PrivateKey::~PrivateKey() { OPENSSL_cleanse(seed_.data(), seed_.size()); }

Result<PublicKey> PrivateKey::public_key() const {
  PKey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed_.data(), seed_.size()));
  if (!pkey) return internal_error("Ed25519: cannot load the private key");
  PublicKey out{id_, {}, std::nullopt};
  size_t length = out.key.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), out.key.data(), &length) != 1 || length != 32) {
    return internal_error("Ed25519: cannot derive the public key");
  }
  return out;
}

Result<Ed25519Signature> PrivateKey::sign(std::string_view message) const {
  PKey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed_.data(), seed_.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!pkey || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return internal_error("Ed25519: cannot set up signing");
  }
  Ed25519Signature signature{};
  size_t length = signature.size();
  if (EVP_DigestSign(ctx.get(), signature.data(), &length,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      length != signature.size()) {
    return internal_error("Ed25519: signing failed");
  }
  return signature;
}

std::string PrivateKey::encode() const {
  return encode_armor(kPrivateKind,
                      {{"Key-Id", id_}, {"Seed", base64_encode(seed_.data(), seed_.size())}});
}

Result<PrivateKey> generate_key(std::string id) {
  MH_TRY(validate_key_id(id));
  std::array<uint8_t, 32> seed{};
  secure_random(seed.data(), seed.size());
  PrivateKey key(std::move(id), seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  return key;
}

Result<PrivateKey> parse_private_key(std::string_view text) {
  static constexpr std::string_view kNames[] = {"Key-Id", "Seed"};
  MH_ASSIGN_OR_RETURN(auto fields, decode_armor(text, kPrivateKind, kNames));
  MH_TRY(validate_key_id(fields[0]));
  MH_ASSIGN_OR_RETURN(auto seed, decode_fixed<32>(fields[1], "the private key's Seed"));
  PrivateKey key(fields[0], seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  OPENSSL_cleanse(fields[1].data(), fields[1].size());
  return key;
}

std::string encode_public_key(const PublicKey& key) {
  ArmorFields fields{{"Key-Id", key.id}, {"Key", base64_encode(key.key.data(), key.key.size())}};
  if (key.retired_at) fields.emplace_back("Retired-At", std::to_string(*key.retired_at));
  return encode_armor(kPublicKind, fields);
}

Result<PublicKey> parse_public_key(std::string_view text) {
  static constexpr std::string_view kNames[] = {"Key-Id", "Key"};
  static constexpr std::string_view kRetiredNames[] = {"Key-Id", "Key", "Retired-At"};
  auto fields = decode_armor(text, kPublicKind, kNames);
  if (!fields.ok()) fields = decode_armor(text, kPublicKind, kRetiredNames);
  if (!fields.ok()) return fields.status();
  MH_TRY(validate_key_id((*fields)[0]));
  PublicKey key{(*fields)[0], {}, std::nullopt};
  MH_ASSIGN_OR_RETURN(key.key, decode_fixed<32>((*fields)[1], "the public Key"));
  if (fields->size() == 3) {
    const std::string& at = (*fields)[2];
    if (at.size() > 12 || at.find_first_not_of("0123456789") != std::string::npos) {
      return invalid_argument("Retired-At must be a Unix time in seconds");
    }
    key.retired_at = std::stoll(at);
  }
  return key;
}

bool verify_signature(const PublicKey& key, std::string_view message,
                      const Ed25519Signature& signature) {
  PKey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.key.data(), key.key.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!pkey || !ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

Status KeyRing::add(PublicKey key) {
  MH_TRY(validate_key_id(key.id));
  if (auto it = keys_.find(key.id); it != keys_.end()) {
    if (it->second.key == key.key) {
      it->second.retired_at = key.retired_at;
      return {};
    }
    return conflict(fmt::format("key id '{}' is already used by another key", key.id));
  }
  keys_.emplace(key.id, std::move(key));
  return {};
}

const PublicKey* KeyRing::find(std::string_view id) const {
  auto it = keys_.find(id);
  return it == keys_.end() ? nullptr : &it->second;
}

std::vector<std::string> KeyRing::ids() const {
  std::vector<std::string> out;
  for (const auto& [id, key] : keys_) out.push_back(id);
  return out;
}

}  // namespace mh::licensing
