// libFuzzer target: any bytes as a JSONL training file. A file that loads must give rows whose
// targets are the next tokens or -1, with ids inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "platform/engine/data.h"

namespace {

// Bytes alone, plus the special tokens the chat template and packing use.
const mh::engine::Tokenizer& byte_tokenizer() {
  static const mh::engine::Tokenizer t = [] {
    std::string vocab = "{";
    for (int b = 0; b < 256; ++b) {
      // GPT-2's byte-to-character table: printable Latin-1 stands for itself.
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      static int next = 256;
      const int cp = printable ? b : next++;
      std::string ch;
      if (cp < 0x80) {
        ch = std::string(1, static_cast<char>(cp));
        if (ch == "\"" || ch == "\\") ch = "\\" + ch;
      } else {
        ch += static_cast<char>(0xc0 | (cp >> 6));
        ch += static_cast<char>(0x80 | (cp & 0x3f));
      }
      vocab += "\"" + ch + "\":" + std::to_string(b) + ",";
    }
    vocab += R"("<|endoftext|>":256,"<|im_start|>":257,"<|im_end|>":258})";
    return std::move(mh::engine::Tokenizer::from_vocab_merges(vocab, "").value());
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tok = byte_tokenizer();
  auto d = mh::engine::Dataset::from_jsonl_text(text, tok);
  if (!d.ok()) return 0;
  std::vector<int32_t> ids, targets;
  for (int64_t r = 0; r < d->rows(4); ++r) d->row(r, 4, ids, targets);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tok.vocab_size()) std::abort();
    if (targets[i] >= tok.vocab_size() || targets[i] < -1) std::abort();
    if (targets[i] >= 0 && i + 1 < ids.size() && targets[i] != ids[i + 1]) std::abort();
  }
  return 0;
}
