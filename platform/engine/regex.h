// Regex: a compiled Unicode regular expression (PCRE2 with its JIT), for the patterns that
// tokenizer.json files carry (`Split` and `Replace` patterns: `\p{L}`, `(?i:...)`, look-ahead).
// Patterns are matched as Hugging Face `tokenizers` matches them with Oniguruma: UTF-8, Unicode
// classes for `\s`, `\w` and `\d`, leftmost matches one after another. Text that is not valid
// UTF-8 is matched too; its invalid bytes never match anything.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh::engine {

class Regex {
 public:
  // kInvalidArgument, with PCRE2's message and the offset, for a pattern PCRE2 rejects.
  static Result<Regex> compile(std::string_view pattern);
  // A pattern that matches `literal` and nothing else.
  static std::string escape(std::string_view literal);

  // Calls on_match(begin, end) for each match, from the left, without overlaps. After an empty
  // match the search moves on one character, and an empty match right where the previous match
  // ended is skipped (as Oniguruma's find_iter does). Fails only where PCRE2 gives up (its
  // match limits), which no pattern of a published tokenizer reaches on text under the limits.
  template <typename F>
  Status for_each_match(std::string_view text, F&& on_match) const {
    size_t at = 0;
    bool matched_before = false;
    size_t last_end = 0;
    while (at <= text.size()) {
      size_t begin, end;
      MH_ASSIGN_OR_RETURN(bool found, find(text, at, begin, end));
      if (!found) break;
      if (begin == end && matched_before && last_end == end) {
        at = next_char(text, at);
        continue;
      }
      on_match(begin, end);
      matched_before = true;
      last_end = end;
      at = end;
    }
    return {};
  }

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  // The first match at or after `at`; false when there is none.
  Result<bool> find(std::string_view text, size_t at, size_t& begin, size_t& end) const;
  static size_t next_char(std::string_view text, size_t at);

  std::shared_ptr<const Code> code_;
  std::string pattern_;
};

}  // namespace mh::engine
