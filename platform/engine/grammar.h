// Constrained decoding: a context-free grammar over bytes, matched against a tokenizer's
// vocabulary so that each decode step allows exactly the tokens after which the output can still
// become a sentence of the grammar (structured outputs: json_schema.h builds the grammars).
//
// The matcher keeps the set of pushdown stacks (llama.cpp's grammar sampler) the bytes so far
// lead to; each stack is a list of grammar positions, the innermost rule's on top, and a stack
// whose top is always a byte class (rule references are expanded as soon as they are reached,
// a reference in tail position replacing its caller so that repetition does not deepen it).
// Token masks follow xgrammar: for each byte-class position, the tokens are classed once against
// the rest of that position's rule alone, walking the vocabulary as a trie in byte order:
//   accepted   consumed entirely inside the rule (or ending just as it ends): valid in any context
//   rejected   dead inside the rule without it ending: invalid in any context
//   uncertain  bytes left when the rule ends: depend on the rules below on the stack
// so a step ORs each live stack's accepted set and checks only its uncertain tokens in full.
// These per-position masks are computed when first needed and kept with the grammar, which is
// shared by every sequence decoding with it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "platform/base/status.h"

namespace mh::engine {

class Tokenizer;

// A set of bytes.
struct ByteSet {
  uint64_t bits[4] = {};
  static ByteSet range(uint8_t lo, uint8_t hi);
  static ByteSet of(std::string_view bytes);
  ByteSet& add(const ByteSet& other);
  bool has(uint8_t c) const { return (bits[c >> 6] >> (c & 63)) & 1; }
};

class Grammar {
 public:
  // One element of an alternative: a byte from a set, or a rule.
  struct Symbol {
    ByteSet bytes;
    int32_t rule = -1;
  };
  using Sequence = std::vector<Symbol>;

  // A rule to be given its alternatives with define(); the first declared is where sentences
  // start.
  int32_t declare(std::string name);
  void define(int32_t rule, std::vector<Sequence> alternatives);
  // A new rule with these alternatives.
  int32_t rule(std::string name, std::vector<Sequence> alternatives);

  static Symbol ref(int32_t rule) { return {{}, rule}; }
  static Symbol bytes(ByteSet set) { return {set, -1}; }
  static Sequence literal(std::string_view text);
  static Sequence join(std::vector<Sequence> parts);
  // Rules for `item` repeated: any number of times, or min to max times (max < 0: no bound).
  // An item that is one defined rule is inlined, so that a token spanning several items stays
  // inside one rule (its mask is then known without context); the rules that count down the
  // last optional items share one set of masks past a depth no common token reaches.
  int32_t repeat(std::string name, const Sequence& item, int64_t min = 0, int64_t max = -1);

  // Checks that every rule is defined and that none reaches itself before a byte (left
  // recursion, which a pushdown matcher cannot run), and lays the grammar out for matching.
  Status finish();

  size_t rules() const { return names_.size(); }

 private:
  friend class GrammarStacks;
  friend class GrammarMatcher;
  friend class TokenGrammar;
  // The laid-out grammar: each alternative's cells in a row, then an end cell.
  struct Cell {
    enum Kind : uint8_t { kBytes, kRule, kEnd } kind;
    int32_t rule;
    ByteSet bytes;
  };

  std::vector<std::string> names_;
  std::vector<std::vector<Sequence>> alternatives_;
  std::vector<bool> defined_;
  // Rules built alike whose token masks are one's (see repeat()): rule, the one it borrows from.
  std::vector<std::pair<int32_t, int32_t>> alike_;
  std::vector<Cell> cells_;
  std::vector<std::vector<int32_t>> starts_;  // per rule, the first cell of each alternative
  std::vector<int32_t> mask_cell_;            // per cell, the cell whose token mask it uses
  std::vector<bool> shared_;                  // per cell, whether other cells use its mask
  std::vector<int32_t> rule_of_;              // per cell, its rule
  std::vector<ByteSet> follow_;               // per rule, the bytes that can come right after it
  void follow_sets(const std::vector<bool>& nullable);
};

// Pushdown stacks as nodes of a tree (a cell and the stack below it), interned so that equal
// stacks are one id: copying, comparing and deduplicating a stack is an integer's work.
class GrammarStacks {
 public:
  static constexpr int32_t kEmpty = -1;    // a finished sentence
  static constexpr int32_t kEscaped = -2;  // the bottom while one rule is studied alone
  explicit GrammarStacks(const Grammar& grammar) : g_(&grammar) {}
  int32_t push(int32_t below, int32_t cell);
  int32_t top(int32_t stack) const { return nodes_[static_cast<size_t>(stack)].cell; }
  // Expands a stack whose top was just reached until each resulting stack's top is a byte class
  // (or it is empty or escaped), appending them to `out`.
  void expand(int32_t stack, std::vector<int32_t>& out);
  // The stacks `in` lead to after byte `c`, without duplicates.
  void advance(const std::vector<int32_t>& in, uint8_t c, std::vector<int32_t>& out);
  // Whether `bytes` can follow `stack`.
  bool takes(int32_t stack, std::string_view bytes);
  size_t size() const { return nodes_.size(); }
  // Keeps only the nodes `live` stand on (their ids renumbered in place).
  void compact(std::vector<int32_t>& live);

 private:
  struct Node {
    int32_t cell, below;
  };
  const Grammar* g_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> index_;
  std::unordered_map<uint64_t, std::vector<int32_t>> expanded_;  // by rule and stack below
  std::vector<int32_t> now_, next_;                              // scratch for takes()
};

// The bytes each token of a tokenizer adds to a text, in the middle of one; computed once per
// tokenizer and shared by the grammars matched against it. Special tokens, and ids past the
// tokenizer's (a model's padded rows), are never part of a constrained output.
class TokenBytes {
 public:
  TokenBytes(const Tokenizer& tokenizer, int32_t model_vocab);
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  // The tokens that can be part of an output, by their bytes.
  const std::vector<int32_t>& sorted() const { return sorted_; }
  // Those of them that start with `byte`.
  std::pair<std::vector<int32_t>::const_iterator, std::vector<int32_t>::const_iterator>
  starting_with(uint8_t byte) const {
    return {sorted_.begin() + static_cast<ptrdiff_t>(first_[byte]),
            sorted_.begin() + static_cast<ptrdiff_t>(first_[byte + 1])};
  }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> sorted_;
  size_t first_[257] = {};  // sorted_[first_[b], first_[b + 1]) start with byte b
};

// A grammar bound to a vocabulary, with its per-position token masks.
class TokenGrammar {
 public:
  static Result<std::shared_ptr<const TokenGrammar>> make(
      Grammar grammar, std::shared_ptr<const TokenBytes> vocabulary);
  const Grammar& grammar() const { return grammar_; }
  const TokenBytes& vocabulary() const { return *vocabulary_; }

 private:
  friend class GrammarMatcher;
  TokenGrammar(Grammar grammar, std::shared_ptr<const TokenBytes> vocabulary);
  struct Mask {
    std::vector<uint64_t> accepted;  // a bit per token
    std::vector<int32_t> uncertain;
  };
  const Mask& mask_at(int32_t cell) const;
  Mask classify(int32_t cell) const;

  Grammar grammar_;
  std::shared_ptr<const TokenBytes> vocabulary_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<Mask>> masks_;  // by cell, as computed
};

// Where one output stands in its grammar.
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const TokenGrammar> grammar);
  // Sets a bit per token (of the vocabulary's size) for each token that may come next.
  void allowed(std::vector<uint64_t>& mask) const;
  // Whether the output so far is a sentence (it may end here).
  bool can_end() const;
  // Whether any byte may follow.
  bool can_continue() const;
  // Whether a token's bytes can continue the output.
  bool can_take(int32_t token) const;
  // Takes a token's bytes; false (nothing changed) when they cannot continue the output.
  bool accept(int32_t token);
  bool accept_bytes(std::string_view bytes);

 private:
  std::shared_ptr<const TokenGrammar> grammar_;
  // Interning while checking changes no state: the pool is scratch, compacted now and then.
  mutable GrammarStacks pool_;
  mutable std::vector<int32_t> stacks_;
};

}  // namespace mh::engine
