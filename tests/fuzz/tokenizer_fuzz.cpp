// libFuzzer target: any bytes as tokenizer.json. A tokenizer that loads must encode any text
// (the input itself: it holds the tokenizer's own tokens and odd bytes) with and without special
// tokens, decode what it encoded, and load again from what it saves to the same ids.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "platform/engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tokenizer = mh::engine::Tokenizer::from_tokenizer_json(text);
  if (!tokenizer.ok()) return 0;
  const auto ids = tokenizer->encode(text);
  (void)tokenizer->encode(text, false);
  (void)tokenizer->with_special_tokens(ids);
  auto decoded = tokenizer->decode(ids);
  if (!decoded.ok()) std::abort();
  for (size_t i = 1; i <= ids.size(); ++i) (void)tokenizer->decode_next({ids.data(), i});
  auto again = mh::engine::Tokenizer::from_tokenizer_json(tokenizer->to_tokenizer_json());
  if (!again.ok() || again->encode(text) != ids) std::abort();
  return 0;
}
