// Tool calls as open models write them: which syntax a model's chat format uses (from its
// template), reading calls back out of generated text, and grammars that hold an output to calls
// of given functions, each one's arguments valid against its parameters' JSON Schema.
//
//   Hermes (Qwen 2.5 and 3, Hermes 2 and 3):  <tool_call>\n{"name": …, "arguments":
//   {…}}\n</tool_call> Llama 3.1 - 3.3 (JSON, one call a turn):  {"name": …, "parameters": {…}}
//   Mistral:                                  [TOOL_CALLS][{"name": …, "arguments": {…}}, …]
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/grammar.h"
#include "platform/engine/json.h"

namespace mh::engine {

enum class ToolSyntax { kNone, kHermes, kLlama3, kMistral };

// The syntax a chat template teaches its model (from its text); kNone when it lays out no tools.
ToolSyntax tool_syntax(std::string_view chat_template);
// Whether a model writing `syntax` can make more than one call in a turn.
bool parallel_calls(ToolSyntax syntax);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, compact
};
struct ToolCallOutput {
  std::string content;  // what is not a call (trimmed)
  std::vector<ToolCall> calls;
};
// The calls in a generated turn; none (all content) when the text is not calls in `syntax`.
ToolCallOutput parse_tool_calls(ToolSyntax syntax, std::string_view text);

struct ToolFunction {
  std::string name;
  Json parameters;  // a JSON Schema; null: any object
};
// Outputs that are one call (or, with `parallel` where the syntax has it, one or more) of the
// functions, in `syntax`. Errors name the function whose parameters cannot be expressed.
Result<Grammar> tool_call_grammar(ToolSyntax syntax, const std::vector<ToolFunction>& functions,
                                  bool parallel);

}  // namespace mh::engine
