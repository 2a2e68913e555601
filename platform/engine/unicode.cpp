#include "platform/engine/unicode.h"

#include <cstdlib>
#include <utf8proc.h>

namespace mh::engine::unicode {

Char decode(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  size_t len;
  uint32_t cp, min;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2, cp = b0 & 0x1f, min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3, cp = b0 & 0x0f, min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {-1, 1};
  }
  if (i + len > s.size()) return {-1, 1};
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {-1, 1};
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {-1, 1};
  return {static_cast<int32_t>(cp), len};
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const Char c = decode(s, i);
    if (c.cp < 0) {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(s.substr(i, c.len));
    }
    i += c.len;
  }
  return out;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

namespace {

// Calls fn(run, valid) for the maximal runs of valid and of invalid UTF-8 in `text`.
template <typename F>
void for_each_run(std::string_view text, F&& fn) {
  size_t start = 0, i = 0;
  bool valid = true;
  while (i < text.size()) {
    const Char c = decode(text, i);
    const bool ok = c.cp >= 0;
    if (ok != valid) {
      if (i > start) fn(text.substr(start, i - start), valid);
      start = i;
      valid = ok;
    }
    i += c.len;
  }
  if (i > start) fn(text.substr(start, i - start), valid);
}

}  // namespace

std::string normalize(std::string_view text, Form form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case Form::kNfc: options |= UTF8PROC_COMPOSE; break;
    case Form::kNfd: options |= UTF8PROC_DECOMPOSE; break;
    case Form::kNfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case Form::kNfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  std::string out;
  out.reserve(text.size());
  for_each_run(text, [&](std::string_view run, bool valid) {
    // ASCII is in every normalization form already.
    bool ascii = true;
    for (char c : run) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
    if (!valid || ascii) {
      out += run;
      return;
    }
    utf8proc_uint8_t* mapped = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                static_cast<utf8proc_ssize_t>(run.size()), &mapped,
                                static_cast<utf8proc_option_t>(options));
    if (n < 0) {
      out += run;  // valid UTF-8 always maps; keep the text rather than lose it
    } else {
      out.append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
    }
    std::free(mapped);
  });
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const Char c = decode(text, i);
    if (c.cp < 0) {
      out += text[i];
    } else if (c.cp == 0x130) {
      // The one character whose full lowercase mapping is two (SpecialCasing.txt).
      append(out, 'i');
      append(out, 0x307);
    } else if (c.cp < 0x80) {
      out += static_cast<char>(c.cp >= 'A' && c.cp <= 'Z' ? c.cp + 32 : c.cp);
    } else {
      append(out, static_cast<uint32_t>(utf8proc_tolower(c.cp)));
    }
    i += c.len;
  }
  return out;
}

bool is_whitespace(int32_t cp) {
  return (cp >= 0x9 && cp <= 0xd) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
         cp == 0x205f || cp == 0x3000;
}

bool is_numeric(int32_t cp) {
  if (cp < 0) return false;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool is_word(int32_t cp) {
  if (cp < 0) return false;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return cp == 0x200c || cp == 0x200d;  // Join_Control
  }
}

}  // namespace mh::engine::unicode
