#include "platform/engine/grammar.h"

#include <algorithm>
#include <functional>
#include <span>

#include "platform/engine/tokenizer.h"

namespace mh::engine {

namespace {

// Ambiguous grammars can multiply stacks; past this many the rest are dropped (the output stays
// inside the grammar, some continuations are just no longer offered).
constexpr size_t kMaxStacks = 1024;

void set_bit(std::vector<uint64_t>& mask, int32_t id) {
  mask[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}
bool bit(const std::vector<uint64_t>& mask, int32_t id) {
  return (mask[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
}

}  // namespace

ByteSet ByteSet::range(uint8_t lo, uint8_t hi) {
  ByteSet s;
  for (int c = lo; c <= hi; ++c) s.bits[c >> 6] |= uint64_t{1} << (c & 63);
  return s;
}

ByteSet ByteSet::of(std::string_view bytes) {
  ByteSet s;
  for (char ch : bytes) {
    const auto c = static_cast<uint8_t>(ch);
    s.bits[c >> 6] |= uint64_t{1} << (c & 63);
  }
  return s;
}

ByteSet& ByteSet::add(const ByteSet& other) {
  for (int i = 0; i < 4; ++i) bits[i] |= other.bits[i];
  return *this;
}

int32_t Grammar::declare(std::string name) {
  names_.push_back(std::move(name));
  alternatives_.emplace_back();
  defined_.push_back(false);
  return static_cast<int32_t>(names_.size() - 1);
}

void Grammar::define(int32_t rule, std::vector<Sequence> alternatives) {
  alternatives_[static_cast<size_t>(rule)] = std::move(alternatives);
  defined_[static_cast<size_t>(rule)] = true;
}

int32_t Grammar::rule(std::string name, std::vector<Sequence> alternatives) {
  const int32_t r = declare(std::move(name));
  define(r, std::move(alternatives));
  return r;
}

Grammar::Sequence Grammar::literal(std::string_view text) {
  Sequence out;
  for (char c : text) out.push_back(bytes(ByteSet::of(std::string_view(&c, 1))));
  return out;
}

Grammar::Sequence Grammar::join(std::vector<Sequence> parts) {
  Sequence out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

int32_t Grammar::repeat(std::string name, const Sequence& item, int64_t min, int64_t max) {
  Sequence head;
  for (int64_t i = 0; i < min; ++i) head.insert(head.end(), item.begin(), item.end());
  // "" | item then `then`: with a one-rule item, that rule's alternatives each then `then`.
  const auto optional = [&](int32_t then) {
    std::vector<Sequence> out{{}};
    const bool inline_rule =
        item.size() == 1 && item[0].rule >= 0 && defined_[static_cast<size_t>(item[0].rule)];
    const std::vector<Sequence> items = inline_rule
                                            ? alternatives_[static_cast<size_t>(item[0].rule)]
                                            : std::vector<Sequence>{item};
    for (const Sequence& alt : items) {
      out.push_back(alt);
      if (then >= 0) out.back().push_back(ref(then));
    }
    return out;
  };
  int32_t rest = -1;
  if (max < 0) {  // rest = "" | item rest
    rest = declare(name + "*");
    define(rest, optional(rest));
  } else {  // rest_k = "" | item rest_(k-1), for the k = max - min optional items
    // Past this many items left, every rest_k classes tokens as rest_kSame does: a token it
    // accepts fits in kSame items, one it rejects dies within them, and the rest are checked.
    constexpr int64_t kSame = 16;
    int32_t same = -1;
    for (int64_t k = 1; k <= max - min; ++k) {
      rest = rule(name + "?" + std::to_string(k), optional(rest));
      if (k == kSame) same = rest;
      if (k > kSame) alike_.emplace_back(rest, same);
    }
  }
  if (rest >= 0) head.push_back(ref(rest));
  return rule(std::move(name), {std::move(head)});
}

Status Grammar::finish() {
  const size_t n = names_.size();
  if (n == 0) return invalid_argument("the grammar has no rules");
  for (size_t r = 0; r < n; ++r) {
    if (!defined_[r]) return invalid_argument("grammar rule '" + names_[r] + "' is not defined");
  }
  // Nullable rules (those that can match nothing), to a fixed point.
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Sequence& alt : alternatives_[r]) {
        const bool empty = std::all_of(alt.begin(), alt.end(), [&](const Symbol& s) {
          return s.rule >= 0 && nullable[static_cast<size_t>(s.rule)];
        });
        if (empty) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  // Left recursion: a cycle through the rules each can reach before its first byte.
  std::vector<int> state(n, 0);  // 0 unseen, 1 on the path, 2 done
  std::function<Status(size_t)> visit = [&](size_t r) -> Status {
    state[r] = 1;
    for (const Sequence& alt : alternatives_[r]) {
      for (const Symbol& s : alt) {
        if (s.rule < 0) break;
        const auto next = static_cast<size_t>(s.rule);
        if (state[next] == 1) {
          return invalid_argument("grammar rule '" + names_[next] +
                                  "' can reach itself before matching anything");
        }
        if (state[next] == 0) MH_TRY(visit(next));
        if (!nullable[next]) break;
      }
    }
    state[r] = 2;
    return {};
  };
  for (size_t r = 0; r < n; ++r) {
    if (state[r] == 0) MH_TRY(visit(r));
  }
  cells_.clear();
  starts_.assign(n, {});
  std::vector<int32_t> first(n + 1);
  for (size_t r = 0; r < n; ++r) {
    first[r] = static_cast<int32_t>(cells_.size());
    for (const Sequence& alt : alternatives_[r]) {
      starts_[r].push_back(static_cast<int32_t>(cells_.size()));
      for (const Symbol& s : alt) {
        cells_.push_back(s.rule >= 0 ? Cell{Cell::kRule, s.rule, {}}
                                     : Cell{Cell::kBytes, -1, s.bytes});
      }
      cells_.push_back(Cell{Cell::kEnd, -1, {}});
    }
  }
  first[n] = static_cast<int32_t>(cells_.size());
  follow_sets(nullable);
  rule_of_.resize(cells_.size());
  for (size_t r = 0; r < n; ++r) {
    std::fill(rule_of_.begin() + first[r], rule_of_.begin() + first[r + 1],
              static_cast<int32_t>(r));
  }
  shared_.assign(cells_.size(), false);
  mask_cell_.resize(cells_.size());
  for (size_t c = 0; c < cells_.size(); ++c) mask_cell_[c] = static_cast<int32_t>(c);
  // Alike rules have their cells in the same places.
  for (auto [rule, like] : alike_) {
    const auto r = static_cast<size_t>(rule);
    for (int32_t c = first[r]; c < first[r + 1]; ++c) {
      const int32_t to = first[static_cast<size_t>(like)] + (c - first[r]);
      mask_cell_[static_cast<size_t>(c)] = to;
      shared_[static_cast<size_t>(to)] = true;
    }
  }
  return {};
}

void Grammar::follow_sets(const std::vector<bool>& nullable) {
  const size_t n = names_.size();
  // The bytes that can begin each rule, then those that can come right after it anywhere.
  std::vector<ByteSet> begins(n);
  const auto begin_of = [&](const Sequence& seq, size_t from, ByteSet& into) {
    for (size_t i = from; i < seq.size(); ++i) {
      if (seq[i].rule < 0) {
        into.add(seq[i].bytes);
        return false;
      }
      into.add(begins[static_cast<size_t>(seq[i].rule)]);
      if (!nullable[static_cast<size_t>(seq[i].rule)]) return false;
    }
    return true;  // all of it can be empty
  };
  const auto grow = [](ByteSet& set, const ByteSet& more) {
    const ByteSet before = set;
    set.add(more);
    return !std::equal(std::begin(before.bits), std::end(before.bits), std::begin(set.bits));
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      for (const Sequence& alt : alternatives_[r]) {
        ByteSet b;
        begin_of(alt, 0, b);
        changed = grow(begins[r], b) || changed;
      }
    }
  }
  follow_.assign(n, ByteSet{});
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      for (const Sequence& alt : alternatives_[r]) {
        for (size_t i = 0; i < alt.size(); ++i) {
          if (alt[i].rule < 0) continue;
          ByteSet after;
          if (begin_of(alt, i + 1, after)) after.add(follow_[r]);
          changed = grow(follow_[static_cast<size_t>(alt[i].rule)], after) || changed;
        }
      }
    }
  }
}

int32_t GrammarStacks::push(int32_t below, int32_t cell) {
  const uint64_t key =
      (static_cast<uint64_t>(static_cast<uint32_t>(cell)) << 32) | static_cast<uint32_t>(below);
  auto [it, added] = index_.emplace(key, static_cast<int32_t>(nodes_.size()));
  if (added) nodes_.push_back({cell, below});
  return it->second;
}

void GrammarStacks::expand(int32_t stack, std::vector<int32_t>& out) {
  const auto& cells = g_->cells_;
  while (stack >= 0) {
    const Node node = nodes_[static_cast<size_t>(stack)];
    const Grammar::Cell& cell = cells[static_cast<size_t>(node.cell)];
    if (cell.kind == Grammar::Cell::kBytes) break;
    if (cell.kind == Grammar::Cell::kEnd) {  // back to the caller, past its reference
      stack = node.below;
      if (stack >= 0) {
        const Node caller = nodes_[static_cast<size_t>(stack)];
        stack = push(caller.below, caller.cell + 1);
      }
      continue;
    }
    // A reference last in its alternative returns straight to the caller's caller.
    const bool tail = cells[static_cast<size_t>(node.cell) + 1].kind == Grammar::Cell::kEnd;
    const int32_t below = tail ? node.below : stack;
    // A rule entered over the same stack always expands alike: done once, remembered.
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(cell.rule)) << 32) |
                         static_cast<uint32_t>(below);
    auto known = expanded_.find(key);
    if (known == expanded_.end()) {
      std::vector<int32_t> made;
      for (int32_t start : g_->starts_[static_cast<size_t>(cell.rule)]) {
        expand(push(below, start), made);
      }
      known = expanded_.emplace(key, std::move(made)).first;
    }
    out.insert(out.end(), known->second.begin(), known->second.end());
    return;
  }
  out.push_back(stack);
}

void GrammarStacks::advance(const std::vector<int32_t>& in, uint8_t c, std::vector<int32_t>& out) {
  out.clear();
  for (int32_t s : in) {
    if (s < 0) continue;
    const Node node = nodes_[static_cast<size_t>(s)];
    if (!g_->cells_[static_cast<size_t>(node.cell)].bytes.has(c)) continue;
    expand(push(node.below, node.cell + 1), out);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > kMaxStacks) out.resize(kMaxStacks);
}

bool GrammarStacks::takes(int32_t stack, std::string_view bytes) {
  now_.assign(1, stack);
  for (char c : bytes) {
    advance(now_, static_cast<uint8_t>(c), next_);
    if (next_.empty()) return false;
    now_.swap(next_);
  }
  return true;
}

void GrammarStacks::compact(std::vector<int32_t>& live) {
  GrammarStacks fresh(*g_);
  std::unordered_map<int32_t, int32_t> moved;
  const std::function<int32_t(int32_t)> copy = [&](int32_t s) -> int32_t {
    if (s < 0) return s;
    if (auto it = moved.find(s); it != moved.end()) return it->second;
    const Node node = nodes_[static_cast<size_t>(s)];
    const int32_t id = fresh.push(copy(node.below), node.cell);
    moved.emplace(s, id);
    return id;
  };
  for (int32_t& s : live) s = copy(s);
  nodes_ = std::move(fresh.nodes_);
  index_ = std::move(fresh.index_);
  expanded_.clear();
}

TokenBytes::TokenBytes(const Tokenizer& tokenizer, int32_t model_vocab)
    : bytes_(static_cast<size_t>(std::max(model_vocab, 0))) {
  // A token's bytes mid-text: what it adds after an ordinary token, so that decoders which strip
  // a first token's leading space (SentencePiece's) do not.
  const std::vector<int32_t> a = tokenizer.encode("a", false);
  const int32_t anchor = a.empty() ? -1 : a.back();
  const auto text_of = [&](std::span<const int32_t> ids) {
    auto text = tokenizer.decode(ids);
    return text.ok() ? std::move(text).value() : std::string();
  };
  const std::string before = anchor < 0 ? "" : text_of({&anchor, 1});
  const int32_t n = std::min(model_vocab, tokenizer.vocab_size());
  for (int32_t id = 0; id < n; ++id) {
    if (tokenizer.is_special(id)) continue;
    std::string text;
    if (anchor >= 0) {
      const int32_t pair[2] = {anchor, id};
      const std::string after = text_of(pair);
      if (after.starts_with(before)) text = after.substr(before.size());
    }
    if (text.empty()) text = text_of({&id, 1});
    bytes_[static_cast<size_t>(id)] = std::move(text);
    if (!bytes_[static_cast<size_t>(id)].empty()) sorted_.push_back(id);
  }
  std::sort(sorted_.begin(), sorted_.end(), [&](int32_t x, int32_t y) {
    return bytes_[static_cast<size_t>(x)] != bytes_[static_cast<size_t>(y)]
               ? bytes_[static_cast<size_t>(x)] < bytes_[static_cast<size_t>(y)]
               : x < y;
  });
  size_t at = 0;
  for (int c = 0; c < 256; ++c) {
    while (at < sorted_.size() &&
           static_cast<uint8_t>(bytes_[static_cast<size_t>(sorted_[at])][0]) < c) {
      ++at;
    }
    first_[c] = at;
  }
  first_[256] = sorted_.size();
}

TokenGrammar::TokenGrammar(Grammar grammar, std::shared_ptr<const TokenBytes> vocabulary)
    : grammar_(std::move(grammar)), vocabulary_(std::move(vocabulary)) {
  masks_.resize(grammar_.cells_.size());
}

Result<std::shared_ptr<const TokenGrammar>> TokenGrammar::make(
    Grammar grammar, std::shared_ptr<const TokenBytes> vocabulary) {
  MH_TRY(grammar.finish());
  return std::shared_ptr<const TokenGrammar>(
      new TokenGrammar(std::move(grammar), std::move(vocabulary)));
}

const TokenGrammar::Mask& TokenGrammar::mask_at(int32_t cell) const {
  std::lock_guard lock(mutex_);
  const int32_t like = grammar_.mask_cell_[static_cast<size_t>(cell)];
  auto& mask = masks_[static_cast<size_t>(like)];
  if (!mask) mask = std::make_unique<Mask>(classify(like));
  return *mask;
}

TokenGrammar::Mask TokenGrammar::classify(int32_t cell) const {
  const TokenBytes& vocab = *vocabulary_;
  GrammarStacks pool(grammar_);
  Mask mask;
  mask.accepted.assign((static_cast<size_t>(vocab.size()) + 63) / 64, 0);
  // states[d]: the stacks after the first d bytes of the current token; escaped[d]: whether the
  // rule ended with bytes of it still to come at some depth before d.
  // (Kept at their largest, so that their vectors are reused rather than made again.)
  std::vector<std::vector<int32_t>> states(1);
  pool.expand(pool.push(GrammarStacks::kEscaped, cell), states[0]);
  std::vector<bool> escaped{false};
  size_t known = 1;  // states[0, known) are for the current token's prefix
  // Once the rule has ended, only a byte that can follow it anywhere may come next; a mask
  // borrowed by rules that count further is kept free of that (see Grammar::repeat).
  const bool pruned = !grammar_.shared_[static_cast<size_t>(cell)];
  const ByteSet& follow =
      grammar_.follow_[static_cast<size_t>(grammar_.rule_of_[static_cast<size_t>(cell)])];
  // Only tokens whose first byte some stack takes need walking: the others are rejected, or,
  // where the rule may end at once, uncertain (pruned by what may follow it).
  ByteSet firsts;
  bool ends_now = false;
  for (int32_t stack : states[0]) {
    if (stack == GrammarStacks::kEscaped) {
      ends_now = true;
    } else {
      firsts.add(grammar_.cells_[static_cast<size_t>(pool.top(stack))].bytes);
    }
  }
  std::string_view previous;
  for (int first = 0; first < 256; ++first) {
    const auto byte = static_cast<uint8_t>(first);
    const auto [from, to] = vocab.starting_with(byte);
    if (!firsts.has(byte)) {
      if (ends_now && (!pruned || follow.has(byte))) {
        mask.uncertain.insert(mask.uncertain.end(), from, to);
      }
      continue;
    }
    for (auto it = from; it != to; ++it) {
      const int32_t id = *it;
      const std::string_view b = vocab.bytes(id);
      size_t common = 0;
      while (common < previous.size() && common < b.size() && previous[common] == b[common]) {
        ++common;
      }
      size_t depth = std::min(common, known - 1);
      known = depth + 1;
      while (depth < b.size() && !states[depth].empty()) {
        const bool out = std::find(states[depth].begin(), states[depth].end(),
                                   GrammarStacks::kEscaped) != states[depth].end() &&
                         (!pruned || follow.has(static_cast<uint8_t>(b[depth])));
        if (states.size() == known) {
          states.emplace_back();
          escaped.push_back(false);
        }
        pool.advance(states[depth], static_cast<uint8_t>(b[depth]), states[depth + 1]);
        escaped[depth + 1] = escaped[depth] || out;
        known = ++depth + 1;
      }
      if (depth == b.size() && !states[depth].empty()) {
        set_bit(mask.accepted, id);
      } else if (escaped[depth]) {
        mask.uncertain.push_back(id);
      }
      previous = b;
    }
  }
  return mask;
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const TokenGrammar> grammar)
    : grammar_(std::move(grammar)), pool_(grammar_->grammar_) {
  for (int32_t start : grammar_->grammar_.starts_[0]) {
    pool_.expand(pool_.push(GrammarStacks::kEmpty, start), stacks_);
  }
  std::sort(stacks_.begin(), stacks_.end());
  stacks_.erase(std::unique(stacks_.begin(), stacks_.end()), stacks_.end());
}

void GrammarMatcher::allowed(std::vector<uint64_t>& mask) const {
  // The pool grows with every check; what the live stacks do not stand on goes now and then.
  if (pool_.size() > 100000) pool_.compact(stacks_);
  const TokenBytes& vocab = grammar_->vocabulary();
  mask.assign((static_cast<size_t>(vocab.size()) + 63) / 64, 0);
  for (int32_t stack : stacks_) {
    if (stack < 0) continue;
    const TokenGrammar::Mask& m = grammar_->mask_at(pool_.top(stack));
    for (size_t w = 0; w < mask.size(); ++w) mask[w] |= m.accepted[w];
    for (int32_t id : m.uncertain) {
      if (!bit(mask, id) && pool_.takes(stack, vocab.bytes(id))) set_bit(mask, id);
    }
  }
}

bool GrammarMatcher::can_end() const {
  return std::find(stacks_.begin(), stacks_.end(), GrammarStacks::kEmpty) != stacks_.end();
}

bool GrammarMatcher::can_continue() const {
  return std::any_of(stacks_.begin(), stacks_.end(), [](int32_t s) { return s >= 0; });
}

bool GrammarMatcher::can_take(int32_t token) const {
  const TokenBytes& vocab = grammar_->vocabulary();
  if (token < 0 || token >= vocab.size() || vocab.bytes(token).empty()) return false;
  return std::any_of(stacks_.begin(), stacks_.end(),
                     [&](int32_t s) { return s >= 0 && pool_.takes(s, vocab.bytes(token)); });
}

bool GrammarMatcher::accept(int32_t token) {
  const TokenBytes& vocab = grammar_->vocabulary();
  if (token < 0 || token >= vocab.size() || vocab.bytes(token).empty()) return false;
  return accept_bytes(vocab.bytes(token));
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  std::vector<int32_t> now = stacks_, next;
  for (char c : bytes) {
    pool_.advance(now, static_cast<uint8_t>(c), next);
    if (next.empty()) return false;
    now.swap(next);
  }
  stacks_ = std::move(now);
  if (pool_.size() > 100000) pool_.compact(stacks_);
  return true;
}

}  // namespace mh::engine
