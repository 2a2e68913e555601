// Tokenizer: a Hugging Face tokenizer.json run as the `tokenizers` library runs it, so that ids
// are the reference's, id for id:
//
//   added tokens   found first, in the raw text (and, for "normalized" ones, in the normalized
//                  text), leftmost-longest, with their lstrip / rstrip / single_word rules
//   normalizer     on each run of text between them        (tokenizer_pipeline.h)
//   pre_tokenizer  splits each run into words                (tokenizer_pipeline.h)
//   model          BPE: byte-level (GPT-2, Llama 3, Qwen) or over characters with byte_fallback
//                  and unk (SentencePiece-style: Llama 2, Mistral, Gemma); ignore_merges
//   post_processor TemplateProcessing's BOS/EOS, when asked for (with_special_tokens)
//   decoder        back to text                              (tokenizer_pipeline.h)
//
// GPT-2's vocab.json + merges.txt load too, and train_bpe learns a byte-level BPE from data.
// What a file asks for that this engine does not implement is refused by name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/tokenizer_pipeline.h"

namespace mh::engine {

class Tokenizer {
 public:
  // From a Hugging Face tokenizer.json.
  static Result<Tokenizer> from_tokenizer_json(std::string_view text);
  // From GPT-2's vocab.json and merges.txt; vocab entries that are not byte-level strings
  // ("<|endoftext|>") become special tokens.
  static Result<Tokenizer> from_vocab_merges(std::string_view vocab_json,
                                             std::string_view merges_txt);
  // `dir`/tokenizer.json, or else `dir`/vocab.json and `dir`/merges.txt.
  static Result<Tokenizer> load(const std::filesystem::path& dir);

  // Token ids of `text`, without the post-processor's tokens. With allow_special, special
  // tokens written in the text become their ids; without, they are encoded as ordinary text
  // (for untrusted input; `tokenizers`' encode_special_tokens). Added tokens that are not
  // special are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  // `ids` with the post-processor's tokens around them (Llama's BOS, say): what `tokenizers`
  // encodes with add_special_tokens.
  std::vector<int32_t> with_special_tokens(std::vector<int32_t> ids) const;
  // The text the ids stand for, as the decoder writes it; bytes that are not UTF-8 are kept as
  // they are rather than replaced. Ids outside the vocabulary are refused.
  Result<std::string> decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // What the last of `ids` adds to the text of the ones before it (for streaming): the
  // difference of the decodings of a short window, so decoders that treat the first token
  // differently come out right.
  std::string decode_next(std::span<const int32_t> ids) const;

  int32_t vocab_size() const { return static_cast<int32_t>(surface_.size()); }
  // The id of an added token (special or not) spelt `content`.
  std::optional<int32_t> special_token(std::string_view content) const;
  // An id as tokenizer.json spells it ("Ġthe", "▁the", "<0x0A>", "<|im_start|>"); empty for an
  // id outside the vocabulary.
  const std::string& token_text(int32_t id) const;
  bool is_special(int32_t id) const;

  // The tokenizer.json this was loaded from, or one written for a GPT-2-style or trained
  // tokenizer, which transformers and `tokenizers` read back.
  const std::string& to_tokenizer_json() const { return json_; }
  Status save(const std::filesystem::path& dir) const;

  // GPT-2's pre-tokens of `text` (its regex), as byte ranges: for the trainer, tests and tools.
  static std::vector<std::string_view> pre_tokenize(std::string_view text);

 private:
  friend Result<Tokenizer> train_bpe(std::span<const std::string> texts,
                                     const struct BpeTrainerOptions& options);
  struct Pair {
    int32_t rank;
    int32_t merged;
  };
  struct AddedToken {
    std::string content;  // what is matched (normalized, for a "normalized" token)
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
  };
  // Added tokens as a byte trie, matched leftmost-longest.
  struct AddedTrie {
    struct Node {
      int32_t token = -1;  // index into added_ when a token ends here
      std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    };
    std::vector<Node> nodes;
    bool starts[256] = {};  // a token starts with this byte
    void insert(std::string_view s, int32_t token);
    // The longest token starting at text[at]; -1 when none.
    int32_t longest(std::string_view text, size_t at, size_t& end) const;
  };
  struct Segment {
    std::string_view text;  // text for the pipeline, when added < 0
    int32_t added = -1;     // the id of an added token
    bool at_start = false;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  Status add_vocab(std::string surface, int32_t id);
  Status add_merge(std::string_view left, std::string_view right, std::string_view where);
  Status add_added_tokens(const Json* list);
  void add_special(std::string content, int32_t id);
  Status finish();
  void split_added(std::string_view text, const AddedTrie& trie, bool allow_special,
                   bool at_start, std::vector<Segment>& out) const;
  Status encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge(std::vector<int32_t>& symbols) const;
  std::string gpt2_json() const;

  // id -> the token's spelling in tokenizer.json (added tokens: their content)
  std::vector<std::string> surface_;
  std::vector<uint8_t> special_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // A model symbol -> id: raw bytes for a byte-level model, the spelling otherwise.
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids_;
  std::unordered_map<uint64_t, Pair> pairs_;
  std::vector<std::pair<int32_t, int32_t>> merges_;  // in rank order
  int32_t byte_ids_[256] = {};                       // byte-level: each byte's token
  int32_t fallback_ids_[256] = {};                   // byte_fallback: "<0xXX>", or -1
  int32_t unk_id_ = -1;
  bool byte_level_ = true, byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;

  std::vector<AddedToken> added_;
  std::shared_ptr<const AddedTrie> raw_trie_, normalized_trie_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_ = PreTokenizer::gpt2();
  Decoder decoder_ = Decoder::byte_level();
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // TemplateProcessing's single sequence
  std::string json_;
};

struct BpeTrainerOptions {
  int32_t vocab_size = 4096;  // 256 bytes + merges + special tokens
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
};

// Learns a byte-level BPE tokenizer from `texts`: the most frequent adjacent pair within
// pre-tokens is merged until the vocabulary is full (ties go to the pair whose merged bytes sort
// first, so the result depends only on the input).
Result<Tokenizer> train_bpe(std::span<const std::string> texts, const BpeTrainerOptions& options);

}  // namespace mh::engine
