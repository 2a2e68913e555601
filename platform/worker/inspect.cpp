// mh-worker inspect: checks a model directory (config, the weights' headers against it, the
// tokenizer), or a LoRA adapter's against its base's config, and prints a one-line JSON
// summary. The daemon runs it, contained, on every model
// a tenant uploads or a job writes, so that it never parses those files itself.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/model.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

Tool add_inspect(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto base = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "inspect", "check a model directory (config, weights' headers, tokenizer); print a summary");
  cmd->add_option("--model", *dir, "model directory (with --base: a PEFT LoRA adapter's)")
      ->required();
  cmd->add_option("--base", *base, "the base model directory an adapter applies to");
  return {cmd, [dir, base] {
            using namespace engine;
            if (!base->empty()) {
              // An adapter: checked against the base's config (its files were checked when it
              // was accepted); the summary is the base's, with the adapter's own size.
              const ModelConfig config = need(parse_model_config(need(
                  read_text_file(std::filesystem::path(*base) / "config.json", size_t{1} << 20))));
              const LoraConfig lora = need(check_lora(*dir, config));
              std::printf("{\"family\":\"%s\",\"parameters\":%lld,\"vocab_size\":%lld,"
                          "\"context\":%lld,\"lora_rank\":%lld}\n",
                          std::string(family_name(config.family)).c_str(),
                          static_cast<long long>(config.parameter_count()),
                          static_cast<long long>(config.vocab_size),
                          static_cast<long long>(config.max_positions),
                          static_cast<long long>(lora.rank));
              return 0;
            }
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
