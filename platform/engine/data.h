// Training data: JSONL datasets tokenized into one packed stream of tokens, cut into rows.
//
// Each line is one example, in one of three shapes:
//   {"text": "..."}                                  every token is learnt
//   {"prompt": "...", "completion": "..."}           only the completion's tokens are learnt
//   {"messages": [{"role": "...", "content": "..."}]} rendered through the model's chat
//                                                    template (chat_template.h); only the
//                                                    assistant turns are learnt
// Examples end with the end-of-text token and follow one another in the stream (packing), so no
// row is padding. A row of seq_len inputs predicts the next seq_len tokens; tokens not learnt
// have target -1.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/chat_template.h"
#include "platform/engine/json.h"
#include "platform/engine/tokenizer.h"

namespace mh::engine {

struct DatasetLimits {
  size_t max_line_bytes = size_t{8} << 20;
  size_t max_file_bytes = size_t{4} << 30;
  int64_t max_tokens = int64_t{1} << 31;
};

class Dataset {
 public:
  // Reads and tokenizes a JSONL file. Any bad line fails the whole file, naming the line.
  // Conversations go through `chat` (null: the tokenizer's built-in layout); each example ends
  // with the chat template's end_of_text token.
  static Result<Dataset> from_jsonl(const std::filesystem::path& path, const Tokenizer& tokenizer,
                                    const DatasetLimits& limits = {},
                                    const ChatTemplate* chat = nullptr);
  static Result<Dataset> from_jsonl_text(std::string_view text, const Tokenizer& tokenizer,
                                         const DatasetLimits& limits = {},
                                         const ChatTemplate* chat = nullptr);

  int64_t tokens() const { return static_cast<int64_t>(ids_.size()); }
  int64_t examples() const { return examples_; }
  // Rows of seq_len inputs (plus the one token after them) that the stream holds.
  int64_t rows(int64_t seq_len) const;
  // Row `r`'s inputs and targets appended to `ids` and `targets`.
  void row(int64_t r, int64_t seq_len, std::vector<int32_t>& ids,
           std::vector<int32_t>& targets) const;

 private:
  std::vector<int32_t> ids_;
  std::vector<uint8_t> learn_;  // 1: this token is a target
  int64_t examples_ = 0;
};

// Preference pairs for DPO, one per line in OpenAI's format:
//   {"input": {"messages": [...]},
//    "preferred_output": [{"role": "assistant", "content": "..."}],
//    "non_preferred_output": [{"role": "assistant", "content": "..."}]}
// The prompt is the input's conversation as the chat template renders it for a reply; each side
// is the conversation with that reply, whose tokens after the prompt (the reply and the turn's
// end) are the side's targets. Any bad line fails the whole file, naming the line and field.
class PreferenceData {
 public:
  struct Pair {
    std::vector<int32_t> prompt, chosen, rejected;  // chosen, rejected: the reply's tokens
  };
  // Tokenized by `chat`'s tokenizer.
  static Result<PreferenceData> from_jsonl(const std::filesystem::path& path,
                                           const ChatTemplate& chat,
                                           const DatasetLimits& limits = {});
  static Result<PreferenceData> from_jsonl_text(std::string_view text, const ChatTemplate& chat,
                                                const DatasetLimits& limits = {});

  int64_t size() const { return static_cast<int64_t>(pairs_.size()); }
  const Pair& pair(int64_t i) const { return pairs_[static_cast<size_t>(i)]; }
  // One side of pair i as a row: the prompt and reply less its last token as inputs, the next
  // token as the target where it is the reply's (-1 before), both cut to seq_len tokens (the
  // prompt's start is dropped first, so the reply is kept whole where it fits).
  void side(int64_t i, bool chosen, int64_t seq_len, std::vector<int32_t>& ids,
            std::vector<int32_t>& targets) const;

 private:
  std::vector<Pair> pairs_;
};

// Every string of a JSONL dataset's examples (texts, prompts, completions, message contents),
// checked as Dataset checks them: the corpus a tokenizer for that data is learned from.
Result<std::vector<std::string>> jsonl_texts(std::string_view text,
                                             const DatasetLimits& limits = {});

}  // namespace mh::engine
