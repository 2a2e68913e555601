#include "platform/api/models/protocol.h"

#include <boost/json.hpp>

#include <algorithm>

namespace mh::api {

namespace json = boost::json;

bool shard_name(std::string_view name) {
  return name.size() > 12 && name.size() <= 128 && name.ends_with(".safetensors") &&
         name != kWeights && name.front() != '.' &&
         name.find_first_of("/\\") == std::string_view::npos;
}

bool sharded(const ModelRecord& m) {
  return std::any_of(m.extra_files.begin(), m.extra_files.end(),
                     [](const auto& f) { return shard_name(f.first); });
}
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

json::object model_json(const ModelRecord& m) {
  json::object o{{"id", m.id},
                 {"object", "model"},
                 {"created", m.created_at},
                 {"owned_by", m.tenant.empty() ? std::string("macrohard") : m.tenant},
                 {"kind", m.kind},
                 {"family", m.family},
                 {"parameters", m.parameters},
                 {"context_length", m.context_length},
                 {"vocab_size", m.vocab_size}};
  // As vLLM lists LoRA adapters: parent is the base an adapter applies to, root the model
  // whose weights answer (an adapter's base; a full model itself).
  o["parent"] = m.base.empty() ? json::value(nullptr) : json::value(m.base);
  o["root"] = m.base.empty() ? m.id : m.base;
  if (!m.base.empty()) o["format"] = "peft-lora";
  if (m.kind == "custom" && !m.base.empty()) {
    o["files"] =
        json::object{{kAdapterFiles[0], m.config_file}, {kAdapterFiles[1], m.weights_file}};
  } else if (m.kind == "custom") {
    json::object files{{"config.json", m.config_file},
                       {sharded(m) ? kWeightsIndex : kWeights, m.weights_file},
                       {"tokenizer.json", m.tokenizer_file}};
    for (const auto& [name, id] : m.extra_files) files[name] = id;
    o["files"] = std::move(files);
  } else if (m.kind == "fine-tune") {
    o["fine_tuning_job"] = m.job_id;
  } else if (m.kind == "merged") {
    o["merged_from"] = m.merged_from;
  } else {
    o["trains_from_scratch"] = m.kind == "preset";
  }
  return o;
}

}  // namespace mh::api
