// mh-worker generate: continue a prompt (or a user message, through the chat template) with
// the sampling settings the platform's completions take, streaming the text.
#include <cstdio>
#include <memory>

#include "platform/engine/chat_template.h"
#include "platform/engine/generate.h"
#include "platform/engine/model.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_generate(CLI::App& app, LazyBackend& backend) {
  struct Options {
    std::string model, prompt;
    bool chat = false;
    engine::SamplingParams sampling;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("generate", "continue a prompt, streaming the text");
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("--prompt", o->prompt, "the prompt")->required();
  cmd->add_flag("--chat", o->chat, "send the prompt as a user message through the chat template");
  cmd->add_option("--max-tokens", o->sampling.max_tokens, "most tokens to generate");
  cmd->add_option("--temperature", o->sampling.temperature, "0 is greedy");
  cmd->add_option("--top-k", o->sampling.top_k, "sample among the k likeliest (0: all)");
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus sampling mass");
  cmd->add_option("--seed", o->sampling.seed, "sampling seed");
  cmd->add_option("--stop", o->sampling.stop, "stop before this text (repeatable)");
  cmd->add_flag("--ignore-eos", o->sampling.ignore_eos, "keep going past the end-of-text token");
  return {cmd, [o, &backend] {
            using namespace engine;
            auto model = need(Model::load(o->model, backend.get(), Weights::kAsStored));
            const Tokenizer tok = need(Tokenizer::load(o->model));
            std::vector<int32_t> ids;
            if (o->chat) {
              const ChatTemplate tmpl = need(ChatTemplate::load(o->model, tok));
              const Json message(JsonObject{{"role", Json(std::string("user"))},
                                            {"content", Json(o->prompt)}});
              ids = need(tmpl.prompt(Json(JsonArray{message}), Json()));
            } else {
              ids = tok.encode(o->prompt, false);
            }
            auto result = need(generate(*model, tok, {ids}, o->sampling, [](const TokenEvent& e) {
              std::fwrite(e.text.data(), 1, e.text.size(), stdout);
              std::fflush(stdout);
              return true;
            }));
            std::fprintf(stdout, "\n");
            std::fflush(stdout);
            std::fprintf(stderr, "[%zu tokens, finish_reason %s]\n", result[0].tokens.size(),
                         result[0].finish_reason.c_str());
            return 0;
          }};
}

}  // namespace mh::worker
