#include "platform/engine/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <queue>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/unicode.h"

namespace mh::engine {
namespace {

constexpr size_t kMaxTokenizerBytes = size_t{256} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 22;
constexpr size_t kMaxTokenBytes = 4096;

Status tokenizer_error(std::string_view what) {
  return invalid_argument("tokenizer: " + std::string(what));
}

bool is_word_at(std::string_view s, size_t i) { return unicode::is_word(unicode::decode(s, i).cp); }

// The start of the last character of s[0, end).
size_t char_before(std::string_view s, size_t end) {
  size_t b = end - 1;
  while (b > 0 && end - b < 4 && (static_cast<uint8_t>(s[b]) & 0xc0) == 0x80) --b;
  return unicode::decode(s, b).len == end - b ? b : end - 1;
}

bool ends_with_word(std::string_view s) { return !s.empty() && is_word_at(s, char_before(s, s.size())); }
bool starts_with_word(std::string_view s) { return !s.empty() && is_word_at(s, 0); }

// Where the run of whitespace that ends s begins (s.size() when there is none).
size_t whitespace_run_before(std::string_view s) {
  size_t b = s.size();
  while (b > 0) {
    const size_t c = char_before(s, b);
    if (!unicode::is_whitespace(unicode::decode(s, c).cp)) break;
    b = c;
  }
  return b;
}
// How long the run of whitespace that starts s is.
size_t whitespace_run_after(std::string_view s) {
  size_t e = 0;
  while (e < s.size()) {
    const unicode::Char c = unicode::decode(s, e);
    if (!unicode::is_whitespace(c.cp)) break;
    e += c.len;
  }
  return e;
}

const Json& member(const Json& object, std::string_view key) {
  static const Json kNull;
  const Json* v = object.find(key);
  return v == nullptr ? kNull : *v;
}

// A token id from JSON, within bounds.
Result<int32_t> token_id(const Json& v, std::string_view where) {
  if (!v.is_int() || v.as_int() < 0 || v.as_int() >= kMaxVocab) {
    return tokenizer_error(std::string(where) + " must be an integer in [0, " +
                           std::to_string(kMaxVocab) + ")");
  }
  return static_cast<int32_t>(v.as_int());
}

}  // namespace

// --- added tokens --------------------------------------------------------------------------

void Tokenizer::AddedTrie::insert(std::string_view s, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  starts[static_cast<uint8_t>(s[0])] = true;
  int32_t at = 0;
  for (char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    auto& next = nodes[static_cast<size_t>(at)].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::pair<uint8_t, int32_t>{b, -1});
    if (it != next.end() && it->first == b) {
      at = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes.size());
    next.insert(it, {b, child});
    nodes.emplace_back();  // invalidates `next`; not used after
    at = child;
  }
  nodes[static_cast<size_t>(at)].token = token;
}

int32_t Tokenizer::AddedTrie::longest(std::string_view text, size_t at, size_t& end) const {
  int32_t best = -1;
  size_t node = 0;
  for (size_t i = at; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    const auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::pair<uint8_t, int32_t>{b, -1});
    if (it == next.end() || it->first != b) break;
    node = static_cast<size_t>(it->second);
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      end = i + 1;
    }
  }
  return best;
}

// AddedVocabulary::find_matches: leftmost-longest matches over every added token of the trie;
// a match that is skipped (a special token when specials are not allowed, a single_word token
// inside a word) still consumes its text.
void Tokenizer::split_added(std::string_view text, const AddedTrie& trie, bool allow_special,
                            bool at_start, std::vector<Segment>& out) const {
  if (trie.nodes.empty()) {
    if (!text.empty()) out.push_back({text, -1, at_start});
    return;
  }
  size_t done = 0;  // text before this is in `out`
  size_t i = 0;
  while (i < text.size()) {
    size_t end = 0;
    const int32_t t = trie.starts[static_cast<uint8_t>(text[i])] ? trie.longest(text, i, end) : -1;
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& a = added_[static_cast<size_t>(t)];
    size_t start = i;
    i = end;
    if (a.special && !allow_special) continue;
    if (a.single_word && (ends_with_word(text.substr(0, start)) ||
                          starts_with_word(text.substr(end)))) {
      continue;
    }
    if (a.lstrip) start = std::max(whitespace_run_before(text.substr(0, start)), done);
    if (a.rstrip) end += whitespace_run_after(text.substr(end));
    if (done < start) out.push_back({text.substr(done, start - done), -1, at_start && done == 0});
    out.push_back({{}, a.id, false});
    done = end;
    i = end;
  }
  if (done < text.size()) out.push_back({text.substr(done), -1, at_start && done == 0});
}

Status Tokenizer::add_added_tokens(const Json* list) {
  if (list == nullptr || list->is_null()) return {};
  if (!list->is_array()) return tokenizer_error("added_tokens must be an array");
  // tokenizers gives an added token the model's id for its content, or else the next id after
  // the vocabulary and the added tokens before it; a file that says otherwise is refused.
  int32_t next = vocab_size();
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id, of those read so far
  for (size_t i = 0; i < list->as_array().size(); ++i) {
    const Json& j = list->as_array()[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    const Json* content = j.find("content");
    const Json* id = j.find("id");
    if (content == nullptr || !content->is_string() || content->as_string().empty() ||
        id == nullptr) {
      return tokenizer_error(where + " needs an integer \"id\" and a non-empty \"content\"");
    }
    MH_ASSIGN_OR_RETURN(int32_t file_id, token_id(*id, where + ".id"));
    AddedToken a;
    a.content = content->as_string();
    if (a.content.size() > kMaxTokenBytes) {
      return tokenizer_error(where + " is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
    }
    bool* flags[] = {&a.single_word, &a.lstrip, &a.rstrip, &a.normalized, &a.special};
    const char* names[] = {"single_word", "lstrip", "rstrip", "normalized", "special"};
    for (size_t f = 0; f < 5; ++f) {
      const Json* v = j.find(names[f]);
      if (v != nullptr && !v->is_bool()) {
        return tokenizer_error(where + "." + names[f] + " must be a boolean");
      }
      // tokenizers' defaults: normalized is !special, the others false.
      *flags[f] = v != nullptr && v->as_bool();
    }
    if (j.find("normalized") == nullptr) a.normalized = !a.special;
    int32_t expected = -1;
    if (auto it = added_ids.find(a.content); it != added_ids.end()) expected = it->second;
    if (expected < 0) {
      std::string symbol;
      if (!byte_level_ || byte_level_to_bytes(a.content, symbol)) {
        auto it = ids_.find(byte_level_ ? symbol : a.content);
        if (it != ids_.end()) expected = it->second;
      }
    }
    if (expected < 0) expected = next++;
    if (expected != file_id) {
      return tokenizer_error(where + " (\"" + a.content + "\") has id " + std::to_string(file_id) +
                             " but tokenizers gives it " + std::to_string(expected));
    }
    a.id = file_id;
    added_ids[a.content] = a.id;
    if (a.id >= vocab_size()) {
      surface_.resize(static_cast<size_t>(a.id) + 1);
      special_.resize(static_cast<size_t>(a.id) + 1);
    }
    surface_[static_cast<size_t>(a.id)] = a.content;
    special_[static_cast<size_t>(a.id)] = a.special;
    if (a.normalized) a.content = normalizer_.apply(a.content);
    added_.erase(std::remove_if(added_.begin(), added_.end(),
                                [&](const AddedToken& b) { return b.id == a.id; }),
                 added_.end());
    added_.push_back(std::move(a));
  }
  return {};
}

// A special token at `id` (outside the model's vocabulary), matched in the raw text.
void Tokenizer::add_special(std::string content, int32_t id) {
  if (id >= vocab_size()) {
    surface_.resize(static_cast<size_t>(id) + 1);
    special_.resize(static_cast<size_t>(id) + 1);
  }
  surface_[static_cast<size_t>(id)] = content;
  special_[static_cast<size_t>(id)] = true;
  added_.push_back({std::move(content), id, false, false, false, false, true});
}

// --- the BPE model -------------------------------------------------------------------------

Status Tokenizer::add_vocab(std::string surface, int32_t id) {
  if (surface.empty()) return tokenizer_error("token " + std::to_string(id) + " is empty");
  if (surface.size() > kMaxTokenBytes) {
    return tokenizer_error("token " + std::to_string(id) + " is longer than " +
                           std::to_string(kMaxTokenBytes) + " bytes");
  }
  if (static_cast<size_t>(id) >= surface_.size()) {
    surface_.resize(static_cast<size_t>(id) + 1);
    special_.resize(static_cast<size_t>(id) + 1);
  }
  if (!surface_[static_cast<size_t>(id)].empty()) {
    return tokenizer_error("token id " + std::to_string(id) + " is given twice");
  }
  std::string symbol;
  if (!byte_level_) {
    symbol = surface;
  } else if (!byte_level_to_bytes(surface, symbol)) {
    symbol.clear();  // not a byte-level string: no word can be made of it
  }
  if (!symbol.empty() && !ids_.emplace(symbol, id).second) {
    return tokenizer_error("the vocabulary has two ids for one token (" + std::to_string(id) +
                           " and " + std::to_string(ids_[symbol]) + ")");
  }
  surface_[static_cast<size_t>(id)] = std::move(surface);
  return {};
}

Status Tokenizer::add_merge(std::string_view left, std::string_view right, std::string_view where) {
  auto symbol = [&](std::string_view s) {
    std::string out;
    if (!byte_level_) return std::string(s);
    return byte_level_to_bytes(s, out) ? out : std::string();
  };
  const std::string a = symbol(left), b = symbol(right);
  auto ia = ids_.find(a), ib = ids_.find(b);
  auto im = a.empty() || b.empty() ? ids_.end() : ids_.find(a + b);
  if (a.empty() || b.empty() || ia == ids_.end() || ib == ids_.end() || im == ids_.end()) {
    return tokenizer_error(std::string(where) + ": merge \"" + std::string(left) + " " +
                           std::string(right) + "\" uses or makes a token not in the vocabulary");
  }
  // A pair listed twice takes its later rank, as tokenizers' merge map does.
  const int32_t rank = static_cast<int32_t>(merges_.size());
  pairs_[key(ia->second, ib->second)] = Pair{rank, im->second};
  merges_.emplace_back(ia->second, ib->second);
  return {};
}

Status Tokenizer::finish() {
  for (size_t id = 0; id < surface_.size(); ++id) {
    if (surface_[id].empty()) {
      return tokenizer_error("ids are not dense: no token has id " + std::to_string(id));
    }
  }
  if (byte_level_) {
    for (int b = 0; b < 256; ++b) {
      auto it = ids_.find(std::string(1, static_cast<char>(b)));
      if (it == ids_.end()) {
        return tokenizer_error("the vocabulary has no token for byte " + std::to_string(b) +
                               ", so some text could not be encoded");
      }
      byte_ids_[b] = it->second;
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = ids_.find(name);
    fallback_ids_[b] = it == ids_.end() ? -1 : it->second;
  }
  auto raw = std::make_shared<AddedTrie>(), normalized = std::make_shared<AddedTrie>();
  for (size_t i = 0; i < added_.size(); ++i) {
    (added_[i].normalized ? *normalized : *raw).insert(added_[i].content, static_cast<int32_t>(i));
  }
  raw_trie_ = std::move(raw);
  normalized_trie_ = std::move(normalized);
  return {};
}

// Merges adjacent symbols lowest rank first (leftmost on ties) until no listed pair is left:
// tokenizers' Word::merge_all. Symbols live in a linked list; a popped candidate whose symbols
// changed since it was pushed is stale and skipped.
void Tokenizer::merge(std::vector<int32_t>& symbols) const {
  if (symbols.size() < 2 || pairs_.empty()) return;
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> sym(symbols.size());
  for (size_t i = 0; i < symbols.size(); ++i) {
    sym[i] = {symbols[i], static_cast<int32_t>(i) - 1,
              i + 1 < symbols.size() ? static_cast<int32_t>(i + 1) : -1};
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
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
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
  symbols.clear();
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
    symbols.push_back(sym[static_cast<size_t>(i)].id);
  }
}

// BPE::tokenize on one word (a pre-token): its symbols, merged.
Status Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return {};
  if (ignore_merges_ || word.size() == 1) {
    if (auto it = ids_.find(word); it != ids_.end()) {
      out.push_back(it->second);
      return {};
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  if (byte_level_) {
    for (char c : word) symbols.push_back(byte_ids_[static_cast<uint8_t>(c)]);
  } else {
    // One symbol per character; one not in the vocabulary is its bytes' <0xXX> tokens
    // (byte_fallback), or the unknown token (runs of them fused with fuse_unk), or dropped.
    bool last_unk = false;
    for (size_t i = 0; i < word.size();) {
      const size_t len = unicode::decode(word, i).len;
      const std::string_view ch = word.substr(i, len);
      i += len;
      if (auto it = ids_.find(ch); it != ids_.end()) {
        symbols.push_back(it->second);
        last_unk = false;
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (char b : ch) all = all && fallback_ids_[static_cast<uint8_t>(b)] >= 0;
        if (all) {
          for (char b : ch) symbols.push_back(fallback_ids_[static_cast<uint8_t>(b)]);
          last_unk = false;
          continue;
        }
      }
      if (unk_id_ >= 0) {
        if (!(last_unk && fuse_unk_)) symbols.push_back(unk_id_);
        last_unk = true;
      }
    }
  }
  merge(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  return {};
}

// --- encode and decode ---------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  std::vector<Segment> raw, normalized;
  split_added(text, *raw_trie_, allow_special, true, raw);
  PieceArena arena;
  std::vector<TextPiece> pieces;
  for (const Segment& r : raw) {
    if (r.added >= 0) {
      out.push_back(r.added);
      continue;
    }
    std::string_view segment = r.text;
    if (!normalizer_.empty()) segment = arena.keep(normalizer_.apply(segment));
    normalized.clear();
    split_added(segment, *normalized_trie_, allow_special, r.at_start, normalized);
    for (const Segment& n : normalized) {
      if (n.added >= 0) {
        out.push_back(n.added);
        continue;
      }
      pieces.assign(1, TextPiece{n.text, n.at_start});
      // A pattern PCRE2 gives up on (past its limits) leaves the text as one word.
      if (!pre_tokenizer_.apply(pieces, arena).ok()) pieces.assign(1, TextPiece{n.text, n.at_start});
      for (const TextPiece& p : pieces) (void)encode_word(p.text, out);
    }
  }
  return out;
}

std::vector<int32_t> Tokenizer::with_special_tokens(std::vector<int32_t> ids) const {
  ids.insert(ids.begin(), prefix_ids_.begin(), prefix_ids_.end());
  ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(vocab_size()));
    }
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    tokens.push_back(surface_[static_cast<size_t>(id)]);
  }
  return decoder_.apply(std::move(tokens));
}

std::string Tokenizer::decode_next(std::span<const int32_t> ids) const {
  if (ids.empty()) return {};
  // Four tokens before the new one cover a character split over byte tokens.
  const size_t from = ids.size() > 5 ? ids.size() - 5 : 0;
  auto before = decode(ids.subspan(from, ids.size() - 1 - from));
  auto after = decode(ids.subspan(from));
  if (!before.ok() || !after.ok()) return {};
  if (after->starts_with(*before)) return after->substr(before->size());
  auto alone = decode(ids.subspan(ids.size() - 1));
  return alone.ok() ? *alone : std::string();
}

std::optional<int32_t> Tokenizer::special_token(std::string_view content) const {
  for (const AddedToken& a : added_) {
    if (surface_[static_cast<size_t>(a.id)] == content) return a.id;
  }
  return std::nullopt;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kNone;
  return id < 0 || id >= vocab_size() ? kNone : surface_[static_cast<size_t>(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[static_cast<size_t>(id)];
}

std::vector<std::string_view> Tokenizer::pre_tokenize(std::string_view text) {
  static const PreTokenizer gpt2 = PreTokenizer::gpt2();
  PieceArena arena;
  std::vector<TextPiece> pieces{{text, true}};
  std::vector<std::string_view> out;
  if (!gpt2.apply(pieces, arena).ok()) return {text};
  for (const TextPiece& p : pieces) out.push_back(p.text);
  return out;
}

// --- loading -------------------------------------------------------------------------------

namespace {

// TemplateProcessing (alone or in a Sequence with ByteLevel) as the ids before and after a
// single sequence.
Status parse_post_processor(const Json& json, std::string_view where, std::vector<int32_t>& prefix,
                            std::vector<int32_t>& suffix) {
  if (json.is_null()) return {};
  const Json* type = json.find("type");
  if (!json.is_object() || type == nullptr || !type->is_string()) {
    return tokenizer_error(std::string(where) + " must be an object with a \"type\", or null");
  }
  const std::string& t = type->as_string();
  if (t == "ByteLevel") return {};  // it only trims offsets
  if (t == "Sequence") {
    const Json* list = json.find("processors");
    if (list == nullptr || !list->is_array()) {
      return tokenizer_error(std::string(where) + " needs \"processors\"");
    }
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      std::vector<int32_t> p, s;
      MH_TRY(parse_post_processor(list->as_array()[i],
                                  std::string(where) + ".processors[" + std::to_string(i) + "]",
                                  p, s));
      prefix.insert(prefix.begin(), p.begin(), p.end());
      suffix.insert(suffix.end(), s.begin(), s.end());
    }
    return {};
  }
  if (t != "TemplateProcessing") {
    return tokenizer_error(std::string(where) + " type \"" + t +
                           "\" is not implemented (this engine implements TemplateProcessing, "
                           "ByteLevel and Sequence)");
  }
  const Json* single = json.find("single");
  const Json* specials = json.find("special_tokens");
  if (single == nullptr || !single->is_array() || specials == nullptr || !specials->is_object()) {
    return tokenizer_error(std::string(where) + " needs \"single\" and \"special_tokens\"");
  }
  bool seen_sequence = false;
  for (const Json& piece : single->as_array()) {
    if (const Json* seq = piece.find("Sequence")) {
      const Json* id = seq->find("id");
      if (seen_sequence || id == nullptr || !id->is_string() || id->as_string() != "A") {
        return tokenizer_error(std::string(where) + ".single must hold sequence A once");
      }
      seen_sequence = true;
      continue;
    }
    const Json* special = piece.find("SpecialToken");
    const Json* name = special == nullptr ? nullptr : special->find("id");
    if (name == nullptr || !name->is_string()) {
      return tokenizer_error(std::string(where) + ".single holds something that is not a "
                                                  "Sequence or a SpecialToken");
    }
    const Json* entry = specials->find(name->as_string());
    const Json* ids = entry == nullptr ? nullptr : entry->find("ids");
    if (ids == nullptr || !ids->is_array()) {
      return tokenizer_error(std::string(where) + ".special_tokens has no ids for \"" +
                             name->as_string() + "\"");
    }
    for (const Json& id : ids->as_array()) {
      MH_ASSIGN_OR_RETURN(int32_t v, token_id(id, std::string(where) + ".special_tokens"));
      (seen_sequence ? suffix : prefix).push_back(v);
    }
  }
  if (!seen_sequence) return tokenizer_error(std::string(where) + ".single has no sequence A");
  return {};
}

}  // namespace

Result<Tokenizer> Tokenizer::from_tokenizer_json(std::string_view text) {
  JsonLimits limits;
  limits.max_depth = 32;
  limits.max_bytes = kMaxTokenizerBytes;
  auto parsed = parse_json(text, limits);
  if (!parsed.ok()) return invalid_argument("tokenizer.json: " + parsed.status().message());
  const Json& root = *parsed;
  if (!root.is_object()) return tokenizer_error("tokenizer.json must be a JSON object");
  if (const Json* v = root.find("version");
      v != nullptr && !(v->is_string() && v->as_string() == "1.0")) {
    return tokenizer_error("\"version\" must be \"1.0\"");
  }
  for (const char* key : {"truncation", "padding"}) {
    if (const Json* v = root.find(key); v != nullptr && !v->is_null()) {
      return tokenizer_error(std::string("\"") + key +
                             "\" is set; this engine encodes without truncation or padding");
    }
  }
  const Json* model = root.find("model");
  if (model == nullptr || !model->is_object()) {
    return tokenizer_error("tokenizer.json has no \"model\" object");
  }
  if (const Json* type = model->find("type");
      type != nullptr && !(type->is_string() && type->as_string() == "BPE")) {
    return tokenizer_error("model.type must be \"BPE\" (" +
                           (type->is_string() ? "\"" + type->as_string() + "\"" : "this") +
                           " is not implemented)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = model->find(key);
    if (v != nullptr && !v->is_null() && !(v->is_string() && v->as_string().empty())) {
      return tokenizer_error(std::string("model.") + key + " is not implemented");
    }
  }
  if (const Json* v = model->find("dropout");
      v != nullptr && !v->is_null() && !(v->is_number() && v->as_double() == 0)) {
    return tokenizer_error("model.dropout is not implemented (it must be null)");
  }
  Tokenizer t;
  t.json_ = std::string(text);
  MH_ASSIGN_OR_RETURN(t.normalizer_, Normalizer::parse(member(root, "normalizer"), "normalizer"));
  MH_ASSIGN_OR_RETURN(t.pre_tokenizer_,
                      PreTokenizer::parse(member(root, "pre_tokenizer"), "pre_tokenizer"));
  MH_ASSIGN_OR_RETURN(t.decoder_, Decoder::parse(member(root, "decoder"), "decoder"));
  t.byte_level_ = t.pre_tokenizer_.byte_level();
  auto flag = [&](const char* key, bool& out) -> Status {
    const Json* v = model->find(key);
    if (v == nullptr || v->is_null()) return {};
    if (!v->is_bool()) return tokenizer_error(std::string("model.") + key + " must be a boolean");
    out = v->as_bool();
    return {};
  };
  MH_TRY(flag("byte_fallback", t.byte_fallback_));
  MH_TRY(flag("fuse_unk", t.fuse_unk_));
  MH_TRY(flag("ignore_merges", t.ignore_merges_));
  if (t.byte_fallback_ && t.byte_level_) {
    return tokenizer_error("model.byte_fallback is set with a ByteLevel pre-tokenizer, which "
                           "already has a token for every byte");
  }
  MH_TRY(parse_post_processor(member(root, "post_processor"), "post_processor", t.prefix_ids_,
                              t.suffix_ids_));

  const Json* vocab = model->find("vocab");
  if (vocab == nullptr || !vocab->is_object()) return tokenizer_error("model.vocab must be an object");
  for (const auto& [token, id] : vocab->as_object()) {
    MH_ASSIGN_OR_RETURN(int32_t v, token_id(id, "model.vocab[\"" + token + "\"]"));
    MH_TRY(t.add_vocab(token, v));
  }
  if (const Json* unk = model->find("unk_token"); unk != nullptr && !unk->is_null()) {
    if (!unk->is_string()) return tokenizer_error("model.unk_token must be a string or null");
    auto it = t.ids_.find(unk->as_string());
    if (t.byte_level_) {
      std::string bytes;
      if (byte_level_to_bytes(unk->as_string(), bytes)) it = t.ids_.find(bytes);
    }
    if (it == t.ids_.end()) {
      return tokenizer_error("model.unk_token \"" + unk->as_string() + "\" is not in the vocabulary");
    }
    t.unk_id_ = it->second;
  }
  const Json* merges = model->find("merges");
  if (merges == nullptr || !merges->is_array()) return tokenizer_error("model.merges must be an array");
  t.merges_.reserve(merges->as_array().size());
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
  MH_TRY(t.add_added_tokens(root.find("added_tokens")));
  MH_TRY(t.finish());
  for (int32_t id : t.prefix_ids_) {
    if (id >= t.vocab_size()) return tokenizer_error("post_processor names token " + std::to_string(id) + ", outside the vocabulary");
  }
  for (int32_t id : t.suffix_ids_) {
    if (id >= t.vocab_size()) return tokenizer_error("post_processor names token " + std::to_string(id) + ", outside the vocabulary");
  }
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
  std::vector<std::pair<int32_t, std::string>> specials;
  for (const auto& [token, id] : vocab->as_object()) {
    MH_ASSIGN_OR_RETURN(int32_t v, token_id(id, "vocab.json[\"" + token + "\"]"));
    // GPT-2's end-of-text marker is spelt in printable bytes but was always a special token.
    std::string bytes;
    if (token != "<|endoftext|>" && byte_level_to_bytes(token, bytes)) {
      MH_TRY(t.add_vocab(token, v));
    } else {
      specials.emplace_back(v, token);
    }
  }
  // Special tokens take the ids vocab.json gave them.
  std::sort(specials.begin(), specials.end());
  for (auto& [id, content] : specials) {
    if (id < t.vocab_size() && !t.surface_[static_cast<size_t>(id)].empty()) {
      return tokenizer_error("token id " + std::to_string(id) + " is given twice");
    }
    t.add_special(std::move(content), id);
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
  t.json_ = t.gpt2_json();
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

// The tokenizer.json of a GPT-2-style byte-level BPE (vocab.json + merges.txt, or trained).
std::string Tokenizer::gpt2_json() const {
  std::string out = R"({"version":"1.0","truncation":null,"padding":null,"added_tokens":[)";
  bool first = true;
  for (const AddedToken& a : added_) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":" + std::to_string(a.id) + ",\"content\":";
    append_json_string(out, a.content);
    out += R"(,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,)"
           R"("special":true})";
  }
  out += R"(],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,)"
         R"("trim_offsets":true,"use_regex":true},)"
         R"("post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,)"
         R"("use_regex":true},"decoder":{"type":"ByteLevel","add_prefix_space":true,)"
         R"("trim_offsets":true,"use_regex":true},"model":{"type":"BPE","dropout":null,)"
         R"("unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",)"
         R"("fuse_unk":false,"byte_fallback":false,"vocab":{)";
  first = true;
  for (size_t id = 0; id < surface_.size(); ++id) {
    if (special_[id]) continue;
    if (!first) out += ',';
    first = false;
    append_json_string(out, surface_[id]);
    out += ':' + std::to_string(id);
  }
  out += "},\"merges\":[";
  for (size_t i = 0; i < merges_.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, surface_[static_cast<size_t>(merges_[i].first)] + " " +
                                surface_[static_cast<size_t>(merges_[i].second)]);
  }
  out += "]}}\n";
  return out;
}

Status Tokenizer::save(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error("cannot create " + dir.string() + ": " + ec.message());
  return write_file_atomically(dir / "tokenizer.json", json_);
}

}  // namespace mh::engine
