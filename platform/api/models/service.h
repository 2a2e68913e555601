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
#include <map>
#include <memory>
#include <optional>
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

  // POST /v1/models: {"name": "...", "files": {"config.json": "file-…", ...}}, or a LoRA
  // adapter trained elsewhere: {"name", "base": "<model>", "files": {"adapter_config.json",
  // "adapter_model.safetensors"}}, checked against its base.
  Result<ModelRecord> register_custom(std::string_view tenant, const boost::json::object& body);
  Result<ModelRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<ModelRecord>> list(std::string_view tenant, std::string_view after,
                                        int64_t limit, bool* has_more) const;
  Result<ModelRecord> remove(std::string_view tenant, std::string_view id);
  // Records the model a fine-tuning job wrote to `dir` (validated like a custom model's files):
  // with `base`, a LoRA adapter of that model (of the tenant's, or a base model).
  Result<ModelRecord> record_fine_tune(const std::string& tenant, const std::string& id,
                                       const std::filesystem::path& dir, const std::string& job_id,
                                       const std::string& base = {});

  // POST /v1/models/{id}/merge, {"name": "..."}: adapter `id` folded into its base (W +
  // (alpha / rank) BA) as a new full model "custom:<name>" of kind "merged", which deploys and
  // downloads like any model. The merge runs in a contained worker (kMergeTime at most).
  Result<ModelRecord> merge(std::string_view tenant, std::string_view id,
                            const boost::json::object& body);
  static constexpr std::chrono::seconds kMergeTime{600};

  // A tenant's LoRA adapter, from memory (the request path asks on an I/O thread): its base
  // and directory; nullopt when `id` is no adapter of the tenant's. Read from the store by
  // load_catalogue, then kept as adapters are recorded and removed.
  struct Adapter {
    std::string base, directory;
  };
  std::optional<Adapter> adapter(std::string_view tenant, std::string_view id) const;

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
  // `base` (a directory): `dir` is a LoRA adapter checked against that model.
  Result<Inspected> inspect(const std::filesystem::path& dir,
                            const std::filesystem::path& base = {}) const;
  // Runs `mh-worker <args>` contained: reading `reads`, writing `work_dir`, within `memory`
  // bytes of address space and `limit`. Its log, or invalid_argument with the worker's own
  // last word on what is wrong (`what` names the task in other failures).
  Result<std::string> run_contained(std::vector<std::string> args,
                                    std::vector<std::filesystem::path> reads,
                                    const std::filesystem::path& work_dir, uint64_t memory,
                                    std::chrono::seconds limit, std::string_view what) const;
  // Records model `m` with what inspection found, first moving its files from `staging` (when
  // given) into its directory; on failure nothing stays recorded or placed.
  Result<ModelRecord> accept(ModelRecord m, const Inspected& summary,
                             const std::filesystem::path& staging);
  // register_custom's adapters: `m` named, its files in `files`.
  Result<ModelRecord> register_adapter(ModelRecord m, const boost::json::object& body);

  const Context context_;
  ModelStore store_;
  Files& files_;
  std::filesystem::path root_;
  const std::filesystem::path catalogue_root_;
  // By name; replaced whole when a model is published, so readers take a snapshot.
  std::atomic<std::shared_ptr<const std::vector<ModelRecord>>> catalogue_;
  std::mutex publish_mutex_;
  mutable std::mutex adapters_mutex_;
  std::map<std::pair<std::string, std::string>, Adapter, std::less<>> adapters_;  // (tenant, id)
  void remember_adapter(const ModelRecord& m);
  std::filesystem::path worker_, scratch_;
  executor::Sandbox sandbox_;
};

// OK if the tenant's license allows a model of `parameters` (max_model_params).
Status check_model_params(const licensing::Entitlements& entitlements, const std::string& tenant,
                          int64_t parameters);

}  // namespace mh::api
