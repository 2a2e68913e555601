#include "platform/engine/tokenizer.h"

#include <algorithm>
#include <array>
#include <map>
#include <queue>
#include <unordered_set>

#include "platform/engine/files.h"
#include "platform/engine/json.h"

namespace mh::engine {
namespace {

struct CodeRange {
  uint32_t first, last;
};
#include "platform/engine/unicode_tables.inc"

constexpr size_t kMaxTokenizerBytes = size_t{256} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 22;
constexpr size_t kMaxTokenBytes = 4096;

bool in_table(uint32_t cp, std::span<const CodeRange> table) {
  auto it = std::upper_bound(table.begin(), table.end(), cp,
                             [](uint32_t c, const CodeRange& r) { return c < r.first; });
  return it != table.begin() && cp <= std::prev(it)->last;
}

enum class Cls : uint8_t { kLetter, kNumber, kSpace, kOther };

Cls classify(int64_t cp) {
  if (cp < 0) return Cls::kOther;  // a byte that is not valid UTF-8
  const auto c = static_cast<uint32_t>(cp);
  if (in_table(c, kLetter)) return Cls::kLetter;
  if (in_table(c, kNumber)) return Cls::kNumber;
  if (in_table(c, kSpace)) return Cls::kSpace;
  return Cls::kOther;
}

// The code point at s[i] and its length in bytes; an invalid sequence is one byte, cp -1.
std::pair<int64_t, size_t> decode_utf8(std::string_view s, size_t i) {
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
  return {cp, len};
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// GPT-2's reversible byte <-> printable code point mapping: printable Latin-1 bytes stand for
// themselves, the others for 256, 257, ... in byte order (space is 'Ġ', U+0120).
struct ByteLevel {
  std::array<uint32_t, 256> to_cp{};
  std::map<uint32_t, uint8_t> to_byte;
  ByteLevel() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevel& byte_level() {
  static const ByteLevel table;
  return table;
}

std::string bytes_to_token_text(std::string_view bytes) {
  std::string out;
  for (char c : bytes) append_utf8(out, byte_level().to_cp[static_cast<uint8_t>(c)]);
  return out;
}

// The bytes a byte-level token string stands for; nullopt when it is not one.
std::optional<std::string> token_text_to_bytes(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    auto [cp, len] = decode_utf8(text, i);
    auto it =
        cp < 0 ? byte_level().to_byte.end() : byte_level().to_byte.find(static_cast<uint32_t>(cp));
    if (it == byte_level().to_byte.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += len;
  }
  return out;
}

Status tokenizer_error(std::string_view what) {
  return invalid_argument("tokenizer: " + std::string(what));
}

}  // namespace

std::vector<std::string_view> Tokenizer::pre_tokenize(std::string_view text) {
  std::vector<std::string_view> out;
  const size_t n = text.size();
  size_t i = 0;
  auto run = [&](size_t j, Cls cls) {  // the end of a run of `cls` starting at j
    while (j < n) {
      auto [cp, len] = decode_utf8(text, j);
      if (classify(cp) != cls) break;
      j += len;
    }
    return j;
  };
  while (i < n) {
    // 's|'t|'re|'ve|'m|'ll|'d
    if (text[i] == '\'') {
      size_t len = 0;
      for (std::string_view c : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        if (text.substr(i + 1, c.size()) == c) {
          len = 1 + c.size();
          break;
        }
      }
      if (len > 0) {
        out.push_back(text.substr(i, len));
        i += len;
        continue;
      }
    }
    auto [cp, len] = decode_utf8(text, i);
    Cls cls = classify(cp);
    size_t start = i, body = i;
    if (cp == ' ' && i + 1 < n) {
      // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": a space joins the run after it.
      const Cls next = classify(decode_utf8(text, i + 1).first);
      if (next != Cls::kSpace) {
        cls = next;
        body = i + 1;
      }
    }
    if (cls != Cls::kSpace) {
      const size_t end = run(body, cls);
      out.push_back(text.substr(start, end - start));
      i = end;
      continue;
    }
    // "\s+(?!\S)|\s+": a run of spaces leaves its last one to the word after it.
    const size_t end = run(i, Cls::kSpace);
    size_t cut = end;
    if (end < n) {
      size_t last = i, count = 0;
      for (size_t j = i; j < end; j += decode_utf8(text, j).second, ++count) last = j;
      if (count >= 2) cut = last;
    }
    out.push_back(text.substr(i, cut - i));
    i = cut;
  }
  return out;
}

Status Tokenizer::add_token(std::string bytes, int32_t id, bool special) {
  if (id < 0 || id >= kMaxVocab) {
    return tokenizer_error("token id " + std::to_string(id) + " is outside [0, " +
                           std::to_string(kMaxVocab) + ")");
  }
  if (bytes.empty()) return tokenizer_error("token " + std::to_string(id) + " is empty");
  if (bytes.size() > kMaxTokenBytes) {
    return tokenizer_error("token " + std::to_string(id) + " is longer than " +
                           std::to_string(kMaxTokenBytes) + " bytes");
  }
  if (static_cast<size_t>(id) >= tokens_.size()) {
    tokens_.resize(static_cast<size_t>(id) + 1);
    special_.resize(static_cast<size_t>(id) + 1);
  }
  if (!tokens_[static_cast<size_t>(id)].empty()) {
    // The same special token listed in both the vocabulary and added_tokens is one token.
    if (special && special_[static_cast<size_t>(id)] && tokens_[static_cast<size_t>(id)] == bytes) {
      return {};
    }
    if (special && !special_[static_cast<size_t>(id)]) {
      ids_.erase(tokens_[static_cast<size_t>(id)]);
    } else {
      return tokenizer_error("token id " + std::to_string(id) + " is given twice");
    }
  }
  if (special) {
    special_ids_.push_back(id);
  } else if (!ids_.emplace(bytes, id).second) {
    return tokenizer_error("the vocabulary has two ids for one token (" + std::to_string(id) +
                           " and " + std::to_string(ids_[bytes]) + ")");
  }
  tokens_[static_cast<size_t>(id)] = std::move(bytes);
  special_[static_cast<size_t>(id)] = special;
  return {};
}

Status Tokenizer::add_merge(std::string_view left, std::string_view right, std::string_view where) {
  auto a = token_text_to_bytes(left), b = token_text_to_bytes(right);
  auto ia = a ? ids_.find(*a) : ids_.end(), ib = b ? ids_.find(*b) : ids_.end();
  auto im = a && b ? ids_.find(*a + *b) : ids_.end();
  if (ia == ids_.end() || ib == ids_.end() || im == ids_.end()) {
    return tokenizer_error(std::string(where) + ": merge \"" + std::string(left) + " " +
                           std::string(right) + "\" uses or makes a token not in the vocabulary");
  }
  const int32_t rank = static_cast<int32_t>(merges_.size());
  if (!pairs_.emplace(key(ia->second, ib->second), Pair{rank, im->second}).second) {
    return tokenizer_error(std::string(where) + ": merge \"" + std::string(left) + " " +
                           std::string(right) + "\" is listed twice");
  }
  merges_.emplace_back(ia->second, ib->second);
  return {};
}

Status Tokenizer::finish() {
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (tokens_[id].empty()) {
      return tokenizer_error("ids are not dense: no token has id " + std::to_string(id));
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = ids_.find(std::string(1, static_cast<char>(b)));
    if (it == ids_.end()) {
      return tokenizer_error("the vocabulary has no token for byte " + std::to_string(b) +
                             ", so some text could not be encoded");
    }
    byte_ids_[b] = it->second;
  }
  std::sort(special_ids_.begin(), special_ids_.end());
  return {};
}

void Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  // Symbols in a linked list; candidate merges in a heap by (rank, position). A popped
  // candidate whose symbols changed since it was pushed is stale and skipped.
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Sym> sym(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    sym[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], static_cast<int32_t>(i) - 1,
              i + 1 < piece.size() ? static_cast<int32_t>(i + 1) : -1};
  }
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](int32_t pos) {
    if (pos < 0 || sym[static_cast<size_t>(pos)].next < 0) return;
    const int32_t l = sym[static_cast<size_t>(pos)].id;
    const int32_t r = sym[static_cast<size_t>(sym[static_cast<size_t>(pos)].next)].id;
    auto it = pairs_.find(key(l, r));
    if (it != pairs_.end()) heap.push({it->second.rank, pos, l, r});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(piece.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Sym& s = sym[static_cast<size_t>(c.pos)];
    if (s.id != c.left || s.next < 0 || sym[static_cast<size_t>(s.next)].id != c.right) continue;
    s.id = pairs_.at(key(c.left, c.right)).merged;
    const int32_t gone = s.next;
    s.next = sym[static_cast<size_t>(gone)].next;
    if (s.next >= 0) sym[static_cast<size_t>(s.next)].prev = c.pos;
    sym[static_cast<size_t>(gone)].id = -1;
    consider(s.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
    out.push_back(sym[static_cast<size_t>(i)].id);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  auto plain = [&](std::string_view segment) {
    std::string prefixed;
    if (add_prefix_space_ && !segment.empty() && segment[0] != ' ') {
      prefixed = " " + std::string(segment);
      segment = prefixed;
    }
    for (std::string_view piece : pre_tokenize(segment)) bpe(piece, out);
  };
  size_t pos = 0;
  while (pos < text.size()) {
    // The earliest special token in the rest of the text (the longest one where several start).
    size_t best = std::string_view::npos;
    int32_t best_id = -1;
    if (allow_special) {
      for (int32_t id : special_ids_) {
        const std::string& s = tokens_[static_cast<size_t>(id)];
        const size_t at = text.find(s, pos);
        if (at != std::string_view::npos &&
            (at < best ||
             (at == best && s.size() > tokens_[static_cast<size_t>(best_id)].size()))) {
          best = at;
          best_id = id;
        }
      }
    }
    if (best == std::string_view::npos) {
      plain(text.substr(pos));
      break;
    }
    plain(text.substr(pos, best - pos));
    out.push_back(best_id);
    pos = best + tokens_[static_cast<size_t>(best_id)].size();
  }
  return out;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(vocab_size()));
    }
    out += tokens_[static_cast<size_t>(id)];
  }
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string kNone;
  return id < 0 || id >= vocab_size() ? kNone : tokens_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::special_token(std::string_view content) const {
  for (int32_t id : special_ids_) {
    if (tokens_[static_cast<size_t>(id)] == content) return id;
  }
  return std::nullopt;
}

Result<Tokenizer> Tokenizer::from_tokenizer_json(std::string_view text) {
  JsonLimits limits;
  limits.max_depth = 32;
  limits.max_bytes = kMaxTokenizerBytes;
  auto parsed = parse_json(text, limits);
  if (!parsed.ok()) return invalid_argument("tokenizer.json: " + parsed.status().message());
  const Json& root = *parsed;
  if (!root.is_object()) return tokenizer_error("tokenizer.json must be a JSON object");
  const Json* model = root.find("model");
  if (model == nullptr || !model->is_object()) {
    return tokenizer_error("tokenizer.json has no \"model\" object");
  }
  if (const Json* type = model->find("type");
      type != nullptr && !(type->is_string() && type->as_string() == "BPE")) {
    return tokenizer_error("model.type must be \"BPE\" (byte-level BPE is what this engine reads)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = model->find(key);
    if (v != nullptr && !v->is_null() && !(v->is_string() && v->as_string().empty())) {
      return tokenizer_error(std::string("model.") + key + " is not supported");
    }
  }
  if (const Json* v = model->find("byte_fallback"); v != nullptr && v->is_bool() && v->as_bool()) {
    return tokenizer_error("model.byte_fallback is for SentencePiece-style BPE, not byte-level");
  }
  if (const Json* v = model->find("dropout"); v != nullptr && !v->is_null()) {
    return tokenizer_error("model.dropout must be null");
  }
  if (const Json* v = root.find("normalizer"); v != nullptr && !v->is_null()) {
    return tokenizer_error("normalizers are not supported (\"normalizer\" must be null)");
  }
  Tokenizer t;
  const Json* pre = root.find("pre_tokenizer");
  if (pre == nullptr || !pre->is_object()) {
    return tokenizer_error("pre_tokenizer must be {\"type\":\"ByteLevel\", ...}");
  }
  if (const Json* type = pre->find("type");
      type == nullptr || !type->is_string() || type->as_string() != "ByteLevel") {
    return tokenizer_error(
        "pre_tokenizer must be ByteLevel (GPT-2's pattern); other "
        "pre-tokenizers are not supported");
  }
  if (const Json* v = pre->find("use_regex"); v != nullptr && !(v->is_bool() && v->as_bool())) {
    return tokenizer_error("pre_tokenizer.use_regex must be true");
  }
  if (const Json* v = pre->find("add_prefix_space"); v != nullptr) {
    if (!v->is_bool()) return tokenizer_error("pre_tokenizer.add_prefix_space must be a boolean");
    t.add_prefix_space_ = v->as_bool();
  }

  std::map<int64_t, std::string> added;  // id -> content
  if (const Json* list = root.find("added_tokens"); list != nullptr && !list->is_null()) {
    if (!list->is_array()) return tokenizer_error("added_tokens must be an array");
    for (const Json& a : list->as_array()) {
      const Json* id = a.find("id");
      const Json* content = a.find("content");
      if (id == nullptr || !id->is_int() || content == nullptr || !content->is_string() ||
          content->as_string().empty()) {
        return tokenizer_error(
            "every added token needs an integer \"id\" and a non-empty "
            "\"content\"");
      }
      if (!added.emplace(id->as_int(), content->as_string()).second) {
        return tokenizer_error("added token id " + std::to_string(id->as_int()) +
                               " is given twice");
      }
    }
  }
  const Json* vocab = model->find("vocab");
  if (vocab == nullptr || !vocab->is_object())
    return tokenizer_error("model.vocab must be an object");
  std::map<std::string, int64_t> added_ids;
  for (const auto& [id, content] : added) added_ids[content] = id;
  for (const auto& [token, id] : vocab->as_object()) {
    if (!id.is_int()) return tokenizer_error("model.vocab[\"" + token + "\"] must be an integer");
    if (auto a = added_ids.find(token); a != added_ids.end()) {
      if (a->second == id.as_int()) continue;
      return tokenizer_error("\"" + token + "\" is added token " + std::to_string(a->second) +
                             " but vocabulary entry " + std::to_string(id.as_int()));
    }
    auto bytes = token_text_to_bytes(token);
    if (!bytes) {
      return tokenizer_error("model.vocab[\"" + token +
                             "\"] is not a byte-level token and not an added token");
    }
    MH_TRY(t.add_token(std::move(*bytes),
                       static_cast<int32_t>(std::clamp<int64_t>(id.as_int(), -1, kMaxVocab)),
                       false));
  }
  for (const auto& [id, content] : added) {
    MH_TRY(
        t.add_token(content, static_cast<int32_t>(std::clamp<int64_t>(id, -1, kMaxVocab)), true));
  }
  const Json* merges = model->find("merges");
  if (merges == nullptr || !merges->is_array())
    return tokenizer_error("model.merges must be an array");
  for (size_t i = 0; i < merges->as_array().size(); ++i) {
    const Json& m = merges->as_array()[i];
    const std::string where = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const std::string& s = m.as_string();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return tokenizer_error(where + " must be two tokens separated by one space");
      }
      MH_TRY(t.add_merge(std::string_view(s).substr(0, space),
                         std::string_view(s).substr(space + 1), where));
    } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
               m.as_array()[1].is_string()) {
      MH_TRY(t.add_merge(m.as_array()[0].as_string(), m.as_array()[1].as_string(), where));
    } else {
      return tokenizer_error(where + " must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  MH_TRY(t.finish());
  return t;
}

Result<Tokenizer> Tokenizer::from_vocab_merges(std::string_view vocab_json,
                                               std::string_view merges_txt) {
  JsonLimits limits;
  limits.max_depth = 4;
  limits.max_bytes = kMaxTokenizerBytes;
  auto vocab = parse_json(vocab_json, limits);
  if (!vocab.ok()) return invalid_argument("vocab.json: " + vocab.status().message());
  if (!vocab->is_object()) return tokenizer_error("vocab.json must be an object of token: id");
  Tokenizer t;
  std::vector<std::pair<int64_t, std::string>> specials;
  for (const auto& [token, id] : vocab->as_object()) {
    if (!id.is_int()) return tokenizer_error("vocab.json[\"" + token + "\"] must be an integer");
    const auto clamped = static_cast<int32_t>(std::clamp<int64_t>(id.as_int(), -1, kMaxVocab));
    // GPT-2's end-of-text marker is spelt in printable bytes but was always a special token.
    auto bytes = token == "<|endoftext|>" ? std::nullopt : token_text_to_bytes(token);
    if (bytes) {
      MH_TRY(t.add_token(std::move(*bytes), clamped, false));
    } else {
      specials.emplace_back(clamped, token);
    }
  }
  for (auto& [id, token] : specials) {
    MH_TRY(t.add_token(std::move(token), static_cast<int32_t>(id), true));
  }
  MH_TRY(for_each_line(merges_txt, [&](int64_t line_no, std::string_view line) -> Status {
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) return {};
    const size_t space = line.find(' ');
    const std::string where = "merges.txt line " + std::to_string(line_no);
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) {
      return tokenizer_error(where + " must be two tokens separated by one space");
    }
    return t.add_merge(line.substr(0, space), line.substr(space + 1), where);
  }));
  MH_TRY(t.finish());
  return t;
}

Result<Tokenizer> Tokenizer::load(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "tokenizer.json")) {
    MH_ASSIGN_OR_RETURN(std::string text,
                        read_text_file(dir / "tokenizer.json", kMaxTokenizerBytes));
    return from_tokenizer_json(text);
  }
  if (!std::filesystem::exists(dir / "vocab.json")) {
    return not_found("no tokenizer in " + dir.string() +
                     " (expected tokenizer.json, or vocab.json and merges.txt)");
  }
  MH_ASSIGN_OR_RETURN(std::string vocab, read_text_file(dir / "vocab.json", kMaxTokenizerBytes));
  MH_ASSIGN_OR_RETURN(std::string merges, read_text_file(dir / "merges.txt", kMaxTokenizerBytes));
  return from_vocab_merges(vocab, merges);
}

std::string Tokenizer::to_tokenizer_json() const {
  std::string out = R"({"version":"1.0","truncation":null,"padding":null,"added_tokens":[)";
  for (size_t i = 0; i < special_ids_.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"id\":" + std::to_string(special_ids_[i]) + ",\"content\":";
    append_json_string(out, tokens_[static_cast<size_t>(special_ids_[i])]);
    out += R"(,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,)"
           R"("special":true})";
  }
  out += R"(],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":)";
  out += add_prefix_space_ ? "true" : "false";
  out += R"(,"trim_offsets":true,"use_regex":true},)"
         R"("post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,)"
         R"("use_regex":true},"decoder":{"type":"ByteLevel","add_prefix_space":true,)"
         R"("trim_offsets":true,"use_regex":true},"model":{"type":"BPE","dropout":null,)"
         R"("unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",)"
         R"("fuse_unk":false,"byte_fallback":false,"vocab":{)";
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (id > 0) out += ',';
    append_json_string(out, special_[id] ? tokens_[id] : bytes_to_token_text(tokens_[id]));
    out += ':' + std::to_string(id);
  }
  out += "},\"merges\":[";
  for (size_t i = 0; i < merges_.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out,
                       bytes_to_token_text(tokens_[static_cast<size_t>(merges_[i].first)]) + " " +
                           bytes_to_token_text(tokens_[static_cast<size_t>(merges_[i].second)]));
  }
  out += "]}}\n";
  return out;
}

Status Tokenizer::save(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error("cannot create " + dir.string() + ": " + ec.message());
  return write_file_atomically(dir / "tokenizer.json", to_tokenizer_json());
}

// --- training ------------------------------------------------------------------------------

Result<Tokenizer> train_bpe(std::span<const std::string> texts, const BpeTrainerOptions& options) {
  const int64_t specials = static_cast<int64_t>(options.special_tokens.size());
  if (options.vocab_size < 256 + specials || options.vocab_size > kMaxVocab) {
    return invalid_argument("vocab_size must be at least 256 + the special tokens (" +
                            std::to_string(256 + specials) + ") and at most " +
                            std::to_string(kMaxVocab));
  }
  // Distinct pre-tokens and their counts; special tokens in the text are not learned from.
  std::unordered_map<std::string, int64_t> counts;
  for (const std::string& text : texts) {
    std::string_view rest = text;
    while (!rest.empty()) {
      size_t cut = rest.size(), skip = 0;
      for (const std::string& s : options.special_tokens) {
        const size_t at = s.empty() ? std::string_view::npos : rest.find(s);
        if (at < cut) cut = at, skip = s.size();
      }
      for (std::string_view piece : Tokenizer::pre_tokenize(rest.substr(0, cut))) {
        ++counts[std::string(piece)];
      }
      rest = cut + skip >= rest.size() ? std::string_view() : rest.substr(cut + skip);
    }
  }
  Tokenizer t;
  for (int b = 0; b < 256; ++b) MH_TRY(t.add_token(std::string(1, static_cast<char>(b)), b, false));

  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  {
    std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());  // the result must not depend on hash order
    for (auto& [w, n] : sorted) {
      if (w.size() < 2) continue;
      words.emplace_back(w.begin(), w.end());
      for (auto& id : words.back()) id = static_cast<uint8_t>(id);
      freq.push_back(n);
    }
  }
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = Tokenizer::key(words[w][i], words[w][i + 1]);
      pair_count[k] += freq[w];
      auto& list = where[k];
      if (list.empty() || list.back() != static_cast<int32_t>(w))
        list.push_back(static_cast<int32_t>(w));
    }
  }
  // Max-heap by count, then by the merged bytes (smallest first), then the left token's bytes.
  struct Entry {
    int64_t count;
    uint64_t pair;
  };
  auto bytes_of = [&](uint64_t k) {
    return std::make_pair(t.tokens_[k >> 32] + t.tokens_[k & 0xffffffffu], t.tokens_[k >> 32]);
  };
  auto worse = [&](const Entry& a, const Entry& b) {
    if (a.count != b.count) return a.count < b.count;
    return bytes_of(a.pair) > bytes_of(b.pair);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [k, n] : pair_count) heap.push({n, k});

  const int64_t target = options.vocab_size - specials;
  int64_t vocab = 256;
  std::vector<int32_t> seen(words.size(), -1);
  int32_t merge_no = 0;
  while (vocab < target && !heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    auto it = pair_count.find(e.pair);
    if (it == pair_count.end() || it->second != e.count) continue;  // stale
    if (e.count < options.min_frequency) break;
    const int32_t a = static_cast<int32_t>(e.pair >> 32), b = static_cast<int32_t>(e.pair);
    std::string merged = t.tokens_[static_cast<size_t>(a)] + t.tokens_[static_cast<size_t>(b)];
    int32_t id;
    if (auto existing = t.ids_.find(merged); existing != t.ids_.end()) {
      id = existing->second;
    } else {
      id = static_cast<int32_t>(vocab++);
      MH_TRY(t.add_token(merged, id, false));
    }
    t.pairs_.emplace(e.pair, Tokenizer::Pair{static_cast<int32_t>(t.merges_.size()), id});
    t.merges_.emplace_back(a, b);
    ++merge_no;
    // Re-count the pairs of every word the merged pair occurs in.
    std::vector<uint64_t> changed;
    const std::vector<int32_t> affected = std::move(where[e.pair]);
    where.erase(e.pair);
    for (int32_t w : affected) {
      if (seen[static_cast<size_t>(w)] == merge_no) continue;
      seen[static_cast<size_t>(w)] = merge_no;
      auto& word = words[static_cast<size_t>(w)];
      const int64_t n = freq[static_cast<size_t>(w)];
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        const uint64_t k = Tokenizer::key(word[i], word[i + 1]);
        pair_count[k] -= n;
        changed.push_back(k);
      }
      std::vector<int32_t> next;
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(word[i]);
        }
      }
      word = std::move(next);
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        const uint64_t k = Tokenizer::key(word[i], word[i + 1]);
        pair_count[k] += n;
        changed.push_back(k);
        auto& list = where[k];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
    std::sort(changed.begin(), changed.end());
    changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
    for (uint64_t k : changed) {
      auto c = pair_count.find(k);
      if (c->second <= 0) {
        pair_count.erase(c);
      } else if (k != e.pair) {
        heap.push({c->second, k});
      }
    }
    pair_count.erase(e.pair);
  }
  int32_t next_id = static_cast<int32_t>(vocab);
  for (const std::string& s : options.special_tokens) {
    if (s.empty()) return invalid_argument("a special token may not be empty");
    MH_TRY(t.add_token(s, next_id++, true));
  }
  MH_TRY(t.finish());
  return t;
}

}  // namespace mh::engine
