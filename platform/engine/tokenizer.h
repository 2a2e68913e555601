// Tokenizer: byte-level BPE as GPT-2 defined it and Hugging Face's `tokenizers` stores it.
//
// Text is first split at special tokens ("<|endoftext|>"), then into pre-tokens by GPT-2's
// pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+); each
// pre-token's bytes are merged lowest-rank pair first. Every byte has a token, so any input,
// valid UTF-8 or not, encodes, and decoding gives back exactly the bytes encoded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "platform/base/status.h"

namespace mh::engine {

class Tokenizer {
 public:
  // From a Hugging Face tokenizer.json (model BPE, pre-tokenizer ByteLevel).
  static Result<Tokenizer> from_tokenizer_json(std::string_view text);
  // From GPT-2's vocab.json and merges.txt; vocab entries that are not byte-level strings
  // ("<|endoftext|>") become special tokens.
  static Result<Tokenizer> from_vocab_merges(std::string_view vocab_json,
                                             std::string_view merges_txt);
  // `dir`/tokenizer.json, or else `dir`/vocab.json and `dir`/merges.txt.
  static Result<Tokenizer> load(const std::filesystem::path& dir);

  // Token ids of `text`. With allow_special, special tokens written in the text become their
  // ids; without, they are encoded as ordinary text (for untrusted input).
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  // The bytes the ids stand for (not always valid UTF-8: a token may end mid-character).
  // Ids outside the vocabulary are refused.
  Result<std::string> decode(std::span<const int32_t> ids) const;
  // The bytes of one token (empty for an id outside the vocabulary).
  const std::string& token_bytes(int32_t id) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  std::optional<int32_t> special_token(std::string_view content) const;

  // tokenizer.json as transformers and `tokenizers` read it.
  std::string to_tokenizer_json() const;
  Status save(const std::filesystem::path& dir) const;

  // The pre-tokens of `text` (no special-token handling), as byte ranges: for tests and tools.
  static std::vector<std::string_view> pre_tokenize(std::string_view text);

 private:
  friend Result<Tokenizer> train_bpe(std::span<const std::string> texts,
                                     const struct BpeTrainerOptions& options);
  struct Pair {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  Status add_token(std::string bytes, int32_t id, bool special);
  Status add_merge(std::string_view left, std::string_view right, std::string_view where);
  Status finish();
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;  // id -> bytes (a special token: its content)
  std::vector<bool> special_;
  std::unordered_map<std::string, int32_t> ids_;  // bytes -> id, ordinary tokens
  std::vector<int32_t> special_ids_;
  std::vector<std::pair<int32_t, int32_t>> merges_;  // in rank order
  std::unordered_map<uint64_t, Pair> pairs_;
  int32_t byte_ids_[256] = {};
  bool add_prefix_space_ = false;
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
