// The SDK's client for a tenant of a test platform, as a licensee's program makes one.
#pragma once

#include <macrohard/macrohard.hpp>

#include <string>

#include "tests/integration/licensed_platform.h"

namespace mh::test {

// `tenant`'s owner key, without retries (a refusal is seen at once).
inline macrohard::Client sdk_client(const LicensedPlatform& p, const std::string& tenant) {
  return macrohard::Client(macrohard::ClientOptions()
                               .base_url(p.daemon->url())
                               .api_key(p.owners.at(tenant))
                               .max_retries(0));
}

}  // namespace mh::test
