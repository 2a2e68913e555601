// mh-worker init: a model with fresh weights from a config.json and an existing tokenizer.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "platform/engine/files.h"
#include "platform/engine/model.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_init(CLI::App& app, LazyBackend& backend) {
  struct Options {
    std::string config, tokenizer, out;
    uint64_t seed = 1234;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("init", "create a model with fresh weights from a config.json");
  cmd->add_option("--config", o->config, "config.json to use")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "directory whose tokenizer to copy")->required();
  cmd->add_option("--out", o->out, "new model directory")->required();
  cmd->add_option("--seed", o->seed, "initialisation seed");
  return {cmd, [o, &backend] {
            using namespace engine;
            const ModelConfig config =
                need(parse_model_config(need(read_text_file(o->config, 1 << 20))));
            const Tokenizer tok = need(Tokenizer::load(o->tokenizer));
            if (tok.vocab_size() > config.vocab_size) {
              fail(invalid_argument(fmt::format("the tokenizer has {} tokens but vocab_size is {}",
                                                tok.vocab_size(), config.vocab_size)));
            }
            auto model = need(Model::create(config, backend.get(), o->seed));
            if (Status s = model->save(o->out); !s.ok()) fail(s);
            if (Status s = tok.save(o->out); !s.ok()) fail(s);
            std::printf("%s: %s with %lld parameters\n", o->out.c_str(),
                        std::string(family_name(config.family)).c_str(),
                        static_cast<long long>(config.parameter_count()));
            return 0;
          }};
}

}  // namespace mh::worker
