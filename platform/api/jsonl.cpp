#include "platform/api/jsonl.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <fstream>
#include <optional>
#include <utility>

#include "platform/engine/chat_messages.h"

namespace mh::api {

namespace json = boost::json;

std::string_view kind_name(ExampleKind kind) {
  return kind == ExampleKind::kPreference ? "preference" : "supervised";
}

namespace {

// A conversation: `messages` (and beside them in `o`, `tools` and `parallel_tool_calls`),
// checked as the engine will read them; `prefix` names where they are ("" or "input.").
// Whether one message is the assistant's.
Result<bool> check_conversation(const json::object& o, std::string_view prefix) {
  for (const auto& [key, value] : o) {
    if (key != "messages" && key != "tools" && key != "parallel_tool_calls") {
      return invalid_argument(fmt::format(
          "'{}{}' is not supported (a conversation has messages, tools and parallel_tool_calls)",
          prefix, std::string_view(key)));
    }
  }
  const json::value* messages = o.if_contains("messages");
  if (messages == nullptr) return invalid_argument(fmt::format("'{}messages' is missing", prefix));
  MH_ASSIGN_OR_RETURN(engine::Json given, engine::parse_json(json::serialize(*messages)));
  MH_ASSIGN_OR_RETURN(engine::TemplateMessages laid,
                      engine::template_messages(given, std::string(prefix) + "messages"));
  if (const json::value* tools = o.if_contains("tools"); tools && !tools->is_null()) {
    MH_ASSIGN_OR_RETURN(engine::Json list, engine::parse_json(json::serialize(*tools)));
    MH_TRY(engine::template_tools(list, std::string(prefix) + "tools").status());
  }
  const json::value* parallel = o.if_contains("parallel_tool_calls");
  if (parallel && !parallel->is_bool() && !parallel->is_null()) {
    return invalid_argument(fmt::format("'{}parallel_tool_calls' must be true or false", prefix));
  }
  return laid.has_assistant;
}

// A DPO line: the prompt's conversation and the two replies, nothing else.
Status check_preference(const json::object& o) {
  for (const auto& [key, value] : o) {
    if (key != "input" && key != "preferred_output" && key != "non_preferred_output") {
      return invalid_argument(
          fmt::format("'{}' is not a field of a preference example (input, preferred_output, "
                      "non_preferred_output)",
                      std::string_view(key)));
    }
  }
  const json::value* input = o.if_contains("input");
  if (input == nullptr || !input->is_object()) {
    return invalid_argument("'input' must be an object with 'messages'");
  }
  MH_TRY(check_conversation(input->as_object(), "input.").status());
  for (const char* side : {"preferred_output", "non_preferred_output"}) {
    const json::value* out = o.if_contains(side);
    const json::object* m = out != nullptr && out->is_array() && out->as_array().size() == 1
                                ? out->as_array()[0].if_object()
                                : nullptr;
    const json::value* role = m ? m->if_contains("role") : nullptr;
    const json::value* content = m ? m->if_contains("content") : nullptr;
    if (role == nullptr || !role->is_string() || role->as_string() != "assistant" ||
        content == nullptr || !content->is_string() || m->size() != 2) {
      return invalid_argument(fmt::format(
          "'{}' must be an array of one message with role 'assistant' and string 'content'", side));
    }
  }
  return {};
}

}  // namespace

Result<ExampleKind> validate_training_example(std::string_view line) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 32;
  json::value value = json::parse(line, ec, {}, options);
  if (ec) return invalid_argument("not valid JSON: " + ec.message());
  if (!value.is_object()) return invalid_argument("each line must be a JSON object");
  const json::object& o = value.as_object();
  if (o.contains("input") || o.contains("preferred_output") || o.contains("non_preferred_output")) {
    MH_TRY(check_preference(o));
    return ExampleKind::kPreference;
  }
  if (o.contains("messages")) {
    MH_ASSIGN_OR_RETURN(const bool has_assistant, check_conversation(o, ""));
    if (!has_assistant) return invalid_argument("'messages' has no assistant message to learn");
    return ExampleKind::kSupervised;
  }
  if (o.contains("prompt") || o.contains("completion")) {
    for (const auto& [key, value] : o) {
      if (key != "prompt" && key != "completion") {
        return invalid_argument(fmt::format("'{}' is not a field of a prompt-completion example",
                                            std::string_view(key)));
      }
    }
    const json::value* p = o.if_contains("prompt");
    const json::value* c = o.if_contains("completion");
    if (p == nullptr || !p->is_string() || c == nullptr || !c->is_string()) {
      return invalid_argument("'prompt' and 'completion' must both be strings");
    }
    return ExampleKind::kSupervised;
  }
  if (const json::value* text = o.if_contains("text")) {
    if (o.size() != 1) return invalid_argument("a text example has 'text' and nothing else");
    if (!text->is_string() || text->as_string().empty()) {
      return invalid_argument("'text' must be a non-empty string");
    }
    return ExampleKind::kSupervised;
  }
  return invalid_argument(
      "an example needs 'messages', 'prompt' and 'completion', or 'text' (or, for DPO, "
      "'input', 'preferred_output' and 'non_preferred_output')");
}

Result<int64_t> validate_training_jsonl(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return internal_error("cannot read the uploaded file back");
  std::string line;
  std::vector<char> chunk(64 * 1024);
  int64_t number = 0, examples = 0;
  std::optional<std::pair<ExampleKind, int64_t>> first;  // the file's kind, and where it was seen
  bool ended = false;
  auto check = [&]() -> Status {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      return {};  // blank lines carry no example; a trailing newline is normal
    }
    auto kind = validate_training_example(line);
    if (!kind.ok()) {
      return invalid_argument(fmt::format("line {}: {}", number, kind.status().message()), "file");
    }
    if (!first) first.emplace(*kind, number);
    if (*kind != first->first) {
      return invalid_argument(
          fmt::format("line {}: a {} example, and line {} was a {} one; a "
                      "file holds examples of one kind",
                      number, kind_name(*kind), first->second, kind_name(first->first)),
          "file");
    }
    ++examples;
    return {};
  };
  while (!ended) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    std::streamsize got = in.gcount();
    ended = got == 0;
    for (std::streamsize i = 0; i < got; ++i) {
      char c = chunk[static_cast<size_t>(i)];
      if (c == '\n') {
        MH_TRY(check());
        line.clear();
      } else if (line.size() >= kMaxJsonlLine) {
        return invalid_argument(
            fmt::format("line {}: longer than {} bytes", number + 1, kMaxJsonlLine), "file");
      } else {
        line += c;
      }
    }
  }
  if (!line.empty()) MH_TRY(check());
  if (examples == 0) return invalid_argument("the file holds no training examples", "file");
  return examples;
}

Result<ExampleKind> training_file_kind(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return internal_error("cannot read the training file");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > kMaxJsonlLine) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) return validate_training_example(line);
  }
  return invalid_argument("the file holds no training examples");
}

}  // namespace mh::api
