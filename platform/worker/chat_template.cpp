// mh-worker chat-template: a conversation (and tools) as the model's own chat template renders
// it, for comparing with Python's Jinja2 and transformers.
#include <cstdio>
#include <memory>

#include "platform/engine/chat_template.h"
#include "platform/engine/json.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_chat_template(CLI::App& app) {
  struct Options {
    std::string model, messages, tools;
    bool add_generation_prompt = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("chat-template",
                                 "print a conversation as the model's chat template renders it");
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("--messages", o->messages, "a JSON file: the messages")->required();
  cmd->add_option("--tools", o->tools, "a JSON file: the tools");
  cmd->add_flag("--add-generation-prompt", o->add_generation_prompt,
                "end with the start of the assistant's reply");
  return {cmd, [o] {
            using namespace engine;
            const Tokenizer tok = need(Tokenizer::load(o->model));
            const ChatTemplate tmpl = need(ChatTemplate::load(o->model, tok));
            const Json messages = need(read_json_file(o->messages));
            const Json tools = o->tools.empty() ? Json() : need(read_json_file(o->tools));
            const std::string text = need(tmpl.render(messages, tools, o->add_generation_prompt));
            std::fwrite(text.data(), 1, text.size(), stdout);
            return 0;
          }};
}

}  // namespace mh::worker
