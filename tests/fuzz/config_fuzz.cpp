// libFuzzer target: any bytes as a model's config.json. A config that parses must describe a
// model whose sizes are in bounds, and must survive a round trip through config.json.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "platform/engine/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = mh::engine::parse_model_config(text);
  if (!config.ok()) return 0;
  if (config->parameter_count() <= 0 || config->heads % config->kv_heads != 0) std::abort();
  auto again = mh::engine::parse_model_config(mh::engine::model_config_json(*config));
  if (!again.ok() || again->parameter_count() != config->parameter_count()) std::abort();
  return 0;
}
