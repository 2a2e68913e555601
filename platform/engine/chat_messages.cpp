#include "platform/engine/chat_messages.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace mh::engine {

namespace {

Status refused(const std::string& param) {
  return invalid_argument("'" + param + "' is not supported", param);
}

// A message's content: a string, null, or an array of {"type": "text", "text"} parts.
Result<std::string> content_text(const Json& content, const std::string& where) {
  if (content.is_string()) return content.as_string();
  if (content.is_null()) return std::string();
  if (!content.is_array()) return invalid_argument(where + " must be a string or an array", where);
  std::string text;
  for (const Json& part : content.as_array()) {
    const Json* type = part.find("type");
    const Json* t = part.find("text");
    if (type == nullptr || !type->is_string() || type->as_string() != "text" || t == nullptr ||
        !t->is_string()) {
      return invalid_argument(where + ": only text parts are supported", where);
    }
    text += t->as_string();
  }
  return text;
}

const std::string* string_at(const Json& o, std::string_view key) {
  const Json* v = o.find(key);
  return v != nullptr && v->is_string() ? &v->as_string() : nullptr;
}

Result<Json> tool_call(const Json& call, const std::string& at) {
  const Json* fn = call.find("function");
  const std::string* id = string_at(call, "id");
  const std::string* name = fn ? string_at(*fn, "name") : nullptr;
  const std::string* arguments = fn ? string_at(*fn, "arguments") : nullptr;
  if (id == nullptr || name == nullptr || arguments == nullptr) {
    return invalid_argument(
        "'" + at +
            "' must be {\"id\", \"type\": \"function\", \"function\": {\"name\", "
            "\"arguments\"}}",
        at);
  }
  for (const auto& [key, value] : call.as_object()) {
    const bool function_type =
        key == "type" && value.is_string() && value.as_string() == "function";
    if (key != "id" && key != "function" && !function_type) return refused(at + "." + key);
  }
  for (const auto& [key, value] : fn->as_object()) {
    if (key != "name" && key != "arguments") return refused(at + ".function." + key);
  }
  auto args = parse_json(*arguments);
  if (!args.ok() || !args->is_object()) {
    return invalid_argument("'" + at + ".function.arguments' must be a JSON object",
                            at + ".function.arguments");
  }
  return Json(JsonObject{{"id", Json(*id)},
                         {"type", Json(std::string("function"))},
                         {"function", Json(JsonObject{{"name", Json(*name)},
                                                      {"arguments", std::move(args).value()}})}});
}

}  // namespace

Result<TemplateMessages> template_messages(const Json& messages, std::string_view where) {
  const std::string w(where);
  if (!messages.is_array() || messages.as_array().empty()) {
    return invalid_argument("'" + w + "' must be a non-empty array", w);
  }
  TemplateMessages out;
  JsonArray list;
  for (size_t i = 0; i < messages.as_array().size(); ++i) {
    const Json& m = messages.as_array()[i];
    const std::string at = w + "[" + std::to_string(i) + "]";
    const std::string* role = m.is_object() ? string_at(m, "role") : nullptr;
    if (role == nullptr) return invalid_argument(at + " needs a role", w);
    const std::string& r = *role;
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool") {
      return invalid_argument(
          at + ".role '" + r + "' is not one of system, developer, user, assistant, tool", w);
    }
    const Json* calls = m.find("tool_calls");
    const bool calling = r == "assistant" && calls != nullptr && !calls->is_null();
    for (const auto& [key, value] : m.as_object()) {
      const bool known = key == "role" || key == "content" ||
                         (key == "tool_calls" && r == "assistant") ||
                         (key == "tool_call_id" && r == "tool");
      if (!known) return refused(at + "." + key);
    }
    const Json* content = m.find("content");
    const bool empty = content == nullptr || content->is_null();
    if (empty && !calling) return invalid_argument(at + " needs a content", w);
    std::string text;
    if (!empty) {
      MH_ASSIGN_OR_RETURN(text, content_text(*content, at + ".content"));
    }
    JsonObject laid{{"role", Json(r == "developer" ? std::string("system") : r)},
                    {"content", Json(std::move(text))}};
    if (calling) {
      if (!calls->is_array() || calls->as_array().empty()) {
        return invalid_argument("'" + at + ".tool_calls' must be a non-empty array",
                                at + ".tool_calls");
      }
      JsonArray each;
      for (size_t j = 0; j < calls->as_array().size(); ++j) {
        MH_ASSIGN_OR_RETURN(Json call, tool_call(calls->as_array()[j],
                                                 at + ".tool_calls[" + std::to_string(j) + "]"));
        each.push_back(std::move(call));
      }
      laid.emplace_back("tool_calls", Json(std::move(each)));
    }
    if (r == "tool") {
      const std::string* id = string_at(m, "tool_call_id");
      if (id == nullptr) {
        return invalid_argument(at + " (a tool's reply) needs a tool_call_id",
                                at + ".tool_call_id");
      }
      laid.emplace_back("tool_call_id", Json(*id));
    }
    out.has_assistant = out.has_assistant || r == "assistant";
    list.push_back(Json(std::move(laid)));
  }
  out.messages = Json(std::move(list));
  return out;
}

Result<TemplateTools> template_tools(const Json& tools, std::string_view where) {
  const std::string w(where);
  if (!tools.is_array() || tools.as_array().empty() || tools.as_array().size() > 128) {
    return invalid_argument("'" + w + "' must be an array of 1 to 128 functions", w);
  }
  TemplateTools out;
  JsonArray list;
  for (size_t i = 0; i < tools.as_array().size(); ++i) {
    const std::string at = w + "[" + std::to_string(i) + "]";
    const Json& tool = tools.as_array()[i];
    const Json* f = tool.find("function");
    const std::string* type = tool.is_object() ? string_at(tool, "type") : nullptr;
    if (f == nullptr || !f->is_object() || type == nullptr || *type != "function") {
      return invalid_argument("'" + at + "' must be {\"type\": \"function\", \"function\"}", at);
    }
    for (const auto& [key, value] : tool.as_object()) {
      if (key != "type" && key != "function") return refused(at + "." + key);
    }
    JsonObject function;
    ToolFunction callable;
    for (const auto& [key, value] : f->as_object()) {
      const std::string param = at + ".function." + key;
      if (key == "name" && value.is_string()) {
        callable.name = value.as_string();
      } else if (key == "parameters" && value.is_object()) {
        callable.parameters = value;
      } else if (key == "strict" && (value.is_bool() || value.is_null())) {
        continue;  // calls the platform constrains are always held to their parameters
      } else if (!(key == "description" && value.is_string())) {
        return refused(param);
      }
      function.emplace_back(key, value);
    }
    const bool named =
        !callable.name.empty() && callable.name.size() <= 64 &&
        std::all_of(callable.name.begin(), callable.name.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
        });
    if (!named) {
      return invalid_argument(
          "'" + at + ".function.name' must be 1 to 64 letters, digits, '_' or '-'",
          at + ".function.name");
    }
    for (const ToolFunction& other : out.functions) {
      if (other.name == callable.name) {
        return invalid_argument("two tools are named '" + callable.name + "'", w);
      }
    }
    out.functions.push_back(std::move(callable));
    list.push_back(Json(JsonObject{{"type", Json(std::string("function"))},
                                   {"function", Json(std::move(function))}}));
  }
  out.tools = Json(std::move(list));
  return out;
}

}  // namespace mh::engine
