#include "platform/api/jsonl.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <fstream>

namespace mh::api {

namespace json = boost::json;

Status validate_training_example(std::string_view line) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 32;
  json::value value = json::parse(line, ec, {}, options);
  if (ec) return invalid_argument("not valid JSON: " + ec.message());
  if (!value.is_object()) return invalid_argument("each line must be a JSON object");
  const json::object& o = value.as_object();
  if (const json::value* messages = o.if_contains("messages")) {
    if (!messages->is_array() || messages->as_array().empty()) {
      return invalid_argument("'messages' must be a non-empty array");
    }
    bool has_assistant = false;
    size_t i = 0;
    for (const json::value& m : messages->as_array()) {
      const json::object* message = m.if_object();
      const json::value* role = message ? message->if_contains("role") : nullptr;
      const json::value* content = message ? message->if_contains("content") : nullptr;
      if (role == nullptr || !role->is_string()) {
        return invalid_argument(fmt::format("messages[{}] needs a string 'role'", i));
      }
      std::string_view r = role->as_string();
      if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
        return invalid_argument(fmt::format(
            "messages[{}].role is '{}'; it must be system, user, assistant or tool", i, r));
      }
      if (content == nullptr || !content->is_string()) {
        return invalid_argument(fmt::format("messages[{}] needs a string 'content'", i));
      }
      has_assistant = has_assistant || r == "assistant";
      ++i;
    }
    if (!has_assistant) return invalid_argument("'messages' has no assistant message to learn");
    return {};
  }
  if (o.contains("prompt") || o.contains("completion")) {
    const json::value* p = o.if_contains("prompt");
    const json::value* c = o.if_contains("completion");
    if (p == nullptr || !p->is_string() || c == nullptr || !c->is_string()) {
      return invalid_argument("'prompt' and 'completion' must both be strings");
    }
    return {};
  }
  if (const json::value* text = o.if_contains("text")) {
    if (!text->is_string() || text->as_string().empty()) {
      return invalid_argument("'text' must be a non-empty string");
    }
    return {};
  }
  return invalid_argument("an example needs 'messages', 'prompt' and 'completion', or 'text'");
}

Result<int64_t> validate_training_jsonl(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return internal_error("cannot read the uploaded file back");
  std::string line;
  std::vector<char> chunk(64 * 1024);
  int64_t number = 0, examples = 0;
  bool ended = false;
  auto check = [&]() -> Status {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      return {};  // blank lines carry no example; a trailing newline is normal
    }
    if (Status s = validate_training_example(line); !s.ok()) {
      return invalid_argument(fmt::format("line {}: {}", number, s.message()), "file");
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

}  // namespace mh::api
