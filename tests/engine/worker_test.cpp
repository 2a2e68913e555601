// mh-worker end to end on a small real text (the Debian `fortunes` package): learn a tokenizer,
// train a tiny GPT-2 from scratch until the loss is well down, resume from a checkpoint to the
// same weights, generate text in the corpus's style; and the tool's other commands and errors.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "platform/engine/json.h"
#include "tests/support/harness.h"

namespace mh::test {
namespace {

namespace fs = std::filesystem;

const fs::path kFortunes = "/usr/share/games/fortunes";

// Every fortune of the package's text files, one JSONL "text" example each.
std::vector<std::string> read_fortunes() {
  std::vector<std::string> out;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kFortunes)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && !e.is_symlink() && ext != ".dat" && ext != ".u8") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const std::string text = read_file(f);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find("\n%\n", pos);
      if (end == std::string::npos) end = text.size();
      std::string one = text.substr(pos, end - pos);
      pos = end + 3;
      if (one.find_first_not_of(" \n\t%") != std::string::npos) out.push_back(one);
    }
  }
  return out;
}

std::vector<double> logged_losses(const std::string& output) {
  std::vector<double> losses;
  static const std::regex line(R"(step (\d+)/\d+\s+loss ([0-9.]+))");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line);
       it != std::sregex_iterator(); ++it) {
    losses.push_back(std::stod((*it)[2]));
  }
  return losses;
}

// The share of generated words of three letters or more that occur in the corpus (short ones
// arise by chance from subword tokens).
double known_word_share(const std::string& text, const std::set<std::string>& words) {
  std::istringstream in(text);
  std::string w;
  int total = 0, known = 0;
  while (in >> w) {
    std::string clean;
    for (char c : w) {
      if (std::isalpha(static_cast<unsigned char>(c))) clean += static_cast<char>(std::tolower(c));
    }
    if (clean.size() < 3) continue;
    ++total;
    known += words.contains(clean) ? 1 : 0;
  }
  return total == 0 ? 0.0 : static_cast<double>(known) / total;
}

ProcessResult worker(std::vector<std::string> args) {
  args.insert(args.begin(), mhworker_path().string());
  return run_process(args, {}, std::chrono::seconds(280));
}

TEST_CASE(
    "mh-worker trains a tiny GPT-2 on fortunes: the loss falls, resume is exact, text reads "
    "right") {
  REQUIRE_MESSAGE(fs::exists(kFortunes),
                  "the Debian package `fortunes` is needed (scripts/setup installs it)");
  TempDir dir;
  const auto fortunes = read_fortunes();
  REQUIRE(fortunes.size() > 1000);
  std::set<std::string> corpus_words;
  {
    std::ofstream jsonl(dir.path() / "fortunes.jsonl"), text(dir.path() / "fortunes.txt");
    for (const auto& f : fortunes) {
      std::string line = "{\"text\":";
      engine::append_json_string(line, f);
      jsonl << line << "}\n";
      text << f << "\n\n";
      std::istringstream words(f);
      std::string w, clean;
      while (words >> w) {
        clean.clear();
        for (char c : w) {
          if (std::isalpha(static_cast<unsigned char>(c)))
            clean += static_cast<char>(std::tolower(c));
        }
        if (!clean.empty()) corpus_words.insert(clean);
      }
    }
  }
  const auto d = [&](const char* name) { return (dir.path() / name).string(); };
  auto r = worker(
      {"train-tokenizer", "--input", d("fortunes.txt"), "--vocab-size", "512", "--out", d("tok")});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  {
    std::ofstream cfg(dir.path() / "config.json");
    cfg << R"({"model_type":"gpt2","vocab_size":512,"n_embd":64,"n_layer":2,"n_head":4,
               "n_positions":64})";
  }
  r = worker({"init", "--config", d("config.json"), "--tokenizer", d("tok"), "--out", d("m0"),
              "--seed", "5"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);

  // clang-format off
  const std::vector<std::string> train = {
      "train", "--data", d("fortunes.jsonl"), "--steps", "800", "--batch-size", "16",
      "--seq-len", "64", "--lr", "5e-3", "--warmup", "30", "--log-every", "10", "--threads", "2"};
  // clang-format on
  auto args = train;
  args.insert(args.end(), {"--model", d("m0"), "--out", d("m1"), "--checkpoint-every", "700"});
  r = worker(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const auto losses = logged_losses(r.output);
  REQUIRE(losses.size() >= 30);
  const double first = losses.front();
  const double last =
      (losses[losses.size() - 1] + losses[losses.size() - 2] + losses[losses.size() - 3]) / 3;
  MESSAGE("loss " << first << " -> " << last);
  CHECK(first > 6.0);  // about ln(512) = 6.24 at the start
  CHECK(last < first - 1.8);

  // Resuming from the last checkpoint ends with the same weights, byte for byte.
  args = train;
  args.insert(args.end(), {"--model", d("m0"), "--out", d("m2"), "--resume",
                           (dir.path() / "m1" / "checkpoint-700").string()});
  r = worker(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("resumed from") != std::string::npos);
  CHECK(read_file(dir.path() / "m2" / "model.safetensors") ==
        read_file(dir.path() / "m1" / "model.safetensors"));

  // Generated text is made of the corpus's words, unlike the untrained model's.
  // Twelve samples of 120 tokens (past end-of-text: the model then starts another fortune).
  auto sample = [&](const char* model) {
    std::string text;
    for (int seed = 1; seed <= 12; ++seed) {
      auto g = worker({"generate", "--model", d(model), "--prompt", "The", "--max-tokens", "120",
                       "--temperature", "0.6", "--ignore-eos", "--seed", std::to_string(seed)});
      REQUIRE_MESSAGE(g.exit_code == 0, g.output);
      // Drop the "[120 tokens, finish_reason length]" line the tool writes to stderr.
      const size_t tail = g.output.rfind('[', g.output.rfind("finish_reason"));
      text += g.output.substr(0, tail);
    }
    return text;
  };
  const std::string trained = sample("m1"), untrained = sample("m0");
  MESSAGE("trained: " << trained);
  const double trained_share = known_word_share(trained, corpus_words);
  const double untrained_share = known_word_share(untrained, corpus_words);
  MESSAGE("known words: trained " << trained_share << ", untrained " << untrained_share);
  CHECK(trained_share > 0.35);
  CHECK(trained_share > untrained_share + 0.15);
}

TEST_CASE("mh-worker tokenizes, prints logits and greedy ids, and refuses bad input clearly") {
  TempDir dir;
  const auto golden = source_dir() / "tests/engine/golden";
  const auto model = dir.path() / "model";
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(golden / "gpt2" / f, model / f);
  }
  fs::copy_file(golden / "tokenizer" / "tokenizer.json", model / "tokenizer.json");

  auto r = worker({"tokenize", "--model", model.string(), "--text", "Hello world"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output == "[72, 101, 296, 111, 260, 111, 114, 108, 100]\n");  // cases.json's ids
  r = worker(
      {"detokenize", "--model", model.string(), "[72, 101, 296, 111, 260, 111, 114, 108, 100]"});
  CHECK(r.output == "Hello world\n");

  // The golden model's vocabulary is 64 tokens; its first greedy id is the argmax of the last
  // position's logits.
  r = worker({"logits", "--model", model.string(), "--last", "3 14 15 9"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  auto logits = engine::parse_json(r.output);
  REQUIRE(logits.ok());
  REQUIRE(logits->as_array().size() == 64);
  size_t best = 0;
  for (size_t i = 0; i < 64; ++i) {
    if (logits->as_array()[i].as_double() > logits->as_array()[best].as_double()) best = i;
  }
  r = worker({"greedy", "--model", model.string(), "--max-tokens", "3", "3 14 15 9"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.starts_with("[" + std::to_string(best)));

  // Bad input: exit code 2 and a message that says what is wrong.
  r = worker({"greedy", "--model", model.string(), "3 99"});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("token id 99 is outside the vocabulary") != std::string::npos);
  r = worker({"logits", "--model", (dir.path() / "nowhere").string(), "1"});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("config.json") != std::string::npos);
  {
    std::ofstream bad(dir.path() / "bad.jsonl");
    bad << "{\"text\": \"fine\"}\n{\"text\": 12}\n";
    std::ofstream cfg(dir.path() / "config.json");
    cfg << R"({"model_type":"llama","vocab_size":512,"hidden_size":16,"intermediate_size":32,
               "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":32})";
  }
  r = worker({"init", "--config", (dir.path() / "config.json").string(), "--tokenizer",
              model.string(), "--out", (dir.path() / "llama").string()});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  r = worker({"inspect", "--model", (dir.path() / "llama").string()});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.starts_with(R"({"family":"llama","parameters":)"));
  CHECK(r.output.find(R"("tokenizer_vocab":503)") != std::string::npos);
  r = worker({"inspect", "--model", model.string()});  // 503 tokens, a vocabulary of 64
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("the tokenizer has 503 tokens but config.json's vocab_size is 64") !=
        std::string::npos);
  r = worker({"train", "--model", (dir.path() / "llama").string(), "--data",
              (dir.path() / "bad.jsonl").string(), "--out", (dir.path() / "out").string(),
              "--seq-len", "8"});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("bad.jsonl: line 2: needs \"text\"") != std::string::npos);
  // A tokenizer larger than the model's vocabulary is refused.
  r = worker({"train", "--model", model.string(), "--data", (dir.path() / "bad.jsonl").string(),
              "--out", (dir.path() / "out").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("more tokens than the model's vocab_size") != std::string::npos);
  CHECK_FALSE(fs::exists(dir.path() / "out"));
}

}  // namespace
}  // namespace mh::test
