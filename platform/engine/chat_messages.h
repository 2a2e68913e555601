// OpenAI's chat messages and tools, as a chat request or a training line carries them: checked
// (a field that is not honoured is refused by name, with where it is) and laid out as Hugging
// Face chat templates read them: "developer" as "system", content parts joined as text, an
// assistant's tool_calls with their arguments as objects, a tool's reply with its call's id.
#pragma once

#include <vector>

#include "platform/base/status.h"
#include "platform/engine/json.h"
#include "platform/engine/tool_calls.h"

namespace mh::engine {

struct TemplateMessages {
  Json messages;
  bool has_assistant = false;
};
// `messages` (errors' params name "<where>[i]…", `where` being "messages" or the like).
Result<TemplateMessages> template_messages(const Json& messages, std::string_view where);

struct TemplateTools {
  Json tools;  // [{"type": "function", "function": {name, description?, parameters?}}]
  std::vector<ToolFunction> functions;
};
// `tools`: 1 to 128 functions with distinct names of letters, digits, '_' and '-'.
Result<TemplateTools> template_tools(const Json& tools, std::string_view where);

}  // namespace mh::engine
