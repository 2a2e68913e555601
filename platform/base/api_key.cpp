#include "platform/base/api_key.h"

#include "platform/base/crypto.h"

namespace mh {

ApiKeySecret new_api_key(std::string_view prefix) {
  ApiKeySecret key;
  key.secret = std::string(prefix) + secure_random_base64url(32);
  key.sha256 = sha256_hex(key.secret);
  key.display_prefix = key.secret.substr(0, prefix.size() + 6);
  return key;
}

}  // namespace mh
