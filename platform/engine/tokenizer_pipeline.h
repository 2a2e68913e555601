// The stages of a tokenizer.json around its model, as Hugging Face `tokenizers` defines them:
//
//   normalizer     NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence
//   pre_tokenizer  ByteLevel (with or without GPT-2's pattern), Split (regex or string, every
//                  behavior, invert), Metaspace, Digits, Sequence
//   decoder        ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence
//
// Each stage is parsed from its JSON object; a type or option this engine does not implement is
// refused with its name, never skipped. Text is bytes throughout: a byte-level tokenizer's
// symbols are the raw bytes its printable characters stand for, so the ByteLevel stages map
// nothing at run time, and decoding keeps bytes that are not UTF-8 instead of writing U+FFFD.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/json.h"
#include "platform/engine/regex.h"

namespace mh::engine {

// A run of text on its way to the model. `at_start`: it begins where the whole input began
// (Metaspace's prepend_scheme "first" asks).
struct TextPiece {
  std::string_view text;
  bool at_start = false;
};

// Owns the strings a stage makes (pieces point into them) for the length of one encode.
class PieceArena {
 public:
  std::string_view keep(std::string s) { return owned_.emplace_back(std::move(s)); }

 private:
  std::deque<std::string> owned_;
};

class NormalizerStep;
class PreTokenizerStep;
class DecoderStep;

class Normalizer {
 public:
  // From tokenizer.json's "normalizer" (null: none). `where` names it in errors.
  static Result<Normalizer> parse(const Json& json, std::string_view where);
  bool empty() const { return steps_.empty(); }
  std::string apply(std::string_view text) const;

 private:
  std::vector<std::shared_ptr<const NormalizerStep>> steps_;
};

class PreTokenizer {
 public:
  // From tokenizer.json's "pre_tokenizer" (null: the whole piece is one word).
  static Result<PreTokenizer> parse(const Json& json, std::string_view where);
  // The GPT-2 ByteLevel pre-tokenizer (its pattern, no prefix space).
  static PreTokenizer gpt2();
  // Whether a ByteLevel stage maps the pieces to bytes: the model's symbols are then bytes.
  bool byte_level() const { return byte_level_; }
  // Splits `pieces` in place; what it makes lives in `arena`.
  Status apply(std::vector<TextPiece>& pieces, PieceArena& arena) const;

 private:
  std::vector<std::shared_ptr<const PreTokenizerStep>> steps_;
  bool byte_level_ = false;
};

class Decoder {
 public:
  // From tokenizer.json's "decoder" (null: the tokens joined with spaces, as `tokenizers` does).
  static Result<Decoder> parse(const Json& json, std::string_view where);
  static Decoder byte_level();
  bool has_byte_level() const { return byte_level_; }
  // The text of `tokens` (their tokenizer.json spellings, in order).
  std::string apply(std::vector<std::string> tokens) const;

 private:
  std::vector<std::shared_ptr<const DecoderStep>> steps_;
  bool null_ = true;
  bool byte_level_ = false;
};

// GPT-2's byte <-> printable character mapping: printable Latin-1 bytes stand for themselves,
// the others for U+0100, U+0101, ... in byte order (a space is 'Ġ', U+0120).
std::string bytes_to_byte_level(std::string_view bytes);
// The bytes a byte-level string stands for; false (out untouched) when it is not one.
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace mh::engine
