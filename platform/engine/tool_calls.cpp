#include "platform/engine/tool_calls.h"

#include "platform/engine/json_schema.h"

namespace mh::engine {

namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// {"name": "...", "<arguments>": {...}} (the arguments may be a string holding the object).
bool read_call(const Json& call, std::string_view arguments_key, ToolCall& out) {
  const Json* name = call.find("name");
  const Json* arguments = call.find(arguments_key);
  if (name == nullptr || !name->is_string() || name->as_string().empty()) return false;
  if (arguments == nullptr) arguments = call.find("arguments");
  Json args = arguments ? *arguments : Json(JsonObject{});
  if (args.is_string()) {
    auto parsed = parse_json(args.as_string());
    if (!parsed.ok()) return false;
    args = std::move(parsed).value();
  }
  if (!args.is_object()) return false;
  out = {name->as_string(), to_json(args)};
  return true;
}

// One call object, or an array of them.
bool read_calls(std::string_view text, std::string_view arguments_key, std::vector<ToolCall>& out) {
  auto parsed = parse_json(text);
  if (!parsed.ok()) return false;
  const JsonArray list = parsed->is_array() ? parsed->as_array() : JsonArray{*parsed};
  for (const Json& item : list) {
    ToolCall call;
    if (!item.is_object() || !read_call(item, arguments_key, call)) return false;
    out.push_back(std::move(call));
  }
  return !out.empty();
}

}  // namespace

ToolSyntax tool_syntax(std::string_view chat_template) {
  if (chat_template.find("<tool_call>") != std::string_view::npos) return ToolSyntax::kHermes;
  if (chat_template.find("[TOOL_CALLS]") != std::string_view::npos) return ToolSyntax::kMistral;
  if (chat_template.find("Environment: ipython") != std::string_view::npos) {
    return ToolSyntax::kLlama3;
  }
  return ToolSyntax::kNone;
}

bool parallel_calls(ToolSyntax syntax) { return syntax != ToolSyntax::kLlama3; }

ToolCallOutput parse_tool_calls(ToolSyntax syntax, std::string_view text) {
  ToolCallOutput out;
  out.content = std::string(trim(text));
  std::vector<ToolCall> calls;
  switch (syntax) {
    case ToolSyntax::kNone:
      return out;
    case ToolSyntax::kHermes: {
      std::string rest;
      size_t at = 0;
      for (;;) {
        const size_t open = text.find("<tool_call>", at);
        if (open == std::string_view::npos) break;
        rest += text.substr(at, open - at);
        const size_t from = open + 11;
        const size_t close = std::min(text.find("</tool_call>", from), text.size());
        if (!read_calls(trim(text.substr(from, close - from)), "arguments", calls)) return out;
        at = std::min(close + 12, text.size());
      }
      if (calls.empty()) return out;
      rest += text.substr(at);
      out.content = std::string(trim(rest));
      break;
    }
    case ToolSyntax::kLlama3: {
      std::string_view t = trim(text);
      if (t.starts_with("<|python_tag|>")) t.remove_prefix(14);
      if (!read_calls(trim(t), "parameters", calls)) return out;
      out.content.clear();
      break;
    }
    case ToolSyntax::kMistral: {
      std::string_view t = trim(text);
      if (!t.starts_with("[TOOL_CALLS]")) return out;
      if (!read_calls(trim(t.substr(12)), "arguments", calls)) return out;
      out.content.clear();
      break;
    }
  }
  out.calls = std::move(calls);
  return out;
}

Result<Grammar> tool_call_grammar(ToolSyntax syntax, const std::vector<ToolFunction>& functions,
                                  bool parallel) {
  if (syntax == ToolSyntax::kNone) return invalid_argument("the model has no tool-call syntax");
  if (functions.empty()) return invalid_argument("no function to call");
  Grammar g;
  const int32_t start = g.declare("root");
  const std::string key = syntax == ToolSyntax::kLlama3 ? "parameters" : "arguments";
  std::vector<Grammar::Sequence> each;
  for (const ToolFunction& f : functions) {
    const Json any(JsonObject{{"type", Json(std::string("object"))}});
    auto arguments = add_json_schema(g, f.parameters.is_null() ? any : f.parameters, "#");
    if (!arguments.ok()) {
      return invalid_argument("function '" + f.name + "': " + arguments.status().message());
    }
    Grammar::Sequence call = Grammar::literal("{\"name\": \"" + f.name + "\", \"" + key + "\": ");
    call.push_back(Grammar::ref(*arguments));
    const Grammar::Sequence end = Grammar::literal("}");
    call.insert(call.end(), end.begin(), end.end());
    if (syntax == ToolSyntax::kHermes) {
      call = Grammar::join(
          {Grammar::literal("<tool_call>\n"), call, Grammar::literal("\n</tool_call>")});
    }
    each.push_back(std::move(call));
  }
  const int32_t one = g.rule("call", std::move(each));
  const std::string separator = syntax == ToolSyntax::kHermes ? "\n" : ", ";
  const bool many = parallel && parallel_calls(syntax);
  const int32_t more = g.repeat(
      "calls", Grammar::join({Grammar::literal(separator), {Grammar::ref(one)}}), 0, many ? -1 : 0);
  Grammar::Sequence calls{Grammar::ref(one), Grammar::ref(more)};
  if (syntax == ToolSyntax::kMistral) {
    calls = Grammar::join({Grammar::literal("[TOOL_CALLS]["), calls, Grammar::literal("]")});
  }
  g.define(start, {std::move(calls)});
  return g;
}

}  // namespace mh::engine
