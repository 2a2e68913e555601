// libFuzzer target: any bytes as a model's config.json, and as its generation_config.json. A
// config that parses must describe a model whose sizes are in bounds, and must survive a round
// trip through config.json; generation settings that parse must be in their ranges.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "platform/engine/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto g = mh::engine::parse_generation_config(text, 1000); g.ok()) {
    if (g->temperature && !(*g->temperature >= 0)) std::abort();
    if (g->top_p && !(*g->top_p > 0 && *g->top_p <= 1)) std::abort();
    if (g->repetition_penalty && !(*g->repetition_penalty > 0)) std::abort();
    for (int64_t id : g->eos_token_ids) {
      if (id < 0 || id >= 1000) std::abort();
    }
  }
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
