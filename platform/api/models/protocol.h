// The models' wire format: what a custom model's files are called (Hugging Face's layout), the
// names a tenant may give a model, and the "model" object (OpenAI's, with Macrohard's fields).
#pragma once

#include <boost/json/object.hpp>

#include <string_view>

#include "platform/api/models/model.h"

namespace mh::api {

// A custom model's id is this prefix and the name its tenant gave it.
inline constexpr std::string_view kCustomPrefix = "custom:";
// The files a custom model is made of, by their names in the model's directory: its config and
// tokenizer, its weights (model.safetensors, or model.safetensors.index.json and the shards it
// names), and those it may add: its chat template, the special tokens the template is given,
// and its generation settings.
inline constexpr std::string_view kModelFiles[] = {"config.json", "tokenizer.json"};
inline constexpr std::string_view kWeights = "model.safetensors";
// A LoRA adapter's files, as PEFT saves them.
inline constexpr std::string_view kAdapterFiles[] = {"adapter_config.json",
                                                     "adapter_model.safetensors"};
inline constexpr std::string_view kWeightsIndex = "model.safetensors.index.json";
inline constexpr std::string_view kOptionalModelFiles[] = {
    "tokenizer_config.json", "chat_template.jinja", "generation_config.json"};

// A shard's name as an index may give it: a plain file name ending .safetensors.
bool shard_name(std::string_view name);
// Whether the custom model's weights are sharded (an index and its shards).
bool sharded(const ModelRecord& model);
// A name a tenant may give a model: 1-64 of a-z 0-9 . _ -, not starting with . or -.
bool valid_name(std::string_view name);

boost::json::object model_json(const ModelRecord& model);

}  // namespace mh::api
