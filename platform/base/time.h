// Wall-clock time as the platform records it: Unix seconds (what OpenAI's API returns in
// "created_at") and RFC 3339 strings for logs and humans.
#pragma once

#include <cstdint>
#include <string>

namespace mh {

int64_t unix_seconds();
int64_t unix_millis();
// "2026-11-22T07:49:00Z"
std::string rfc3339(int64_t unix_seconds);

}  // namespace mh
