// Models, OpenAI-compatible paths: a tenant lists, reads and deletes the models it may use, and
// registers custom models from files it uploaded (Hugging Face layout: config.json,
// model.safetensors, tokenizer.json, each a file with purpose "model").
//
// A custom model is validated before it is accepted: the license must grant `custom_models`,
// config.json must describe a gpt2 or llama model, the weights' headers must match it tensor by
// tensor, the tokenizer must fit its vocabulary, and its parameter count must be within the
// license's `max_model_params`. Its files cannot be deleted while the model exists, so its bytes
// stay counted against the tenant's storage quota.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "platform/api/files.h"
#include "platform/api/router.h"
#include "platform/api/trusted_clock.h"
#include "platform/store/database.h"

namespace mh::api {

struct ModelRecord {
  std::string id;  // "custom:<name>", "ft:<base>:<suffix>:<job>"
  std::string tenant;
  std::string kind;    // "custom", "fine-tune"
  std::string family;  // "gpt2", "llama"
  int64_t parameters = 0;
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  std::string config_file, weights_file, tokenizer_file;  // file ids (custom models)
  std::string directory;                                  // where workers load it from
  std::string job_id;  // the job that made it (fine-tuned models)
  int64_t created_at = 0;
};

class ModelStore {
 public:
  // Custom models are laid out under `root`/<tenant>/<name>/ as links to their files' blobs.
  ModelStore(store::Database& db, FileStore& files, const licensing::Entitlements& entitlements,
             TrustedClock& clock, std::filesystem::path root)
      : db_(db),
        files_(files),
        entitlements_(entitlements),
        clock_(clock),
        root_(std::move(root)) {}

  // POST /v1/models: {"name": "...", "files": {"config.json": "file-…", ...}}.
  Result<ModelRecord> register_custom(std::string_view tenant, const boost::json::object& body);
  Result<ModelRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<ModelRecord>> list(std::string_view tenant, std::string_view after,
                                        int64_t limit, bool* has_more) const;
  Result<ModelRecord> remove(std::string_view tenant, std::string_view id);
  // Records the model a fine-tuning job wrote to `dir` (validated like a custom model's files).
  Result<ModelRecord> record_fine_tune(const std::string& tenant, const std::string& id,
                                       const std::filesystem::path& dir, const std::string& job_id);

 private:
  store::Database& db_;
  FileStore& files_;
  const licensing::Entitlements& entitlements_;
  TrustedClock& clock_;
  std::filesystem::path root_;
};

// GET /v1/models[/{id}], POST /v1/models, DELETE /v1/models/{id}.
void add_model_routes(Router& router, ModelStore& models);

}  // namespace mh::api
