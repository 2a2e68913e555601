#include "platform/engine/chat_template.h"

#include <algorithm>

#include "platform/engine/files.h"

namespace mh::engine {
namespace {

constexpr size_t kMaxConfigBytes = size_t{16} << 20;

Status template_error(std::string_view what) {
  return invalid_argument("chat template: " + std::string(what));
}

// transformers' special tokens map: bos_token and the others, as strings (an AddedToken object's
// "content"), and additional_special_tokens as a list.
jinja::Dict special_tokens(const Json& config) {
  jinja::Dict out;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    const Json* v = config.find(key);
    if (v == nullptr) continue;
    if (v->is_string()) {
      out.emplace_back(key, jinja::Value(v->as_string()));
    } else if (const Json* content = v->is_object() ? v->find("content") : nullptr;
               content != nullptr && content->is_string()) {
      out.emplace_back(key, jinja::Value(content->as_string()));
    }
  }
  if (const Json* extra = config.find("additional_special_tokens"); extra && extra->is_array()) {
    jinja::List list;
    for (const Json& t : extra->as_array()) {
      if (t.is_string()) list.push_back(jinja::Value(t.as_string()));
      if (const Json* c = t.is_object() ? t.find("content") : nullptr; c && c->is_string()) {
        list.push_back(jinja::Value(c->as_string()));
      }
    }
    out.emplace_back("additional_special_tokens", jinja::Value(std::move(list)));
  }
  return out;
}

Result<jinja::Template> parse_template(std::string_view text, std::string_view where) {
  auto t = jinja::Template::parse(text);
  if (!t.ok()) return template_error(std::string(where) + ": " + t.status().message());
  return t;
}

}  // namespace

ChatTemplate::ChatTemplate(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {
  auto start = tokenizer.special_token("<|im_start|>");
  auto end = tokenizer.special_token("<|im_end|>");
  if (start && end) {
    start_ = *start;
    end_ = *end;
  }
}

Result<ChatTemplate> ChatTemplate::load(const std::filesystem::path& dir,
                                        const Tokenizer& tokenizer) {
  ChatTemplate t(tokenizer);
  const auto config_path = dir / "tokenizer_config.json";
  const auto jinja_path = dir / "chat_template.jinja";
  Json config;
  if (std::filesystem::exists(config_path)) {
    MH_ASSIGN_OR_RETURN(t.config_text_, read_text_file(config_path, kMaxConfigBytes));
    JsonLimits limits;
    limits.max_depth = 16;
    auto parsed = parse_json(t.config_text_, limits);
    if (!parsed.ok())
      return invalid_argument("tokenizer_config.json: " + parsed.status().message());
    if (!parsed->is_object()) return invalid_argument("tokenizer_config.json must be an object");
    config = *parsed;
    t.special_tokens_ = special_tokens(config);
  }
  if (std::filesystem::exists(jinja_path)) {
    MH_ASSIGN_OR_RETURN(t.jinja_text_, read_text_file(jinja_path, kMaxConfigBytes));
    MH_ASSIGN_OR_RETURN(auto parsed, parse_template(t.jinja_text_, "chat_template.jinja"));
    t.jinja_ = std::move(parsed);
    return t;
  }
  const Json* chat = config.is_object() ? config.find("chat_template") : nullptr;
  if (chat == nullptr || chat->is_null()) return t;
  if (chat->is_string()) {
    MH_ASSIGN_OR_RETURN(auto parsed, parse_template(chat->as_string(), "tokenizer_config.json"));
    t.jinja_ = std::move(parsed);
    return t;
  }
  // Named templates: [{"name": "default", "template": ...}, {"name": "tool_use", ...}].
  if (!chat->is_array()) {
    return template_error("tokenizer_config.json's chat_template must be a string or a list");
  }
  for (const Json& named : chat->as_array()) {
    const Json* name = named.find("name");
    const Json* text = named.find("template");
    if (name == nullptr || text == nullptr || !name->is_string() || !text->is_string()) {
      return template_error("each named chat_template needs a \"name\" and a \"template\"");
    }
    const std::string& n = name->as_string();
    if (n != "default" && n != "tool_use") continue;  // others are only chosen by name
    MH_ASSIGN_OR_RETURN(auto parsed,
                        parse_template(text->as_string(), "chat_template \"" + n + "\""));
    (n == "default" ? t.jinja_ : t.tool_jinja_) = std::move(parsed);
  }
  if (!t.jinja_ && t.tool_jinja_) t.jinja_ = t.tool_jinja_;
  if (!t.jinja_) return template_error("tokenizer_config.json names no \"default\" chat template");
  return t;
}

Result<jinja::Rendered> ChatTemplate::render_jinja(const Json& messages, const Json& tools,
                                                   bool add_generation_prompt) const {
  const bool with_tools = !tools.is_null();
  const jinja::Template& t = with_tools && tool_jinja_ ? *tool_jinja_ : *jinja_;
  jinja::Dict context = special_tokens_;
  context.emplace_back("messages", jinja::Value::from_json(messages));
  context.emplace_back("tools", jinja::Value::from_json(tools));
  context.emplace_back("documents", jinja::Value());
  context.emplace_back("add_generation_prompt", jinja::Value(add_generation_prompt));
  return t.render(context);
}

void ChatTemplate::append_builtin(std::string_view role, std::string_view content,
                                  std::vector<int32_t>& ids, std::vector<uint8_t>* learn) const {
  auto push = [&](const std::vector<int32_t>& part, bool target) {
    ids.insert(ids.end(), part.begin(), part.end());
    if (learn != nullptr) learn->insert(learn->end(), part.size(), target ? 1 : 0);
  };
  const bool target = learn != nullptr && role == "assistant";
  if (start_ >= 0) {
    push({start_}, false);
    push(tokenizer_->encode(std::string(role) + "\n", false), false);
    push(tokenizer_->encode(content, false), target);
    push({end_}, target);
    push(tokenizer_->encode("\n", false), false);
  } else {
    push(tokenizer_->encode(std::string(role) + ": ", false), false);
    push(tokenizer_->encode(std::string(content) + "\n\n", false), target);
  }
}

namespace {

// Each message's role and content (strings), for the built-in layouts.
Status for_each_message(const Json& messages,
                        const std::function<void(const std::string&, const std::string&)>& fn) {
  if (!messages.is_array()) return invalid_argument("messages must be an array", "messages");
  for (size_t i = 0; i < messages.as_array().size(); ++i) {
    const Json& m = messages.as_array()[i];
    const Json* role = m.find("role");
    const Json* content = m.find("content");
    if (role == nullptr || !role->is_string() || content == nullptr || !content->is_string()) {
      return invalid_argument("messages[" + std::to_string(i) + "] needs a string role and content",
                              "messages");
    }
    // Tool calls and replies need a template that lays them out.
    if (m.find("tool_calls") != nullptr || role->as_string() == "tool") {
      return invalid_argument(
          "this model's chat format has no tools (messages[" + std::to_string(i) + "])",
          "messages");
    }
    fn(role->as_string(), content->as_string());
  }
  return {};
}

}  // namespace

Result<std::vector<int32_t>> ChatTemplate::builtin_ids(const Json& messages,
                                                       bool reply_start) const {
  std::vector<int32_t> ids;
  MH_TRY(for_each_message(messages, [&](const std::string& role, const std::string& content) {
    append_builtin(role, content, ids, nullptr);
  }));
  if (reply_start) {
    if (start_ >= 0) ids.push_back(start_);
    const auto role = tokenizer_->encode(start_ >= 0 ? "assistant\n" : "assistant: ", false);
    ids.insert(ids.end(), role.begin(), role.end());
  }
  return ids;
}

Result<std::string> ChatTemplate::render(const Json& messages, const Json& tools,
                                         bool add_generation_prompt) const {
  if (jinja_) {
    MH_ASSIGN_OR_RETURN(jinja::Rendered r, render_jinja(messages, tools, add_generation_prompt));
    return std::move(r.text);
  }
  if (!tools.is_null()) return invalid_argument("this model's chat format has no tools", "tools");
  MH_ASSIGN_OR_RETURN(std::vector<int32_t> ids, builtin_ids(messages, add_generation_prompt));
  return tokenizer_->decode(ids);
}

Result<std::vector<int32_t>> ChatTemplate::prompt(const Json& messages, const Json& tools) const {
  if (jinja_) {
    MH_ASSIGN_OR_RETURN(jinja::Rendered r, render_jinja(messages, tools, true));
    // As apply_chat_template(tokenize=True): special tokens in the rendering are read, and no
    // post-processor tokens are added (templates write their own BOS).
    return tokenizer_->encode(r.text, true);
  }
  if (!tools.is_null()) return invalid_argument("this model's chat format has no tools", "tools");
  return builtin_ids(messages, true);
}

Status ChatTemplate::append_conversation(const Json& messages, const Json& tools,
                                         std::vector<int32_t>& ids,
                                         std::vector<uint8_t>& learn) const {
  if (!jinja_) {
    if (!tools.is_null()) return invalid_argument("this model's chat format has no tools", "tools");
    return for_each_message(messages, [&](const std::string& role, const std::string& content) {
      append_builtin(role, content, ids, &learn);
    });
  }
  MH_ASSIGN_OR_RETURN(jinja::Rendered whole, render_jinja(messages, tools, false));
  std::vector<std::pair<size_t, size_t>> spans = whole.generation;
  if (!jinja_->has_generation()) {
    // Each assistant turn is what its message adds to the conversation before it, prompted.
    const JsonArray& all = messages.as_array();
    for (size_t i = 0; i < all.size(); ++i) {
      const Json* role = all[i].find("role");
      if (role == nullptr || !role->is_string() || role->as_string() != "assistant") continue;
      const Json before(JsonArray(all.begin(), all.begin() + static_cast<long>(i)));
      const Json through(JsonArray(all.begin(), all.begin() + static_cast<long>(i) + 1));
      MH_ASSIGN_OR_RETURN(jinja::Rendered prompt, render_jinja(before, tools, true));
      MH_ASSIGN_OR_RETURN(jinja::Rendered turn, render_jinja(through, tools, false));
      if (!std::string_view(whole.text).starts_with(turn.text) ||
          !std::string_view(turn.text).starts_with(prompt.text)) {
        return template_error(
            "it does not render a conversation's start as a prefix of the whole, so the "
            "assistant turns cannot be found (messages[" +
            std::to_string(i) + "]); a template with {% generation %} blocks can be trained on");
      }
      spans.emplace_back(prompt.text.size(), turn.text.size());
    }
  }
  std::sort(spans.begin(), spans.end());
  size_t at = 0;
  auto push = [&](size_t end, bool target) {
    if (end <= at) return;
    const auto part = tokenizer_->encode(std::string_view(whole.text).substr(at, end - at), true);
    ids.insert(ids.end(), part.begin(), part.end());
    learn.insert(learn.end(), part.size(), target ? 1 : 0);
    at = end;
  };
  for (const auto& [begin, end] : spans) {
    if (begin < at) continue;  // overlapping spans: the first wins
    push(begin, false);
    push(end, true);
  }
  push(whole.text.size(), false);
  return {};
}

std::optional<int32_t> ChatTemplate::end_of_text() const {
  if (auto eot = tokenizer_->special_token("<|endoftext|>")) return eot;
  for (const auto& [key, value] : special_tokens_) {
    if (key == "eos_token" && value.is_string())
      return tokenizer_->special_token(value.as_string());
  }
  return std::nullopt;
}

Status ChatTemplate::save(const std::filesystem::path& dir) const {
  if (!config_text_.empty())
    MH_TRY(write_file_atomically(dir / "tokenizer_config.json", config_text_));
  if (!jinja_text_.empty()) MH_TRY(write_file_atomically(dir / "chat_template.jinja", jinja_text_));
  return {};
}

}  // namespace mh::engine
