#include "platform/engine/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace mh::engine {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

// A thread's match data and JIT stack, reused across matches: a match allocates nothing.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  // Look-ahead over a long run of spaces recurses once per character; 8 MiB covers runs far
  // longer than any request may send.
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 << 10, 8 << 20, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buffer));
}

}  // namespace

Result<Regex> Regex::compile(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // UCP: \s, \w, \d and POSIX classes are Unicode's, as in Oniguruma's UTF-8 mode.
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (code == nullptr) {
    return invalid_argument("regex /" + std::string(pattern) + "/ does not compile at offset " +
                            std::to_string(offset) + ": " + pcre2_message(error));
  }
  auto owned = std::make_shared<Code>();
  owned->code = code;
  // Without the JIT (a platform it does not support) the interpreter matches the same.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Regex r;
  r.code_ = std::move(owned);
  r.pattern_ = std::string(pattern);
  return r;
}

std::string Regex::escape(std::string_view literal) {
  // \Q...\E quotes everything but "\E" itself, which is split across two quoted runs.
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      out += "\\E\\\\\\Q";
      continue;
    }
    out += literal[i];
  }
  out += "\\E";
  return out;
}

Result<bool> Regex::find(std::string_view text, size_t at, size_t& begin, size_t& end) const {
  MatchState& state = match_state();
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                             at, 0, state.data, state.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    return resource_exhausted("regex /" + pattern_ + "/: " + pcre2_message(rc));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

size_t Regex::next_char(std::string_view text, size_t at) {
  if (at >= text.size()) return text.size() + 1;
  const auto b = static_cast<uint8_t>(text[at]);
  size_t len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 1;
  // A truncated or invalid sequence moves on one byte.
  for (size_t k = 1; k < len; ++k) {
    if (at + k >= text.size() || (static_cast<uint8_t>(text[at + k]) & 0xc0) != 0x80) return at + 1;
  }
  return at + len;
}

}  // namespace mh::engine
