// mh-worker tokenize / detokenize: a text's token ids under a model's tokenizer, and back.
#include <cstdio>
#include <memory>
#include <sstream>

#include "platform/engine/files.h"
#include "platform/engine/tokenizer.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string token;
  std::istringstream in(text);
  while (in >> token) {
    if (token == "," || token == "[" || token == "]") continue;
    while (!token.empty() && (token.back() == ',' || token.back() == ']')) token.pop_back();
    while (!token.empty() && token.front() == '[') token.erase(0, 1);
    if (token.empty()) continue;
    size_t used = 0;
    long value = -1;
    try {
      value = std::stol(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size() || value < 0 || value > INT32_MAX) {
      fail(invalid_argument("\"" + token + "\" is not a token id"));
    }
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  std::puts((out + "]").c_str());
}

Tool add_tokenize(CLI::App& app) {
  struct Options {
    std::string model, text, file;
    bool special = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text");
  cmd->add_option("--model", o->model, "model directory (its tokenizer)")->required();
  cmd->add_option("--text", o->text, "the text");
  cmd->add_option("--file", o->file, "read the text from a file");
  cmd->add_flag("--special", o->special, "turn special tokens written in the text into ids");
  return {cmd, [o] {
            const engine::Tokenizer tok = need(engine::Tokenizer::load(o->model));
            const std::string text =
                o->file.empty() ? o->text : need(engine::read_text_file(o->file, size_t{1} << 30));
            print_ids(tok.encode(text, o->special));
            return 0;
          }};
}

Tool add_detokenize(CLI::App& app) {
  struct Options {
    std::string model, ids;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("detokenize", "print the text of token ids");
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("ids", o->ids, "token ids, e.g. \"[464, 3290]\"")->required();
  return {cmd, [o] {
            const engine::Tokenizer tok = need(engine::Tokenizer::load(o->model));
            const std::string out = need(tok.decode(parse_ids(o->ids)));
            std::fwrite(out.data(), 1, out.size(), stdout);
            std::fputc('\n', stdout);
            return 0;
          }};
}

}  // namespace mh::worker
