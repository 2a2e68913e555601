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

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "platform/api/context.h"
#include "platform/api/files/service.h"
#include "platform/api/models/model.h"
#include "platform/api/models/store.h"
#include "platform/api/transport.h"
#include "platform/executor/sandbox.h"

namespace mh::api {

class Models {
 public:
  // Custom models are laid out under `root`/<tenant>/<name>/ as links to their files' blobs.
  // Base models are the directories under `catalogue`.
  Models(const Context& context, Files& files, std::filesystem::path root,
         std::filesystem::path catalogue)
      : context_(context),
        store_(context.db),
        files_(files),
        root_(std::move(root)),
        catalogue_root_(std::move(catalogue)),
        catalogue_(std::make_shared<const std::vector<ModelRecord>>()) {}

  // The base models every tenant sees are directories under the catalogue, published by staff:
  // a config.json alone is a preset, an architecture that trains from scratch (its tokenizer is
  // learned from the job's data); with model.safetensors and tokenizer.json it is a model with
  // weights, fine-tuned and deployed like any other.
  //
  // Writes the built-in presets that are missing, then reads the catalogue. A directory that
  // does not validate is left out, with a warning naming what is wrong.
  Status load_catalogue();
  // Validates a directory on the platform's host (a preset's config, or a Hugging Face model)
  // and copies it into the catalogue as base model `name`, visible at once.
  Result<ModelRecord> publish_base(const std::string& name, const std::filesystem::path& source);
  std::vector<ModelRecord> base_models() const;

  // POST /v1/models: {"name": "...", "files": {"config.json": "file-…", ...}}.
  Result<ModelRecord> register_custom(std::string_view tenant, const boost::json::object& body);
  Result<ModelRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<ModelRecord>> list(std::string_view tenant, std::string_view after,
                                        int64_t limit, bool* has_more) const;
  Result<ModelRecord> remove(std::string_view tenant, std::string_view id);
  // Records the model a fine-tuning job wrote to `dir` (validated like a custom model's files).
  Result<ModelRecord> record_fine_tune(const std::string& tenant, const std::string& id,
                                       const std::filesystem::path& dir, const std::string& job_id);

  // Model files a tenant supplied, or a tenant's job wrote, are checked by `mh-worker inspect`
  // in a contained worker of its own (`sandbox`, with memory for the largest weights file
  // mapped plus kInspectMemory, and kInspectTime): the daemon never parses them itself, so a
  // hostile file costs a worker, not the daemon. Scratch directories go under `scratch`. Set
  // before the first registration.
  void inspect_with(std::filesystem::path worker, executor::Sandbox sandbox,
                    std::filesystem::path scratch);
  static constexpr uint64_t kInspectMemory = uint64_t{4} << 30;
  static constexpr std::chrono::seconds kInspectTime{120};

 private:
  // What inspection found: the model's family, size and shape.
  struct Inspected {
    std::string family;
    int64_t parameters = 0, context_length = 0, vocab_size = 0;
  };
  Result<Inspected> inspect(const std::filesystem::path& dir) const;

  const Context context_;
  ModelStore store_;
  Files& files_;
  std::filesystem::path root_;
  const std::filesystem::path catalogue_root_;
  // By name; replaced whole when a model is published, so readers take a snapshot.
  std::atomic<std::shared_ptr<const std::vector<ModelRecord>>> catalogue_;
  std::mutex publish_mutex_;
  std::filesystem::path worker_, scratch_;
  executor::Sandbox sandbox_;
};

// OK if the tenant's license allows a model of `parameters` (max_model_params).
Status check_model_params(const licensing::Entitlements& entitlements, const std::string& tenant,
                          int64_t parameters);

}  // namespace mh::api
