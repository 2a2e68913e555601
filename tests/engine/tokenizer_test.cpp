// The byte-level BPE tokenizer: ids identical to GPT-2's encoder.py (golden cases), both file
// formats, special tokens, round trips of any bytes, the trainer, and bad tokenizer files.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/tokenizer.h"
#include "platform/engine/unicode.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

std::filesystem::path tokenizer_dir() {
  return test::source_dir() / "tests/engine/golden/tokenizer";
}

Tokenizer load_json_tokenizer() {
  auto text = read_text_file(tokenizer_dir() / "tokenizer.json", 1 << 20);
  REQUIRE(text.ok());
  auto t = Tokenizer::from_tokenizer_json(*text);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return std::move(t).value();
}

TEST_CASE(
    "token ids match GPT-2's encoder.py, from tokenizer.json and from vocab.json + merges.txt") {
  const Tokenizer from_json = load_json_tokenizer();
  auto vocab = read_text_file(tokenizer_dir() / "vocab.json", 1 << 20);
  auto merges = read_text_file(tokenizer_dir() / "merges.txt", 1 << 20);
  REQUIRE(vocab.ok());
  REQUIRE(merges.ok());
  auto from_files = Tokenizer::from_vocab_merges(*vocab, *merges);
  REQUIRE_MESSAGE(from_files.ok(), from_files.status().to_string());
  auto cases = read_json_file(tokenizer_dir() / "cases.json");
  REQUIRE(cases.ok());
  REQUIRE(cases->as_array().size() >= 10);
  for (const Json& c : cases->as_array()) {
    const std::string& text = c.find("text")->as_string();
    std::vector<int32_t> expected;
    for (const Json& id : c.find("ids")->as_array())
      expected.push_back(static_cast<int32_t>(id.as_int()));
    CAPTURE(text);
    CHECK(from_json.encode(text) == expected);
    CHECK(from_files->encode(text) == expected);
    CHECK(from_json.decode(expected).value() == text);
  }
  CHECK(from_json.vocab_size() == from_files->vocab_size());
  CHECK(from_json.special_token("<|endoftext|>") == from_files->special_token("<|endoftext|>"));
}

TEST_CASE("text for JSON: each byte that is not part of a well-formed character becomes U+FFFD") {
  using unicode::valid_utf8;
  const std::string r = "\xEF\xBF\xBD";
  CHECK(valid_utf8("plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80") ==
        "plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80");
  CHECK(valid_utf8("a\x80" "b") == "a" + r + "b");            // a lone continuation byte
  CHECK(valid_utf8("\xE2\x82") == r + r);                     // cut short
  CHECK(valid_utf8("\xC0\x80") == r + r);                     // overlong
  CHECK(valid_utf8("\xED\xA0\x80") == r + r + r);            // a surrogate
  CHECK(valid_utf8("\xF4\x90\x80\x80") == r + r + r + r);   // past U+10FFFF
  CHECK(valid_utf8("") == "");
}

TEST_CASE("pre-tokenization follows GPT-2's pattern") {
  using V = std::vector<std::string_view>;
  CHECK(Tokenizer::pre_tokenize("Hello world") == V{"Hello", " world"});
  CHECK(Tokenizer::pre_tokenize("it's") == V{"it", "'s"});
  CHECK(Tokenizer::pre_tokenize("we'RE") == V{"we", "'", "RE"});
  CHECK(Tokenizer::pre_tokenize("a  b") == V{"a", " ", " b"});
  CHECK(Tokenizer::pre_tokenize("a\n\nb  ") == V{"a", "\n", "\n", "b", "  "});
  CHECK(Tokenizer::pre_tokenize("x 123 !?") == V{"x", " 123", " !?"});
  CHECK(Tokenizer::pre_tokenize("caf\xc3\xa9!") == V{"caf\xc3\xa9", "!"});
  CHECK(Tokenizer::pre_tokenize("") == V{});
  // Bytes that are not UTF-8 group with punctuation.
  CHECK(Tokenizer::pre_tokenize("a\xff\xfe b") == V{"a", "\xff\xfe", " b"});
}

TEST_CASE("any bytes round-trip, and special tokens are honoured only when allowed") {
  const Tokenizer t = load_json_tokenizer();
  std::mt19937 rng(1);
  for (int round = 0; round < 200; ++round) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 256);
    CHECK(t.decode(t.encode(s)).value() == s);
  }
  const int32_t eot = t.special_token("<|endoftext|>").value();
  const auto ids = t.encode("one<|endoftext|>two");
  CHECK(std::count(ids.begin(), ids.end(), eot) == 1);
  CHECK(t.decode(ids).value() == "one<|endoftext|>two");
  const auto plain = t.encode("one<|endoftext|>two", false);
  CHECK(std::count(plain.begin(), plain.end(), eot) == 0);
  CHECK(t.decode(plain).value() == "one<|endoftext|>two");
  const std::vector<int32_t> bad = {t.vocab_size()};
  CHECK(t.decode(bad).status().code() == Code::kInvalidArgument);
}

TEST_CASE("the trainer learns a vocabulary of the requested size, deterministically") {
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i) {
    texts.push_back("The quick brown fox jumps over the lazy dog. Fox number " + std::to_string(i) +
                    " says: don't panic!<|endoftext|>");
  }
  BpeTrainerOptions options;
  options.vocab_size = 300;
  auto a = train_bpe(texts, options);
  REQUIRE_MESSAGE(a.ok(), a.status().to_string());
  CHECK(a->vocab_size() == 300);
  CHECK(a->special_token("<|endoftext|>") == 299);
  auto b = train_bpe(texts, options);
  CHECK(a->to_tokenizer_json() == b->to_tokenizer_json());
  // It compresses what it learnt from, and round-trips through tokenizer.json.
  const std::string sample = "The quick brown fox jumps over the lazy dog.";
  CHECK(a->encode(sample).size() < sample.size() / 3);
  auto reloaded = Tokenizer::from_tokenizer_json(a->to_tokenizer_json());
  REQUIRE_MESSAGE(reloaded.ok(), reloaded.status().to_string());
  CHECK(reloaded->encode(texts[7]) == a->encode(texts[7]));
  // A vocabulary smaller than the 256 bytes and the special tokens is refused.
  options.vocab_size = 10;
  CHECK(train_bpe(texts, options).status().code() == Code::kInvalidArgument);
}

TEST_CASE("bad tokenizer files are refused with a clear error") {
  auto golden = read_json_file(tokenizer_dir() / "tokenizer.json");
  REQUIRE(golden.ok());
  const std::string good = to_json(*golden);
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    const size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  struct Bad {
    std::string text;
    const char* message;
  };
  const std::string byte_level =
      R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true})";
  for (const Bad& b : {
           Bad{"[]", "must be a JSON object"},
           Bad{"{\"model\":", "tokenizer.json: "},
           Bad{replace("\"type\":\"BPE\"", "\"type\":\"WordPiece\""), "model.type must be \"BPE\""},
           Bad{replace("\"type\":\"BPE\"", "\"type\":\"Unigram\""), "\"Unigram\" is not implemented"},
           Bad{replace(byte_level, R"("pre_tokenizer":{"type":"Whitespace"})"),
               "pre_tokenizer type \"Whitespace\" is not implemented"},
           Bad{replace(byte_level, R"("pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(\\p{L"},"behavior":"Isolated","invert":false}]})"),
               "does not compile"},
           Bad{replace(byte_level, R"("pre_tokenizer":{"type":"Split","pattern":{"Regex":"a"},"behavior":"Sideways","invert":false})"),
               "behavior \"Sideways\""},
           Bad{replace(byte_level, R"("pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true},{"type":"Digits"}]})"),
               "follows ByteLevel"},
           Bad{replace("\"normalizer\":null", "\"normalizer\":{\"type\":\"BertNormalizer\"}"),
               "normalizer type \"BertNormalizer\" is not implemented"},
           Bad{replace("\"normalizer\":null", "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[\"},\"content\":\"\"}"),
               "does not compile"},
           Bad{replace("\"decoder\":{\"type\":\"ByteLevel\"", "\"decoder\":{\"type\":\"CTC\""),
               "decoder type \"CTC\" is not implemented"},
           Bad{replace("\"post_processor\":{\"type\":\"ByteLevel\"", "\"post_processor\":{\"type\":\"RobertaProcessing\""),
               "\"RobertaProcessing\" is not implemented"},
           Bad{replace("\"truncation\":null", "\"truncation\":{\"max_length\":512}"),
               "\"truncation\" is set"},
           Bad{replace("\"merges\":[\"", "\"merges\":[\"zzzq \",\""), "model.merges[0]"},
           Bad{replace("\"!\":33,", "\"!\":9999,"), "ids are not dense: no token has id 33"},
           Bad{replace("\"!\":33,", "\"!\":34,"), "token id 34 is given twice"},
           Bad{replace("\"!\":33,", "\"!\":9999999999,"), "must be an integer in [0, "},
           Bad{replace("\"!\":33,", "\"!\":\"0\","), "must be an integer"},
           Bad{replace("\"!\":33,", ""), "ids are not dense"},
       }) {
    auto t = Tokenizer::from_tokenizer_json(b.text);
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(t.status().message().find(b.message) != std::string::npos, t.status().message());
  }
  auto merges = Tokenizer::from_vocab_merges("{\"a\":0}", "#version: 0.2\na b c\n");
  CHECK(merges.status().message().find("merges.txt line 2") != std::string::npos);
  auto bytes = Tokenizer::from_vocab_merges("{\"a\":0}", "");
  CHECK(bytes.status().message().find("no token for byte 0") != std::string::npos);
}

}  // namespace
}  // namespace mh::engine
