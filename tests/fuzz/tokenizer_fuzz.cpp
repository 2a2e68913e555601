// libFuzzer target: any bytes as tokenizer.json. A tokenizer that loads must encode text and
// decode it back to the same bytes, and write a tokenizer.json that loads to the same ids.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "platform/engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tokenizer = mh::engine::Tokenizer::from_tokenizer_json(text);
  if (!tokenizer.ok()) return 0;
  // The input itself is handy text: it holds the tokenizer's own tokens and odd bytes.
  const auto ids = tokenizer->encode(text);
  auto decoded = tokenizer->decode(ids);
  if (!decoded.ok() || *decoded != text) std::abort();
  auto again = mh::engine::Tokenizer::from_tokenizer_json(tokenizer->to_tokenizer_json());
  if (!again.ok() || again->encode(text) != ids) std::abort();
  return 0;
}
