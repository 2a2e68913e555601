// Unicode for the tokenizer: UTF-8 decoding that tolerates bad bytes, the normalization forms
// (utf8proc), lowercasing as Rust's char::to_lowercase does it, and the character classes that
// Hugging Face `tokenizers` tests with Rust's char methods.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mh::engine::unicode {

// The code point at s[i] and its length in bytes; a byte that does not start a valid sequence
// is one byte long with code point -1.
struct Char {
  int32_t cp;
  size_t len;
};
Char decode(std::string_view s, size_t i);
void append(std::string& out, uint32_t cp);
// `s` with each byte that does not belong to a well-formed character replaced by U+FFFD (what a
// server writes into JSON, which must be UTF-8, for a model's arbitrary bytes).
std::string valid_utf8(std::string_view s);

enum class Form { kNfc, kNfd, kNfkc, kNfkd };
// `text` in normalization form `form`. Runs of bytes that are not valid UTF-8 pass through
// unchanged between the normalized runs around them.
std::string normalize(std::string_view text, Form form);
// Each character replaced by its full lowercase mapping (U+0130 becomes "i\u0307"; no
// context-dependent rules, as Rust's char::to_lowercase).
std::string lowercase(std::string_view text);

bool is_whitespace(int32_t cp);  // Rust's char::is_whitespace (White_Space)
bool is_numeric(int32_t cp);     // Rust's char::is_numeric: Nd, Nl, No
bool is_word(int32_t cp);        // the regex class \w: letters, marks, Nd, Pc

}  // namespace mh::engine::unicode
