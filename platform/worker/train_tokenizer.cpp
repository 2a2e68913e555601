// mh-worker train-tokenizer: a byte-level BPE tokenizer learned from text files (what a preset,
// which trains from scratch, starts from).
#include <cstdio>
#include <memory>

#include "platform/engine/tokenizer.h"
#include "platform/engine/files.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_train_tokenizer(CLI::App& app) {
  struct Options {
    std::vector<std::string> inputs;
    std::string out;
    engine::BpeTrainerOptions bpe;
  };
  auto o = std::make_shared<Options>();
  o->bpe.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  auto* cmd = app.add_subcommand("train-tokenizer", "learn a byte-level BPE tokenizer");
  cmd->add_option("--input", o->inputs, "text files to learn from")->required();
  cmd->add_option("--vocab-size", o->bpe.vocab_size, "vocabulary size");
  cmd->add_option("--out", o->out, "directory for tokenizer.json")->required();
  return {cmd, [o] {
            std::vector<std::string> texts;
            for (const auto& f : o->inputs) {
              texts.push_back(need(engine::read_text_file(f, size_t{1} << 30)));
            }
            const engine::Tokenizer tok = need(engine::train_bpe(texts, o->bpe));
            if (Status s = tok.save(o->out); !s.ok()) fail(s);
            std::printf("%s/tokenizer.json: %d tokens\n", o->out.c_str(), tok.vocab_size());
            return 0;
          }};
}

}  // namespace mh::worker
