// ChatTemplate: how a model lays out a conversation. A model that ships a Jinja chat template
// (tokenizer_config.json's "chat_template", or chat_template.jinja) is prompted through it as
// transformers' apply_chat_template prompts it, with its special tokens (bos_token, eos_token,
// ...) from tokenizer_config.json; the rendering is tokenized with special tokens read. A model
// without one (the platform's own presets) uses ChatML when its tokenizer has <|im_start|> and
// <|im_end|>, plain "role: content" text otherwise, with message contents always encoded as text.
//
// For training, a conversation's assistant turns are learnt and nothing else: the spans a
// template's `{% generation %}` blocks write, or else the text each assistant message adds to
// the rendering of the messages before it (which must render as a prefix of the whole).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/jinja/template.h"
#include "platform/engine/json.h"
#include "platform/engine/tokenizer.h"

namespace mh::engine {

class ChatTemplate {
 public:
  // The built-in layout for `tokenizer` (ChatML or plain text).
  explicit ChatTemplate(const Tokenizer& tokenizer);
  // The model directory's template (tokenizer_config.json, then chat_template.jinja), or the
  // built-in layout when it has none. A template that does not parse is refused, naming what it
  // uses that is not implemented.
  static Result<ChatTemplate> load(const std::filesystem::path& dir, const Tokenizer& tokenizer);

  bool builtin() const { return !jinja_.has_value(); }
  // The template's text as its files hold it (empty for a built-in layout).
  std::string source() const { return config_text_ + jinja_text_; }

  // The text a conversation renders to: `messages` and `tools` as OpenAI's chat API sends them
  // (tools null or absent: none). Built-in layouts render as they tokenize.
  Result<std::string> render(const Json& messages, const Json& tools,
                             bool add_generation_prompt) const;
  // The prompt's tokens for generating the next assistant turn.
  Result<std::vector<int32_t>> prompt(const Json& messages, const Json& tools) const;
  // Appends a conversation's tokens (with `tools`, null for none), and whether each is learnt
  // (the assistant turns, tool calls included).
  Status append_conversation(const Json& messages, const Json& tools, std::vector<int32_t>& ids,
                             std::vector<uint8_t>& learn) const;

  // The token that ends a training example: <|endoftext|>, or else tokenizer_config.json's
  // eos_token.
  std::optional<int32_t> end_of_text() const;

  // Writes the files the template came from into `dir` (nothing for a built-in layout).
  Status save(const std::filesystem::path& dir) const;

 private:
  Result<jinja::Rendered> render_jinja(const Json& messages, const Json& tools,
                                       bool add_generation_prompt) const;
  void append_builtin(std::string_view role, std::string_view content, std::vector<int32_t>& ids,
                      std::vector<uint8_t>* learn) const;
  Result<std::vector<int32_t>> builtin_ids(const Json& messages, bool reply_start) const;

  const Tokenizer* tokenizer_;
  int32_t start_ = -1, end_ = -1;  // ChatML's markers, when the built-in layout is ChatML
  std::optional<jinja::Template> jinja_, tool_jinja_;  // tool_jinja_: the "tool_use" template
  jinja::Dict special_tokens_;                         // bos_token, eos_token, ...
  std::string config_text_, jinja_text_;               // the files, as read
};

}  // namespace mh::engine
