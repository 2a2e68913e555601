// Hashing, randomness and encodings over OpenSSL, shared by the API keys, the blob store and
// (later) licensing. Nothing here keeps secrets in memory longer than the caller does.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mh {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental SHA-256, for data that arrives in pieces (uploads, files).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  Sha256Digest finish();  // the object must not be updated afterwards

 private:
  void* ctx_;  // EVP_MD_CTX*
};

Sha256Digest sha256(std::string_view data);
std::string sha256_hex(std::string_view data);

std::string hex_encode(const void* data, size_t size);
template <size_t N>
std::string hex_encode(const std::array<uint8_t, N>& bytes) {
  return hex_encode(bytes.data(), N);
}
// Base64 with the URL-safe alphabet and no padding (RFC 4648 section 5).
std::string base64url_encode(const void* data, size_t size);
// Base64 with the standard alphabet and padding (RFC 4648 section 4).
std::string base64_encode(const void* data, size_t size);
// Strict inverse of base64_encode: only the canonical encoding of some bytes is accepted (no
// whitespace, exact padding, zero unused bits), so every encoded byte string has one text.
std::optional<std::string> base64_decode(std::string_view text);

// Cryptographically secure random bytes (OpenSSL's CSPRNG); aborts if the RNG fails.
void secure_random(void* out, size_t size);
std::string secure_random_base64url(size_t bytes);

// Compares in time that depends on the length only, never on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace mh
