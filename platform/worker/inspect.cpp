// mh-worker inspect: checks a model directory (config, the weights' headers against it, the
// tokenizer) and prints a one-line JSON summary. The daemon runs it, contained, on every model
// a tenant uploads or a job writes, so that it never parses those files itself.
#include <cstdio>
#include <memory>

#include "platform/engine/json.h"
#include "platform/engine/model.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_inspect(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "inspect", "check a model directory (config, weights' headers, tokenizer); print a summary");
  cmd->add_option("--model", *dir, "model directory")->required();
  return {cmd, [dir] {
            using namespace engine;
            const ModelSummary m = need(inspect_model(*dir));
            std::string files;
            for (const auto& f : m.weight_files) {
              if (!files.empty()) files += ",";
              append_json_string(files, f);
            }
            std::printf(
                "{\"family\":\"%s\",\"parameters\":%lld,\"weight_bytes\":%lld,\"vocab_size\":%lld,"
                "\"tokenizer_vocab\":%d,\"context\":%lld,\"layers\":%lld,\"hidden\":%lld,"
                "\"weight_files\":[%s]}\n",
                std::string(family_name(m.config.family)).c_str(),
                static_cast<long long>(m.parameters), static_cast<long long>(m.weight_bytes),
                static_cast<long long>(m.config.vocab_size), m.tokenizer_vocab,
                static_cast<long long>(m.config.max_positions),
                static_cast<long long>(m.config.layers), static_cast<long long>(m.config.hidden),
                files.c_str());
            return 0;
          }};
}

}  // namespace mh::worker
