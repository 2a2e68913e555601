// Ed25519 signing keys. Staff keep private keys offline; the daemon and the SDK hold only public
// keys, each named by a key id, several at once (a KeyRing) so that keys can rotate: a new key
// signs new licenses while licenses signed by the old one stay valid to their expiry.
//
// Files are armored text (armor.h): "MACROHARD PRIVATE KEY" (Key-Id, Seed: the 32-byte seed) and
// "MACROHARD PUBLIC KEY" (Key-Id, Key: the 32-byte public key, optionally Retired-At: the Unix
// time after which licenses it signs are refused).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"

namespace mh::licensing {

using Ed25519PublicKey = std::array<uint8_t, 32>;
using Ed25519Signature = std::array<uint8_t, 64>;

struct PublicKey {
  std::string id;
  Ed25519PublicKey key{};
  std::optional<int64_t> retired_at;  // licenses issued after this are refused
  // "SHA256:…" of the raw key, for comparing keys by eye.
  std::string fingerprint() const;
};

class PrivateKey {
 public:
  PrivateKey(std::string id, const std::array<uint8_t, 32>& seed);
  ~PrivateKey();  // wipes the seed
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;
  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) = delete;

  const std::string& id() const { return id_; }
  Result<PublicKey> public_key() const;
  Result<Ed25519Signature> sign(std::string_view message) const;
  std::string encode() const;  // the armored private key file

 private:
  std::string id_;
  std::array<uint8_t, 32> seed_;
};

// A key id: 1 to 64 of [a-z0-9._-], starting with a letter or digit.
Status validate_key_id(std::string_view id);

Result<PrivateKey> generate_key(std::string id);
Result<PrivateKey> parse_private_key(std::string_view text);
std::string encode_public_key(const PublicKey& key);
Result<PublicKey> parse_public_key(std::string_view text);

bool verify_signature(const PublicKey& key, std::string_view message,
                      const Ed25519Signature& signature);

// The public keys a verifier trusts, by id.
class KeyRing {
 public:
  Status add(PublicKey key);  // conflict if the id is taken by another key
  const PublicKey* find(std::string_view id) const;
  std::vector<std::string> ids() const;
  bool empty() const { return keys_.empty(); }

 private:
  std::map<std::string, PublicKey, std::less<>> keys_;
};

}  // namespace mh::licensing
