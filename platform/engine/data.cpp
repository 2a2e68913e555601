#include "platform/engine/data.h"

#include <fstream>
#include <functional>

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
  const Json* messages = nullptr;
};

// Parses a JSONL dataset, checking every line, and calls on_part for each piece of each example
// and end_example after each. Any bad line fails the whole file, naming the line.
Status for_each_example(std::string_view text, const DatasetLimits& limits,
                        const std::function<Status(const Part&)>& on_part,
                        const std::function<Status(int64_t line)>& end_example) {
  JsonLimits json_limits;
  json_limits.max_depth = 8;
  json_limits.max_bytes = limits.max_line_bytes;
  int64_t examples = 0;
  MH_TRY(for_each_line(text, [&](int64_t line_no, std::string_view line) -> Status {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return {};
    if (line.size() > limits.max_line_bytes) {
      return line_error(line_no, "longer than " + std::to_string(limits.max_line_bytes) + " bytes");
    }
    auto parsed = parse_json(line, json_limits);
    if (!parsed.ok()) return line_error(line_no, parsed.status().message());
    const Json& o = *parsed;
    if (!o.is_object()) return line_error(line_no, "must be a JSON object");
    if (const Json* messages = o.find("messages")) {
      if (!messages->is_array() || messages->as_array().empty()) {
        return line_error(line_no, "\"messages\" must be a non-empty array");
      }
      bool any_assistant = false;
      for (size_t i = 0; i < messages->as_array().size(); ++i) {
        const Json& m = messages->as_array()[i];
        const std::string* role = m.is_object() ? string_member(m, "role") : nullptr;
        const std::string* content = m.is_object() ? string_member(m, "content") : nullptr;
        if (role == nullptr || content == nullptr) {
          return line_error(
              line_no, "messages[" + std::to_string(i) + "] needs string \"role\" and \"content\"");
        }
        if (*role != "system" && *role != "user" && *role != "assistant") {
          return line_error(line_no, "messages[" + std::to_string(i) + "].role \"" + *role +
                                         "\" is not system, user or assistant");
        }
        any_assistant = any_assistant || *role == "assistant";
      }
      if (!any_assistant) return line_error(line_no, "no assistant message to learn from");
      static const std::string kNone;
      if (Status s = on_part({"messages", kNone, messages}); !s.ok()) {
        return line_error(line_no, s.message());
      }
    } else if (o.find("prompt") != nullptr || o.find("completion") != nullptr) {
      const std::string* prompt = string_member(o, "prompt");
      const std::string* completion = string_member(o, "completion");
      if (prompt == nullptr || completion == nullptr) {
        return line_error(line_no, "\"prompt\" and \"completion\" must both be strings");
      }
      if (completion->empty()) return line_error(line_no, "\"completion\" is empty");
      MH_TRY(on_part({"prompt", *prompt}));
      MH_TRY(on_part({"completion", *completion}));
    } else if (const std::string* t = string_member(o, "text")) {
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
    if (part.kind == "messages") return chat->append_conversation(*part.messages, d.ids_, d.learn_);
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
        for (const Json& m : part.messages->as_array()) out.push_back(m.find("content")->as_string());
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
