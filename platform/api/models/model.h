// A model a tenant can train or deploy, as the models service, its store and its protocol
// share it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mh::api {

struct ModelRecord {
  std::string id;      // "custom:<name>", "ft:<base>:<suffix>:<job>", or a base model's name
  std::string tenant;  // "" for the platform's base models
  // "custom", "fine-tune", "merged" (an adapter folded into its base), "base" (weights),
  // "preset" (trains from scratch)
  std::string kind;
  std::string family;  // "gpt2", "llama"
  int64_t parameters = 0;
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  std::string config_file, weights_file, tokenizer_file;  // file ids (custom models)
  // A custom model's optional files (tokenizer_config.json, chat_template.jinja): name, file id.
  std::vector<std::pair<std::string, std::string>> extra_files;
  std::string directory;                                  // where workers load it from
  std::string job_id;  // the job that made it (fine-tuned models)
  int64_t created_at = 0;
  // An adapter's base: the model whose weights its LoRA adapters apply to (the directory then
  // holds adapter_config.json and adapter_model.safetensors). "" for a full model.
  std::string base;
  std::string merged_from;  // a merged model's adapter (kind "merged")
};

}  // namespace mh::api
