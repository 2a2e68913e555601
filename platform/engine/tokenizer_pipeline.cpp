#include "platform/engine/tokenizer_pipeline.h"

#include <array>
#include <functional>
#include <map>

#include "platform/engine/unicode.h"

namespace mh::engine {

namespace {

Status stage_error(std::string_view where, std::string_view what) {
  return invalid_argument("tokenizer: " + std::string(where) + " " + std::string(what));
}

// The "type" of a stage's object.
Result<std::string> stage_type(const Json& json, std::string_view where) {
  if (!json.is_object()) return stage_error(where, "must be an object or null");
  const Json* type = json.find("type");
  if (type == nullptr || !type->is_string()) return stage_error(where, "has no \"type\"");
  return type->as_string();
}

Result<bool> bool_member(const Json& json, std::string_view key, std::string_view where,
                         std::optional<bool> fallback) {
  const Json* v = json.find(key);
  if (v == nullptr || v->is_null()) {
    if (fallback) return *fallback;
    return stage_error(where, "needs \"" + std::string(key) + "\"");
  }
  if (!v->is_bool()) return stage_error(where, "\"" + std::string(key) + "\" must be a boolean");
  return v->as_bool();
}

Result<std::string> string_member(const Json& json, std::string_view key, std::string_view where) {
  const Json* v = json.find(key);
  if (v == nullptr || !v->is_string()) {
    return stage_error(where, "needs a string \"" + std::string(key) + "\"");
  }
  return v->as_string();
}

// A "char" member (Metaspace's replacement, Strip's content): exactly one character.
Result<std::string> char_member(const Json& json, std::string_view key, std::string_view where) {
  MH_ASSIGN_OR_RETURN(std::string s, string_member(json, key, where));
  if (s.empty() || unicode::decode(s, 0).cp < 0 || unicode::decode(s, 0).len != s.size()) {
    return stage_error(where, "\"" + std::string(key) + "\" must be one character");
  }
  return s;
}

// {"String": "..."} or {"Regex": "..."}, compiled.
Result<Regex> pattern_member(const Json& json, std::string_view where) {
  const Json* p = json.find("pattern");
  if (p == nullptr || !p->is_object() || p->as_object().size() != 1 ||
      !p->as_object()[0].second.is_string()) {
    return stage_error(where, "needs \"pattern\": {\"String\": ...} or {\"Regex\": ...}");
  }
  const auto& [kind, value] = p->as_object()[0];
  if (kind == "String") return Regex::compile(Regex::escape(value.as_string()));
  if (kind == "Regex") {
    auto r = Regex::compile(value.as_string());
    if (!r.ok()) return stage_error(where, r.status().message());
    return r;
  }
  return stage_error(where, "pattern kind \"" + kind + "\" is not String or Regex");
}

// --- splitting, as NormalizedString::split does it -----------------------------------------

struct Span {
  size_t begin, end;
  bool match;
};

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Result<Behavior> behavior_member(const Json& json, std::string_view where) {
  MH_ASSIGN_OR_RETURN(std::string b, string_member(json, "behavior", where));
  static const std::map<std::string, Behavior, std::less<>> kNames = {
      {"Removed", Behavior::kRemoved},
      {"Isolated", Behavior::kIsolated},
      {"MergedWithPrevious", Behavior::kMergedWithPrevious},
      {"MergedWithNext", Behavior::kMergedWithNext},
      {"Contiguous", Behavior::kContiguous}};
  auto it = kNames.find(b);
  if (it == kNames.end()) return stage_error(where, "behavior \"" + b + "\" is not one of tokenizers'");
  return it->second;
}

// Spans of `text`: the regex's matches and the gaps between them.
Status regex_spans(const Regex& re, std::string_view text, std::vector<Span>& spans) {
  spans.clear();
  if (text.empty()) {
    spans.push_back({0, 0, false});
    return {};
  }
  size_t prev = 0;
  MH_TRY(re.for_each_match(text, [&](size_t b, size_t e) {
    if (prev != b) spans.push_back({prev, b, false});
    spans.push_back({b, e, true});
    prev = e;
  }));
  if (prev != text.size()) spans.push_back({prev, text.size(), false});
  return {};
}

// Spans of `text`: each character for which `is_match` holds, and the runs between them.
template <typename F>
void char_spans(std::string_view text, F&& is_match, std::vector<Span>& spans) {
  spans.clear();
  if (text.empty()) {
    spans.push_back({0, 0, false});
    return;
  }
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const unicode::Char c = unicode::decode(text, i);
    if (is_match(c.cp, text.substr(i, c.len))) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + c.len, true});
      last = i + c.len;
    }
    i += c.len;
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
}

// The pieces `spans` of `piece` make under `behavior`, appended to `out` (empty ones dropped).
void split_spans(const TextPiece& piece, std::vector<Span>& spans, Behavior behavior, bool invert,
                 std::vector<TextPiece>& out) {
  if (invert) {
    for (Span& s : spans) s.match = !s.match;
  }
  std::vector<Span> acc;
  bool previous = false;
  switch (behavior) {
    case Behavior::kIsolated:
      acc = spans;
      for (Span& s : acc) s.match = false;
      break;
    case Behavior::kRemoved:
      acc = spans;
      break;
    case Behavior::kContiguous:
      for (const Span& s : spans) {
        if (s.match == previous && !acc.empty()) {
          acc.back().end = s.end;
        } else {
          acc.push_back({s.begin, s.end, false});
        }
        previous = s.match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous && !acc.empty()) {
          acc.back().end = s.end;
        } else {
          acc.push_back({s.begin, s.end, false});
        }
        previous = s.match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous && !acc.empty()) {
          acc.back().begin = it->begin;
        } else {
          acc.push_back({it->begin, it->end, false});
        }
        previous = it->match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
  }
  for (const Span& s : acc) {
    if (s.match || s.end == s.begin) continue;  // removed, or empty
    out.push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
  }
}

const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const Regex& gpt2_regex() {
  static const Regex re = Regex::compile(kGpt2Pattern).value();
  return re;
}

struct ByteLevelTable {
  std::array<uint32_t, 256> to_cp{};
  std::map<uint32_t, uint8_t> to_byte;
  ByteLevelTable() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

std::string replace_all(const Regex& re, std::string_view text, std::string_view content) {
  std::string out;
  size_t prev = 0;
  // A match limit PCRE2 gives up at leaves the rest of the text as it was.
  (void)re.for_each_match(text, [&](size_t b, size_t e) {
    out.append(text.substr(prev, b - prev));
    out.append(content);
    prev = e;
  });
  out.append(text.substr(prev));
  return out;
}

}  // namespace

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  for (char c : bytes) unicode::append(out, byte_level_table().to_cp[static_cast<uint8_t>(c)]);
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
  std::string bytes;
  for (size_t i = 0; i < text.size();) {
    const unicode::Char c = unicode::decode(text, i);
    auto it = c.cp < 0 ? byte_level_table().to_byte.end()
                       : byte_level_table().to_byte.find(static_cast<uint32_t>(c.cp));
    if (it == byte_level_table().to_byte.end()) return false;
    bytes += static_cast<char>(it->second);
    i += c.len;
  }
  out += bytes;
  return true;
}

// --- normalizers ---------------------------------------------------------------------------

class NormalizerStep {
 public:
  virtual ~NormalizerStep() = default;
  virtual std::string apply(std::string text) const = 0;
};

namespace {

struct UnicodeForm : NormalizerStep {
  explicit UnicodeForm(unicode::Form f) : form(f) {}
  unicode::Form form;
  std::string apply(std::string text) const override { return unicode::normalize(text, form); }
};
struct Lowercase : NormalizerStep {
  std::string apply(std::string text) const override { return unicode::lowercase(text); }
};
struct Prepend : NormalizerStep {
  std::string prefix;
  std::string apply(std::string text) const override {
    return text.empty() ? text : prefix + text;
  }
};
struct ReplaceNorm : NormalizerStep {
  ReplaceNorm(Regex r, std::string c) : re(std::move(r)), content(std::move(c)) {}
  Regex re;
  std::string content;
  std::string apply(std::string text) const override { return replace_all(re, text, content); }
};
struct StripNorm : NormalizerStep {
  bool left = false, right = false;
  std::string apply(std::string text) const override {
    size_t b = 0, e = text.size();
    if (left) {
      while (b < e) {
        const unicode::Char c = unicode::decode(text, b);
        if (!unicode::is_whitespace(c.cp)) break;
        b += c.len;
      }
    }
    if (right) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>(text[start]) & 0xc0) == 0x80) --start;
        const unicode::Char c = unicode::decode(text, start);
        if (c.len != e - start || !unicode::is_whitespace(c.cp)) break;
        e = start;
      }
    }
    return text.substr(b, e - b);
  }
};

Status parse_normalizer(const Json& json, std::string_view where,
                        std::vector<std::shared_ptr<const NormalizerStep>>& steps) {
  MH_ASSIGN_OR_RETURN(std::string type, stage_type(json, where));
  if (type == "Sequence") {
    const Json* list = json.find("normalizers");
    if (list == nullptr || !list->is_array()) return stage_error(where, "needs \"normalizers\"");
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      MH_TRY(parse_normalizer(list->as_array()[i],
                              std::string(where) + ".normalizers[" + std::to_string(i) + "]",
                              steps));
    }
    return {};
  }
  if (type == "NFC") return steps.push_back(std::make_shared<UnicodeForm>(unicode::Form::kNfc)), Status();
  if (type == "NFD") return steps.push_back(std::make_shared<UnicodeForm>(unicode::Form::kNfd)), Status();
  if (type == "NFKC") return steps.push_back(std::make_shared<UnicodeForm>(unicode::Form::kNfkc)), Status();
  if (type == "NFKD") return steps.push_back(std::make_shared<UnicodeForm>(unicode::Form::kNfkd)), Status();
  if (type == "Lowercase") return steps.push_back(std::make_shared<Lowercase>()), Status();
  if (type == "Prepend") {
    auto p = std::make_shared<Prepend>();
    MH_ASSIGN_OR_RETURN(p->prefix, string_member(json, "prepend", where));
    steps.push_back(std::move(p));
    return {};
  }
  if (type == "Replace") {
    MH_ASSIGN_OR_RETURN(Regex re, pattern_member(json, where));
    MH_ASSIGN_OR_RETURN(std::string content, string_member(json, "content", where));
    steps.push_back(std::make_shared<ReplaceNorm>(std::move(re), std::move(content)));
    return {};
  }
  if (type == "Strip") {
    auto s = std::make_shared<StripNorm>();
    MH_ASSIGN_OR_RETURN(s->left, bool_member(json, "strip_left", where, std::nullopt));
    MH_ASSIGN_OR_RETURN(s->right, bool_member(json, "strip_right", where, std::nullopt));
    steps.push_back(std::move(s));
    return {};
  }
  return stage_error(where, "type \"" + type +
                                "\" is not implemented (this engine implements NFC, NFD, NFKC, "
                                "NFKD, Lowercase, Prepend, Replace, Strip and Sequence)");
}

}  // namespace

Result<Normalizer> Normalizer::parse(const Json& json, std::string_view where) {
  Normalizer n;
  if (!json.is_null()) MH_TRY(parse_normalizer(json, where, n.steps_));
  return n;
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const auto& step : steps_) s = step->apply(std::move(s));
  return s;
}

// --- pre-tokenizers ------------------------------------------------------------------------

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  virtual Status apply(std::vector<TextPiece>& pieces, PieceArena& arena) const = 0;
};

namespace {

struct SplitStep : PreTokenizerStep {
  SplitStep(Regex r, Behavior b, bool i) : re(std::move(r)), behavior(b), invert(i) {}
  Regex re;
  Behavior behavior;
  bool invert;
  Status apply(std::vector<TextPiece>& pieces, PieceArena&) const override {
    std::vector<TextPiece> out;
    out.reserve(pieces.size() * 4);
    std::vector<Span> spans;
    for (const TextPiece& p : pieces) {
      MH_TRY(regex_spans(re, p.text, spans));
      split_spans(p, spans, behavior, invert, out);
    }
    pieces = std::move(out);
    return {};
  }
};

struct ByteLevelStep : PreTokenizerStep {
  bool add_prefix_space = false;
  bool use_regex = true;
  Status apply(std::vector<TextPiece>& pieces, PieceArena& arena) const override {
    if (add_prefix_space) {
      for (TextPiece& p : pieces) {
        if (!p.text.starts_with(' ')) p.text = arena.keep(" " + std::string(p.text));
      }
    }
    if (!use_regex) return {};
    std::vector<TextPiece> out;
    out.reserve(pieces.size() * 4);
    std::vector<Span> spans;
    for (const TextPiece& p : pieces) {
      MH_TRY(regex_spans(gpt2_regex(), p.text, spans));
      split_spans(p, spans, Behavior::kIsolated, false, out);
    }
    pieces = std::move(out);
    return {};
  }
};

enum class PrependScheme { kFirst, kNever, kAlways };

struct MetaspaceStep : PreTokenizerStep {
  std::string replacement;  // one character
  PrependScheme scheme = PrependScheme::kAlways;
  bool split = true;
  Status apply(std::vector<TextPiece>& pieces, PieceArena& arena) const override {
    std::vector<TextPiece> out;
    std::vector<Span> spans;
    for (const TextPiece& p : pieces) {
      std::string s;
      s.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') {
          s += replacement;
        } else {
          s += c;
        }
      }
      const bool prepend = scheme == PrependScheme::kAlways ||
                           (scheme == PrependScheme::kFirst && p.at_start);
      if (prepend && !std::string_view(s).starts_with(replacement)) s = replacement + s;
      const TextPiece piece{arena.keep(std::move(s)), p.at_start};
      if (!split) {
        if (!piece.text.empty()) out.push_back(piece);
        continue;
      }
      char_spans(
          piece.text, [&](int32_t, std::string_view ch) { return ch == replacement; }, spans);
      split_spans(piece, spans, Behavior::kMergedWithNext, false, out);
    }
    pieces = std::move(out);
    return {};
  }
};

struct DigitsStep : PreTokenizerStep {
  bool individual = false;
  Status apply(std::vector<TextPiece>& pieces, PieceArena&) const override {
    std::vector<TextPiece> out;
    std::vector<Span> spans;
    for (const TextPiece& p : pieces) {
      char_spans(
          p.text, [](int32_t cp, std::string_view) { return unicode::is_numeric(cp); }, spans);
      split_spans(p, spans, individual ? Behavior::kIsolated : Behavior::kContiguous, false, out);
    }
    pieces = std::move(out);
    return {};
  }
};

Result<PrependScheme> metaspace_scheme(const Json& json, std::string_view where) {
  PrependScheme scheme = PrependScheme::kAlways;
  if (const Json* v = json.find("prepend_scheme"); v != nullptr && !v->is_null()) {
    if (!v->is_string()) return stage_error(where, "\"prepend_scheme\" must be a string");
    if (v->as_string() == "first") {
      scheme = PrependScheme::kFirst;
    } else if (v->as_string() == "never") {
      scheme = PrependScheme::kNever;
    } else if (v->as_string() != "always") {
      return stage_error(where, "prepend_scheme \"" + v->as_string() + "\" is not always, first or never");
    }
  }
  MH_ASSIGN_OR_RETURN(bool add_prefix_space, bool_member(json, "add_prefix_space", where, true));
  if (!add_prefix_space) {
    if (scheme != PrependScheme::kNever) {
      return stage_error(where, "add_prefix_space does not match declared prepend_scheme");
    }
    scheme = PrependScheme::kNever;
  }
  return scheme;
}

Status parse_pre_tokenizer(const Json& json, std::string_view where,
                           std::vector<std::shared_ptr<const PreTokenizerStep>>& steps,
                           bool& byte_level) {
  MH_ASSIGN_OR_RETURN(std::string type, stage_type(json, where));
  if (byte_level) {
    // After ByteLevel the pieces are in its printable alphabet; this engine keeps them as bytes.
    return stage_error(where, "\"" + type + "\" follows ByteLevel; nothing may come after it");
  }
  if (type == "Sequence") {
    const Json* list = json.find("pretokenizers");
    if (list == nullptr || !list->is_array()) return stage_error(where, "needs \"pretokenizers\"");
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      MH_TRY(parse_pre_tokenizer(list->as_array()[i],
                                 std::string(where) + ".pretokenizers[" + std::to_string(i) + "]",
                                 steps, byte_level));
    }
    return {};
  }
  if (type == "ByteLevel") {
    auto s = std::make_shared<ByteLevelStep>();
    // As tokenizers reads it: add_prefix_space and trim_offsets (offsets only) are required.
    MH_ASSIGN_OR_RETURN(s->add_prefix_space,
                        bool_member(json, "add_prefix_space", where, std::nullopt));
    MH_TRY(bool_member(json, "trim_offsets", where, std::nullopt).status());
    MH_ASSIGN_OR_RETURN(s->use_regex, bool_member(json, "use_regex", where, true));
    steps.push_back(std::move(s));
    byte_level = true;
    return {};
  }
  if (type == "Split") {
    MH_ASSIGN_OR_RETURN(Regex re, pattern_member(json, where));
    MH_ASSIGN_OR_RETURN(Behavior behavior, behavior_member(json, where));
    MH_ASSIGN_OR_RETURN(bool invert, bool_member(json, "invert", where, false));
    steps.push_back(std::make_shared<SplitStep>(std::move(re), behavior, invert));
    return {};
  }
  if (type == "Metaspace") {
    auto s = std::make_shared<MetaspaceStep>();
    MH_ASSIGN_OR_RETURN(s->replacement, char_member(json, "replacement", where));
    MH_ASSIGN_OR_RETURN(s->scheme, metaspace_scheme(json, where));
    MH_ASSIGN_OR_RETURN(s->split, bool_member(json, "split", where, true));
    steps.push_back(std::move(s));
    return {};
  }
  if (type == "Digits") {
    auto s = std::make_shared<DigitsStep>();
    MH_ASSIGN_OR_RETURN(s->individual, bool_member(json, "individual_digits", where, false));
    steps.push_back(std::move(s));
    return {};
  }
  return stage_error(where, "type \"" + type +
                                "\" is not implemented (this engine implements ByteLevel, Split, "
                                "Metaspace, Digits and Sequence)");
}

}  // namespace

Result<PreTokenizer> PreTokenizer::parse(const Json& json, std::string_view where) {
  PreTokenizer p;
  if (!json.is_null()) MH_TRY(parse_pre_tokenizer(json, where, p.steps_, p.byte_level_));
  return p;
}

PreTokenizer PreTokenizer::gpt2() {
  PreTokenizer p;
  p.steps_.push_back(std::make_shared<ByteLevelStep>());
  p.byte_level_ = true;
  return p;
}

Status PreTokenizer::apply(std::vector<TextPiece>& pieces, PieceArena& arena) const {
  for (const auto& step : steps_) MH_TRY(step->apply(pieces, arena));
  return {};
}

// --- decoders ------------------------------------------------------------------------------

class DecoderStep {
 public:
  virtual ~DecoderStep() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

namespace {

struct ByteLevelDecode : DecoderStep {
  void apply(std::vector<std::string>& tokens) const override {
    std::string out;
    for (const std::string& t : tokens) {
      if (!byte_level_to_bytes(t, out)) out += t;
    }
    tokens.assign(1, std::move(out));
  }
};

struct MetaspaceDecode : DecoderStep {
  std::string replacement;
  PrependScheme scheme = PrependScheme::kAlways;
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool drop = i == 0 && scheme != PrependScheme::kNever;
      std::string out;
      std::string_view t = tokens[i];
      for (size_t at = 0; at < t.size();) {
        if (t.substr(at).starts_with(replacement)) {
          if (!drop) out += ' ';
          at += replacement.size();
        } else {
          out += t[at++];
        }
      }
      tokens[i] = std::move(out);
    }
  }
};

struct ReplaceDecode : DecoderStep {
  ReplaceDecode(Regex r, std::string c) : re(std::move(r)), content(std::move(c)) {}
  Regex re;
  std::string content;
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = replace_all(re, t, content);
  }
};

struct ByteFallbackDecode : DecoderStep {
  static int byte_of(std::string_view t) {
    if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return -1;
    int v = 0;
    for (char c : t.substr(3, 2)) {
      v *= 16;
      if (c >= '0' && c <= '9') {
        v += c - '0';
      } else if (c >= 'A' && c <= 'F') {
        v += c - 'A' + 10;
      } else if (c >= 'a' && c <= 'f') {
        v += c - 'a' + 10;
      } else {
        return -1;
      }
    }
    return v;
  }
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    bool in_bytes = false;
    for (std::string& t : tokens) {
      const int b = byte_of(t);
      if (b >= 0) {
        bytes += static_cast<char>(b);
        in_bytes = true;
        continue;
      }
      if (in_bytes) out.push_back(std::move(bytes)), bytes.clear(), in_bytes = false;
      out.push_back(std::move(t));
    }
    if (in_bytes) out.push_back(std::move(bytes));
    tokens = std::move(out);
  }
};

struct FuseDecode : DecoderStep {
  void apply(std::vector<std::string>& tokens) const override {
    std::string out;
    for (const std::string& t : tokens) out += t;
    tokens.assign(1, std::move(out));
  }
};

struct StripDecode : DecoderStep {
  std::string content;  // one character
  int64_t start = 0, stop = 0;
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::string_view v = t;
      for (int64_t i = 0; i < start && v.starts_with(content); ++i) v.remove_prefix(content.size());
      for (int64_t i = 0; i < stop && v.ends_with(content); ++i) v.remove_suffix(content.size());
      t = std::string(v);
    }
  }
};

Status parse_decoder(const Json& json, std::string_view where,
                     std::vector<std::shared_ptr<const DecoderStep>>& steps, bool& byte_level) {
  MH_ASSIGN_OR_RETURN(std::string type, stage_type(json, where));
  if (type == "Sequence") {
    const Json* list = json.find("decoders");
    if (list == nullptr || !list->is_array()) return stage_error(where, "needs \"decoders\"");
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      MH_TRY(parse_decoder(list->as_array()[i],
                           std::string(where) + ".decoders[" + std::to_string(i) + "]", steps,
                           byte_level));
    }
    return {};
  }
  if (type == "ByteLevel") {
    steps.push_back(std::make_shared<ByteLevelDecode>());
    byte_level = true;
    return {};
  }
  if (type == "Metaspace") {
    auto s = std::make_shared<MetaspaceDecode>();
    MH_ASSIGN_OR_RETURN(s->replacement, char_member(json, "replacement", where));
    MH_ASSIGN_OR_RETURN(s->scheme, metaspace_scheme(json, where));
    steps.push_back(std::move(s));
    return {};
  }
  if (type == "Replace") {
    MH_ASSIGN_OR_RETURN(Regex re, pattern_member(json, where));
    MH_ASSIGN_OR_RETURN(std::string content, string_member(json, "content", where));
    steps.push_back(std::make_shared<ReplaceDecode>(std::move(re), std::move(content)));
    return {};
  }
  if (type == "ByteFallback") return steps.push_back(std::make_shared<ByteFallbackDecode>()), Status();
  if (type == "Fuse") return steps.push_back(std::make_shared<FuseDecode>()), Status();
  if (type == "Strip") {
    auto s = std::make_shared<StripDecode>();
    MH_ASSIGN_OR_RETURN(s->content, char_member(json, "content", where));
    for (auto [key, field] : {std::pair{"start", &s->start}, std::pair{"stop", &s->stop}}) {
      const Json* v = json.find(key);
      if (v == nullptr || !v->is_int() || v->as_int() < 0 || v->as_int() > 1024) {
        return stage_error(where, "\"" + std::string(key) + "\" must be a small count");
      }
      *field = v->as_int();
    }
    steps.push_back(std::move(s));
    return {};
  }
  return stage_error(where, "type \"" + type +
                                "\" is not implemented (this engine implements ByteLevel, "
                                "Metaspace, Replace, ByteFallback, Fuse, Strip and Sequence)");
}

}  // namespace

Result<Decoder> Decoder::parse(const Json& json, std::string_view where) {
  Decoder d;
  if (json.is_null()) return d;
  d.null_ = false;
  MH_TRY(parse_decoder(json, where, d.steps_, d.byte_level_));
  return d;
}

Decoder Decoder::byte_level() {
  Decoder d;
  d.null_ = false;
  d.byte_level_ = true;
  d.steps_.push_back(std::make_shared<ByteLevelDecode>());
  return d;
}

std::string Decoder::apply(std::vector<std::string> tokens) const {
  std::string out;
  if (null_) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const auto& step : steps_) step->apply(tokens);
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace mh::engine
