// The BPE trainer: learns a byte-level BPE vocabulary and its merges from a corpus.
#include <algorithm>
#include <queue>
#include <unordered_map>

#include "platform/engine/tokenizer.h"

namespace mh::engine {
namespace {
constexpr int64_t kMaxVocab = int64_t{1} << 22;
}  // namespace

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
  std::vector<std::string> tokens;  // id -> bytes
  std::unordered_map<std::string, int32_t> ids;
  std::vector<std::pair<int32_t, int32_t>> merges;
  for (int b = 0; b < 256; ++b) {
    tokens.emplace_back(1, static_cast<char>(b));
    ids.emplace(tokens.back(), b);
  }

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
    return std::make_pair(tokens[k >> 32] + tokens[k & 0xffffffffu], tokens[k >> 32]);
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
    std::string merged = tokens[static_cast<size_t>(a)] + tokens[static_cast<size_t>(b)];
    int32_t id;
    if (auto existing = ids.find(merged); existing != ids.end()) {
      id = existing->second;
    } else {
      id = static_cast<int32_t>(vocab++);
      tokens.push_back(merged);
      ids.emplace(std::move(merged), id);
    }
    merges.emplace_back(a, b);
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
  // The tokenizer of what was learnt, spelt as GPT-2's byte-level tokens.
  Tokenizer t;
  for (size_t id = 0; id < tokens.size(); ++id) {
    MH_TRY(t.add_vocab(bytes_to_byte_level(tokens[id]), static_cast<int32_t>(id)));
  }
  for (const auto& [a, b] : merges) {
    MH_TRY(t.add_merge(bytes_to_byte_level(tokens[static_cast<size_t>(a)]),
                       bytes_to_byte_level(tokens[static_cast<size_t>(b)]), "a learnt merge"));
  }
  int32_t next_id = static_cast<int32_t>(vocab);
  for (const std::string& s : options.special_tokens) {
    if (s.empty()) return invalid_argument("a special token may not be empty");
    t.add_special(s, next_id++);
  }
  MH_TRY(t.finish());
  t.json_ = t.gpt2_json();
  return t;
}

}  // namespace mh::engine
