// libFuzzer target: any bytes as a model's config.json. A config that parses must describe a
// model whose sizes are in bounds, and must survive a round trip through config.json.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "platform/engine/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = mh::engine::parse_model_config(text);
  if (!config.ok()) return 0;
  if (config->parameter_count() <= 0 || config->heads % config->kv_heads != 0) std::abort();
  const std::string written = mh::engine::model_config_json(*config);
  auto again = mh::engine::parse_model_config(written);
  if (!again.ok() || again->parameter_count() != config->parameter_count()) std::abort();
  // What is written reads back as itself: nothing of the architecture is lost on the way.
  if (mh::engine::model_config_json(*again) != written) std::abort();
  return 0;
}
