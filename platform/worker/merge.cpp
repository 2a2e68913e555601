// mh-worker merge: a LoRA adapter folded into its base, written as a plain model directory
// (config, weights, tokenizer, chat template and generation settings of the base). The daemon
// runs it, contained, when a tenant asks for an adapter as a full model.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "platform/engine/chat_template.h"
#include "platform/engine/files.h"
#include "platform/engine/model.h"
#include "platform/engine/tokenizer.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_merge(CLI::App& app, LazyBackend& backend) {
  struct Options {
    std::string base, adapter, out;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("merge", "fold a LoRA adapter into its base model");
  cmd->add_option("--base", o->base, "the base model's directory")->required();
  cmd->add_option("--adapter", o->adapter, "the adapter's directory (PEFT's files)")->required();
  cmd->add_option("--out", o->out, "the merged model's new directory")->required();
  return {cmd, [o, &backend] {
            using namespace engine;
            namespace fs = std::filesystem;
            // Merging needs the base in fp32; it is saved so (16-bit files become 32-bit).
            auto model = need(Model::load(o->base, backend.get(), Weights::kFloat32));
            if (Status s = model->load_lora(o->adapter); !s.ok()) fail(s);
            const int64_t rank = model->lora()->rank;
            if (Status s = model->merge_lora(); !s.ok()) fail(s);
            if (Status s = model->save(o->out); !s.ok()) fail(s);
            const Tokenizer tok = need(Tokenizer::load(o->base));
            if (Status s = tok.save(o->out); !s.ok()) fail(s);
            if (Status s = need(ChatTemplate::load(o->base, tok)).save(o->out); !s.ok()) fail(s);
            const fs::path generation = fs::path(o->base) / "generation_config.json";
            if (fs::exists(generation)) {
              const std::string text = need(read_text_file(generation, size_t{1} << 20));
              if (Status s = write_file_atomically(fs::path(o->out) / "generation_config.json",
                                                   text);
                  !s.ok()) {
                fail(s);
              }
            }
            std::printf("%s: %s with a rank-%lld adapter merged\n", o->out.c_str(),
                        o->base.c_str(), static_cast<long long>(rank));
            return 0;
          }};
}

}  // namespace mh::worker
