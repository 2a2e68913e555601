// Encode throughput of the engine's tokenizer on one core: a tokenizer.json over a text file,
// encoded a line at a time (as a server meets prompts), the best of several passes. Prints one
// JSON line: bytes, tokens, seconds, MB/s, and a checksum of the ids so peers can be compared.
//   tokenizer_bench TOKENIZER_JSON TEXT_FILE [passes]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "platform/engine/files.h"
#include "platform/engine/tokenizer.h"

int main(int argc, char** argv) {
  using namespace mh::engine;
  if (argc < 3) {
    std::fprintf(stderr, "usage: tokenizer_bench TOKENIZER_JSON TEXT_FILE [passes]\n");
    return 2;
  }
  auto json = read_text_file(argv[1], size_t{256} << 20);
  auto text = read_text_file(argv[2], size_t{1} << 30);
  if (!json.ok() || !text.ok()) {
    std::fprintf(stderr, "tokenizer_bench: cannot read the inputs\n");
    return 2;
  }
  const auto load_start = std::chrono::steady_clock::now();
  auto tok = Tokenizer::from_tokenizer_json(*json);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", tok.status().message().c_str());
    return 2;
  }
  std::vector<std::string_view> lines;
  for (size_t at = 0; at < text->size();) {
    size_t end = text->find('\n', at);
    end = end == std::string::npos ? text->size() : end + 1;
    lines.push_back(std::string_view(*text).substr(at, end - at));
    at = end;
  }
  const int passes = argc > 3 ? std::atoi(argv[3]) : 3;
  double best = 1e30;
  uint64_t tokens = 0, checksum = 0;
  for (int p = 0; p < passes; ++p) {
    tokens = 0;
    checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (std::string_view line : lines) {
      const auto ids = tok->encode(line);
      tokens += ids.size();
      for (int32_t id : ids) checksum = checksum * 1000003u + static_cast<uint32_t>(id);
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf(
      "{\"impl\":\"macrohard\",\"bytes\":%zu,\"tokens\":%llu,\"seconds\":%.4f,\"mb_per_s\":%.2f,"
      "\"load_seconds\":%.3f,\"checksum\":\"%016llx\"}\n",
      text->size(), static_cast<unsigned long long>(tokens), best, text->size() / best / 1e6,
      load_s, static_cast<unsigned long long>(checksum));
  return 0;
}
