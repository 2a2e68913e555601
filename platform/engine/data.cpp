#include "platform/engine/data.h"

#include <algorithm>
#include <fstream>
#include <functional>

#include "platform/engine/chat_messages.h"
#include "platform/engine/files.h"

namespace mh::engine {

namespace {

Status line_error(int64_t line, std::string_view what) {
  return invalid_argument("line " + std::to_string(line) + ": " + std::string(what));
}

const std::string* string_member(const Json& o, std::string_view key) {
  const Json* v = o.find(key);
  return v != nullptr && v->is_string() ? &v->as_string() : nullptr;
}

}  // namespace

namespace {

// One piece of an example, in order: a conversation (`messages`, checked: string roles and
// contents, an assistant turn), or a prompt, a completion or a text.
struct Part {
  std::string_view kind;  // "messages", "prompt", "completion", "text"
  const std::string& content;
  const Json* messages = nullptr;  // laid out for the chat template
  const Json* tools = nullptr;     // likewise; null: none
};

// A line's fields beyond `allowed` are refused by name: none would be honoured.
Status only(const Json& o, std::initializer_list<std::string_view> allowed, std::string_view kind) {
  for (const auto& [key, value] : o.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return invalid_argument("\"" + key + "\" is not a field of " + std::string(kind) + " (" +
                              names + ")");
    }
  }
  return {};
}

// A conversation (`messages`, with `tools` and `parallel_tool_calls` beside it in `o`), laid out
// for the chat template.
struct Conversation {
  TemplateMessages messages;
  Json tools;
};
Result<Conversation> conversation(const Json& o, const Json& messages, std::string_view where) {
  Conversation c;
  MH_ASSIGN_OR_RETURN(c.messages, template_messages(messages, std::string(where) + "messages"));
  if (const Json* tools = o.find("tools"); tools && !tools->is_null()) {
    MH_ASSIGN_OR_RETURN(TemplateTools laid, template_tools(*tools, std::string(where) + "tools"));
    c.tools = std::move(laid.tools);
  }
  // Whether calls were made one at a time changes nothing in the rendering; it is checked.
  if (const Json* p = o.find("parallel_tool_calls"); p && !p->is_bool() && !p->is_null()) {
    return invalid_argument("\"" + std::string(where) +
                            "parallel_tool_calls\" must be true or false");
  }
  return c;
}

// Parses a JSONL dataset, checking every line, and calls on_part for each piece of each example
// and end_example after each. Any bad line fails the whole file, naming the line.
// Calls `on_object` with each line of a JSONL text that is not blank, parsed: a line too long,
// not JSON or not an object fails, naming it.
Status for_each_object(std::string_view text, const DatasetLimits& limits,
                       const std::function<Status(int64_t line, const Json& o)>& on_object) {
  JsonLimits json_limits;
  json_limits.max_depth = 8;
  json_limits.max_bytes = limits.max_line_bytes;
  return for_each_line(text, [&](int64_t line_no, std::string_view line) -> Status {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return {};
    if (line.size() > limits.max_line_bytes) {
      return line_error(line_no, "longer than " + std::to_string(limits.max_line_bytes) + " bytes");
    }
    auto parsed = parse_json(line, json_limits);
    if (!parsed.ok()) return line_error(line_no, parsed.status().message());
    if (!parsed->is_object()) return line_error(line_no, "must be a JSON object");
    return on_object(line_no, *parsed);
  });
}

Status for_each_example(std::string_view text, const DatasetLimits& limits,
                        const std::function<Status(const Part&)>& on_part,
                        const std::function<Status(int64_t line)>& end_example) {
  int64_t examples = 0;
  MH_TRY(for_each_object(text, limits, [&](int64_t line_no, const Json& o) -> Status {
    if (const Json* messages = o.find("messages")) {
      Status fields = only(o, {"messages", "tools", "parallel_tool_calls"}, "a conversation");
      if (!fields.ok()) return line_error(line_no, fields.message());
      auto c = conversation(o, *messages, "");
      if (!c.ok()) return line_error(line_no, c.status().message());
      if (!c->messages.has_assistant) {
        return line_error(line_no, "no assistant message to learn from");
      }
      static const std::string kNone;
      if (Status s = on_part({"messages", kNone, &c->messages.messages, &c->tools}); !s.ok()) {
        return line_error(line_no, s.message());
      }
    } else if (o.find("prompt") != nullptr || o.find("completion") != nullptr) {
      Status fields = only(o, {"prompt", "completion"}, "a prompt-completion example");
      if (!fields.ok()) return line_error(line_no, fields.message());
      const std::string* prompt = string_member(o, "prompt");
      const std::string* completion = string_member(o, "completion");
      if (prompt == nullptr || completion == nullptr) {
        return line_error(line_no, "\"prompt\" and \"completion\" must both be strings");
      }
      if (completion->empty()) return line_error(line_no, "\"completion\" is empty");
      MH_TRY(on_part({"prompt", *prompt}));
      MH_TRY(on_part({"completion", *completion}));
    } else if (const std::string* t = string_member(o, "text")) {
      Status fields = only(o, {"text"}, "a text example");
      if (!fields.ok()) return line_error(line_no, fields.message());
      if (t->empty()) return line_error(line_no, "\"text\" is empty");
      MH_TRY(on_part({"text", *t}));
    } else {
      return line_error(line_no, "needs \"text\", \"prompt\" and \"completion\", or \"messages\"");
    }
    ++examples;
    return end_example(line_no);
  }));
  if (examples == 0) return invalid_argument("the dataset has no examples");
  return {};
}

}  // namespace

Result<Dataset> Dataset::from_jsonl_text(std::string_view text, const Tokenizer& tokenizer,
                                         const DatasetLimits& limits, const ChatTemplate* chat) {
  Dataset d;
  const ChatTemplate builtin(tokenizer);
  if (chat == nullptr) chat = &builtin;
  auto eot = chat->end_of_text();
  if (!eot) {
    return invalid_argument(
        "the tokenizer has no <|endoftext|> token, and tokenizer_config.json no eos_token, to "
        "end examples with");
  }
  auto on_part = [&](const Part& part) -> Status {
    if (part.kind == "messages") {
      return chat->append_conversation(*part.messages, *part.tools, d.ids_, d.learn_);
    }
    const auto ids = tokenizer.encode(part.content, false);
    d.ids_.insert(d.ids_.end(), ids.begin(), ids.end());
    d.learn_.insert(d.learn_.end(), ids.size(), part.kind == "prompt" ? 0 : 1);
    return {};
  };
  auto end_example = [&](int64_t line_no) -> Status {
    d.ids_.push_back(*eot);
    d.learn_.push_back(1);
    ++d.examples_;
    if (d.tokens() > limits.max_tokens) {
      return line_error(line_no,
                        "the dataset exceeds " + std::to_string(limits.max_tokens) + " tokens");
    }
    return {};
  };
  MH_TRY(for_each_example(text, limits, on_part, end_example));
  return d;
}

Result<std::vector<std::string>> jsonl_texts(std::string_view text, const DatasetLimits& limits) {
  std::vector<std::string> out;
  MH_TRY(for_each_example(
      text, limits,
      [&](const Part& part) {
        if (part.messages == nullptr) {
          out.push_back(part.content);
          return Status();
        }
        for (const Json& m : part.messages->as_array())
          out.push_back(m.find("content")->as_string());
        return Status();
      },
      [](int64_t) { return Status(); }));
  return out;
}

Result<Dataset> Dataset::from_jsonl(const std::filesystem::path& path, const Tokenizer& tokenizer,
                                    const DatasetLimits& limits, const ChatTemplate* chat) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return not_found("cannot read " + path.string() + ": " + ec.message());
  if (size > limits.max_file_bytes) {
    return invalid_argument(path.filename().string() + " is larger than " +
                            std::to_string(limits.max_file_bytes) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  std::string text(size, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(size))) {
    return internal_error("cannot read " + path.string());
  }
  auto d = from_jsonl_text(text, tokenizer, limits, chat);
  if (!d.ok()) return invalid_argument(path.filename().string() + ": " + d.status().message());
  return d;
}

namespace {

// The reply a preference line's `key` holds: one assistant message with string content.
Result<const Json*> preference_reply(const Json& line, std::string_view key) {
  const Json* out = line.find(key);
  const std::string k(key);
  if (out == nullptr || !out->is_array() || out->as_array().size() != 1) {
    return invalid_argument("\"" + k + "\" must be an array of one assistant message");
  }
  const Json& m = out->as_array()[0];
  const std::string* role = m.is_object() ? string_member(m, "role") : nullptr;
  const std::string* content = m.is_object() ? string_member(m, "content") : nullptr;
  if (role == nullptr || *role != "assistant" || content == nullptr) {
    return invalid_argument("\"" + k + "\"[0] must have role \"assistant\" and string content");
  }
  for (const auto& [name, v] : m.as_object()) {
    if (name != "role" && name != "content") {
      return invalid_argument("\"" + k + "\"[0]." + name + " is not supported");
    }
  }
  return &m;
}

}  // namespace

Result<PreferenceData> PreferenceData::from_jsonl_text(std::string_view text,
                                                       const ChatTemplate& chat,
                                                       const DatasetLimits& limits) {
  PreferenceData d;
  int64_t tokens = 0;
  MH_TRY(for_each_object(text, limits, [&](int64_t line_no, const Json& o) -> Status {
    for (const auto& [name, v] : o.as_object()) {
      if (name != "input" && name != "preferred_output" && name != "non_preferred_output") {
        return line_error(line_no, "\"" + name +
                                       "\" is not a field of a preference example "
                                       "(input, preferred_output, non_preferred_output)");
      }
    }
    const Json* input = o.find("input");
    const Json* messages =
        input != nullptr && input->is_object() ? input->find("messages") : nullptr;
    if (messages == nullptr)
      return line_error(line_no, "\"input\" must be an object with messages");
    Status fields = only(*input, {"messages", "tools", "parallel_tool_calls"}, "\"input\"");
    if (!fields.ok()) return line_error(line_no, fields.message());
    auto c = conversation(*input, *messages, "input.");
    if (!c.ok()) return line_error(line_no, c.status().message());
    messages = &c->messages.messages;
    auto prompt = chat.prompt(*messages, c->tools);
    if (!prompt.ok()) return line_error(line_no, prompt.status().message());
    Pair pair;
    pair.prompt = std::move(prompt).value();
    for (const char* key : {"preferred_output", "non_preferred_output"}) {
      auto reply = preference_reply(o, key);
      if (!reply.ok()) return line_error(line_no, reply.status().message());
      JsonArray conversation = messages->as_array();
      conversation.push_back(**reply);
      std::vector<int32_t> ids;
      std::vector<uint8_t> learn;
      if (Status s = chat.append_conversation(Json(std::move(conversation)), c->tools, ids, learn);
          !s.ok()) {
        return line_error(line_no, s.message());
      }
      if (ids.size() <= pair.prompt.size() ||
          !std::equal(pair.prompt.begin(), pair.prompt.end(), ids.begin())) {
        return line_error(line_no, std::string(key) +
                                       ": the chat template does not render the "
                                       "prompt as the start of the conversation "
                                       "with its reply");
      }
      (key == std::string_view("preferred_output") ? pair.chosen : pair.rejected)
          .assign(ids.begin() + static_cast<std::ptrdiff_t>(pair.prompt.size()), ids.end());
    }
    tokens += static_cast<int64_t>(pair.prompt.size() + pair.chosen.size() + pair.rejected.size());
    if (tokens > limits.max_tokens) {
      return line_error(line_no,
                        "the dataset exceeds " + std::to_string(limits.max_tokens) + " tokens");
    }
    d.pairs_.push_back(std::move(pair));
    return {};
  }));
  if (d.pairs_.empty()) return invalid_argument("the dataset has no preference pairs");
  return d;
}

Result<PreferenceData> PreferenceData::from_jsonl(const std::filesystem::path& path,
                                                  const ChatTemplate& chat,
                                                  const DatasetLimits& limits) {
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(path, limits.max_file_bytes));
  auto d = from_jsonl_text(text, chat, limits);
  if (!d.ok()) return invalid_argument(path.filename().string() + ": " + d.status().message());
  return d;
}

void PreferenceData::side(int64_t i, bool chosen, int64_t seq_len, std::vector<int32_t>& ids,
                          std::vector<int32_t>& targets) const {
  const Pair& p = pair(i);
  const std::vector<int32_t>& reply = chosen ? p.chosen : p.rejected;
  std::vector<int32_t> all = p.prompt;
  all.insert(all.end(), reply.begin(), reply.end());
  // Inputs all[0, n - 1), targets all[1, n); the first `drop` dropped to fit seq_len.
  const int64_t n = static_cast<int64_t>(all.size());
  const int64_t drop = std::max<int64_t>(0, (n - 1) - seq_len);
  const int64_t reply_from = static_cast<int64_t>(p.prompt.size());
  for (int64_t t = drop; t + 1 < n && t - drop < seq_len; ++t) {
    ids.push_back(all[static_cast<size_t>(t)]);
    targets.push_back(t + 1 >= reply_from ? all[static_cast<size_t>(t + 1)] : -1);
  }
}

int64_t Dataset::rows(int64_t seq_len) const { return seq_len < 1 ? 0 : (tokens() - 1) / seq_len; }

void Dataset::row(int64_t r, int64_t seq_len, std::vector<int32_t>& ids,
                  std::vector<int32_t>& targets) const {
  const size_t begin = static_cast<size_t>(r * seq_len);
  for (size_t i = begin; i < begin + static_cast<size_t>(seq_len); ++i) {
    ids.push_back(ids_[i]);
    targets.push_back(learn_[i + 1] ? ids_[i + 1] : -1);
  }
}

}  // namespace mh::engine
