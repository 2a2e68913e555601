// API key secrets: 256 random bits behind a recognisable prefix ("mh_admin_", "mh_live_"),
// shown once; only their SHA-256 is kept.
#pragma once

#include <string>
#include <string_view>

namespace mh {

struct ApiKeySecret {
  std::string secret;          // the key itself: shown once, never stored
  std::string sha256;          // what is stored and looked up
  std::string display_prefix;  // the prefix plus a few characters, to tell keys apart in lists
};

ApiKeySecret new_api_key(std::string_view prefix);

}  // namespace mh
