#include "platform/api/jsonl.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <fstream>
#include <optional>
#include <utility>

namespace mh::api {

namespace json = boost::json;

std::string_view kind_name(ExampleKind kind) {
  return kind == ExampleKind::kPreference ? "preference" : "supervised";
}

namespace {

// A conversation's messages (`where` names them): roles and string contents; whether one is the
// assistant's.
Result<bool> check_messages(const json::value* messages, std::string_view where) {
  if (messages == nullptr || !messages->is_array() || messages->as_array().empty()) {
    return invalid_argument(fmt::format("'{}' must be a non-empty array", where));
  }
  bool has_assistant = false;
  size_t i = 0;
  for (const json::value& m : messages->as_array()) {
    const json::object* message = m.if_object();
    const json::value* role = message ? message->if_contains("role") : nullptr;
    const json::value* content = message ? message->if_contains("content") : nullptr;
    if (role == nullptr || !role->is_string()) {
      return invalid_argument(fmt::format("{}[{}] needs a string 'role'", where, i));
    }
    std::string_view r = role->as_string();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      return invalid_argument(fmt::format(
          "{}[{}].role is '{}'; it must be system, user, assistant or tool", where, i, r));
    }
    if (content == nullptr || !content->is_string()) {
      return invalid_argument(fmt::format("{}[{}] needs a string 'content'", where, i));
    }
    has_assistant = has_assistant || r == "assistant";
    ++i;
  }
  return has_assistant;
}

// A DPO line: the prompt's conversation and the two replies, nothing else.
Status check_preference(const json::object& o) {
  for (const auto& [key, value] : o) {
    if (key != "input" && key != "preferred_output" && key != "non_preferred_output") {
      return invalid_argument(fmt::format(
          "'{}' is not a field of a preference example (input, preferred_output, "
          "non_preferred_output)",
          std::string_view(key)));
    }
  }
  const json::value* input = o.if_contains("input");
  if (input == nullptr || !input->is_object()) {
    return invalid_argument("'input' must be an object with 'messages'");
  }
  for (const auto& [key, value] : input->as_object()) {
    if (key != "messages") {
      return invalid_argument(
          fmt::format("'input.{}' is not supported (only messages)", std::string_view(key)));
    }
  }
  MH_TRY(check_messages(input->as_object().if_contains("messages"), "input.messages").status());
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
          "'{}' must be an array of one message with role 'assistant' and string 'content'",
          side));
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
  if (o.contains("input") || o.contains("preferred_output") ||
      o.contains("non_preferred_output")) {
    MH_TRY(check_preference(o));
    return ExampleKind::kPreference;
  }
  if (const json::value* messages = o.if_contains("messages")) {
    MH_ASSIGN_OR_RETURN(const bool has_assistant, check_messages(messages, "messages"));
    if (!has_assistant) return invalid_argument("'messages' has no assistant message to learn");
    return ExampleKind::kSupervised;
  }
  if (o.contains("prompt") || o.contains("completion")) {
    const json::value* p = o.if_contains("prompt");
    const json::value* c = o.if_contains("completion");
    if (p == nullptr || !p->is_string() || c == nullptr || !c->is_string()) {
      return invalid_argument("'prompt' and 'completion' must both be strings");
    }
    return ExampleKind::kSupervised;
  }
  if (const json::value* text = o.if_contains("text")) {
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
      return invalid_argument(fmt::format("line {}: a {} example, and line {} was a {} one; a "
                                          "file holds examples of one kind",
                                          number, kind_name(*kind), first->second,
                                          kind_name(first->first)),
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
