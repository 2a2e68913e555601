// libFuzzer target: any bytes as a chat template. A template that parses must render a small
// conversation (with tools) within tight limits: it may fail with a clear error, never crash or
// run on past its budget.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "platform/engine/jinja/template.h"
#include "platform/engine/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mh::engine;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = jinja::Template::parse(text);
  if (!t.ok()) return 0;
  static const jinja::Dict context = [] {
    auto j = parse_json(
        R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},)"
        R"({"role":"assistant","content":"Hello","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}],)"
        R"("tools":[{"type":"function","function":{"name":"f","parameters":{}}}],)"
        R"("add_generation_prompt":true,"bos_token":"<s>","eos_token":"</s>"})");
    return jinja::Value::from_json(*j).as_dict();
  }();
  jinja::RenderLimits limits;
  limits.max_steps = 100000;
  limits.max_output = 1 << 20;
  limits.max_depth = 32;
  (void)t->render(context, limits);
  return 0;
}
