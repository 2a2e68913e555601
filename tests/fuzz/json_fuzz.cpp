// libFuzzer target: any bytes as JSON (config.json, tokenizer.json, JSONL lines go through this
// reader). What parses must serialize and parse again to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "platform/engine/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = mh::engine::parse_json(text);
  if (!parsed.ok()) return 0;
  const std::string once = mh::engine::to_json(*parsed);
  auto again = mh::engine::parse_json(once);
  if (!again.ok() || mh::engine::to_json(*again) != once) std::abort();
  return 0;
}
