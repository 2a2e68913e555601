#include "platform/api/models/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <optional>
#include <set>

#include "platform/api/models/protocol.h"
#include "platform/base/crypto.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/model.h"
#include "platform/executor/worker_process.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// The presets a new platform publishes: small architectures that train from scratch on a CPU
// pool in minutes (mh-gpt2-tiny) up to ones that want GPUs.
constexpr std::pair<std::string_view, std::string_view> kPresets[] = {
    {"mh-gpt2-tiny", R"({"model_type":"gpt2","vocab_size":512,"n_embd":128,"n_layer":4,"n_head":4,)"
                     R"("n_positions":256})"},
    {"mh-gpt2-small",
     R"({"model_type":"gpt2","vocab_size":8192,"n_embd":384,"n_layer":6,"n_head":6,)"
     R"("n_positions":512})"},
    {"mh-llama-small",
     R"({"model_type":"llama","vocab_size":8192,"hidden_size":512,"intermediate_size":1408,)"
     R"("num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":4,)"
     R"("max_position_embeddings":1024})"},
};

}  // namespace

Result<ModelRecord> Models::register_custom(std::string_view tenant_view,
                                                const json::object& body) {
  const std::string tenant(tenant_view);
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
  MH_TRY(context_.entitlements.check(tenant, "custom_models", now));

  const json::value* name_v = body.if_contains("name");
  if (name_v == nullptr || !name_v->is_string() || !valid_name(name_v->as_string())) {
    return invalid_argument(
        "\"name\" must be 1-64 characters of a-z 0-9 . _ - (not starting "
        "with . or -)",
        "name");
  }
  const std::string name(name_v->as_string());
  ModelRecord m;
  m.id = std::string(kCustomPrefix) + name;
  m.tenant = tenant;
  m.kind = "custom";
  m.created_at = now;
  m.directory = (root_ / tenant / name).string();
  if (get(tenant, m.id).ok()) {
    return conflict(fmt::format("model '{}' already exists; delete it first", m.id));
  }
  if (body.contains("base")) return register_adapter(std::move(m), body);
  const json::value* files_v = body.if_contains("files");
  if (files_v == nullptr || !files_v->is_object()) {
    return invalid_argument(
        "\"files\" must map config.json, tokenizer.json and model.safetensors (or "
        "model.safetensors.index.json and its shards) to uploaded file ids",
        "files");
  }
  const json::object& files = files_v->as_object();
  const bool has_index = files.contains(kWeightsIndex);
  if (has_index == files.contains(kWeights)) {
    return invalid_argument(
        has_index ? "files: give model.safetensors or model.safetensors.index.json, not both"
                  : "files: model.safetensors (or model.safetensors.index.json and its shards) "
                    "is missing",
        "files");
  }
  for (const auto& [key, value] : files) {
    auto in = [&](const auto& list) {
      return std::find(std::begin(list), std::end(list), std::string_view(key)) != std::end(list);
    };
    if (!in(kModelFiles) && !in(kOptionalModelFiles) && key != kWeights && key != kWeightsIndex &&
        !(has_index && shard_name(key))) {
      return invalid_argument(
          fmt::format("files.{}: a custom model is made of config.json, tokenizer.json and "
                      "model.safetensors (or model.safetensors.index.json and the shards it "
                      "names), and may add tokenizer_config.json, chat_template.jinja and "
                      "generation_config.json",
                      std::string_view(key)),
          "files");
    }
  }
  // Each file must be the tenant's, uploaded for a model.
  std::vector<std::pair<std::string, fs::path>> links;
  auto take = [&](std::string_view name) -> Result<std::string> {
    const std::string param = fmt::format("files.{}", name);
    const json::value* id = files.if_contains(name);
    if (id == nullptr || !id->is_string()) {
      return invalid_argument(param + " must be the id of an uploaded file", param);
    }
    MH_ASSIGN_OR_RETURN(FileRecord f, files_.get(tenant, id->as_string()));
    if (f.purpose != "model") {
      return failed_precondition(
          fmt::format("{}: file '{}' was uploaded with purpose '{}'; "
                      "model files need purpose 'model'",
                      param, f.id, f.purpose));
    }
    MH_ASSIGN_OR_RETURN(fs::path blob, files_.content(tenant, f.id));
    links.emplace_back(std::string(name), fs::absolute(blob));
    return f.id;
  };
  MH_ASSIGN_OR_RETURN(m.config_file, take("config.json"));
  MH_ASSIGN_OR_RETURN(m.tokenizer_file, take("tokenizer.json"));
  MH_ASSIGN_OR_RETURN(m.weights_file, take(has_index ? kWeightsIndex : kWeights));
  for (std::string_view name : kOptionalModelFiles) {
    if (files.if_contains(name) == nullptr) continue;
    MH_ASSIGN_OR_RETURN(std::string id, take(name));
    m.extra_files.emplace_back(std::string(name), std::move(id));
  }
  if (has_index) {
    // The shards the index names, each given once; the index is checked in full (its shards
    // against it) with the rest of the model below.
    MH_ASSIGN_OR_RETURN(fs::path index_blob, files_.content(tenant, m.weights_file));
    MH_ASSIGN_OR_RETURN(std::string index_text, engine::read_text_file(index_blob, 64 << 20));
    auto index = engine::parse_json(index_text);
    if (!index.ok()) {
      return invalid_argument("model.safetensors.index.json: " + index.status().message(), "files");
    }
    const engine::Json* map = index->find("weight_map");
    if (map == nullptr || !map->is_object()) {
      return invalid_argument("model.safetensors.index.json: \"weight_map\" must be an object",
                              "files");
    }
    std::set<std::string> shards;
    for (const auto& [tensor, file] : map->as_object()) {
      if (!file.is_string() || !shard_name(file.as_string())) {
        return invalid_argument(fmt::format("model.safetensors.index.json: the file for \"{}\" "
                                            "must be a plain file name ending .safetensors",
                                            tensor),
                                "files");
      }
      shards.insert(file.as_string());
    }
    for (const auto& [key, value] : files) {
      if (shard_name(key) && !shards.contains(std::string(key))) {
        return invalid_argument(
            fmt::format("files.{}: model.safetensors.index.json names no such shard",
                        std::string_view(key)),
            "files");
      }
    }
    for (const std::string& shard : shards) {
      if (!files.contains(shard)) {
        return invalid_argument(
            fmt::format("files.{}: model.safetensors.index.json names this shard; upload it and "
                        "give its file id",
                        shard),
            "files");
      }
      MH_ASSIGN_OR_RETURN(std::string id, take(shard));
      m.extra_files.emplace_back(shard, std::move(id));
    }
  }

  // Lay the model out as a directory of links to its blobs, validate it there, and only then
  // put it in place and record it.
  // The staging directory's name is no model's ("." first) and no other registration's.
  const fs::path final_dir = m.directory;
  const fs::path staging =
      final_dir.parent_path() / ("." + name + ".staging-" + secure_random_base64url(9));
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return internal_error(fmt::format("creating {}: {}", staging.string(), ec.message()));
  auto discard = [&] { fs::remove_all(staging, ec); };
  for (const auto& [file, blob] : links) {
    fs::create_symlink(blob, staging / file, ec);
    if (ec) {
      discard();
      return internal_error(fmt::format("linking {}: {}", file, ec.message()));
    }
  }
  auto summary = inspect(staging);
  if (!summary.ok()) {
    discard();
    return summary.status().code() == Code::kInvalidArgument
               ? invalid_argument(summary.status().message(), "files")
               : summary.status();
  }
  if (Status allowed = check_model_params(context_.entitlements, tenant, summary->parameters);
      !allowed.ok()) {
    discard();
    return allowed;
  }
  Result<ModelRecord> accepted = accept(std::move(m), *summary, staging);
  if (!accepted.ok()) discard();
  return accepted;
}

Result<ModelRecord> Models::accept(ModelRecord m, const Inspected& summary,
                                   const fs::path& staging) {
  m.family = summary.family;
  m.parameters = summary.parameters;
  m.context_length = summary.context_length;
  m.vocab_size = summary.vocab_size;
  std::error_code ec;
  if (!staging.empty()) {
    fs::remove_all(m.directory, ec);
    fs::rename(staging, m.directory, ec);
    if (ec) return internal_error(fmt::format("placing {}: {}", m.directory, ec.message()));
  }
  if (Status recorded = store_.insert(m); !recorded.ok()) {
    if (!staging.empty()) fs::remove_all(m.directory, ec);
    return recorded;
  }
  remember_adapter(m);
  return m;
}

Status check_model_params(const licensing::Entitlements& entitlements, const std::string& tenant,
                          int64_t parameters) {
  const auto license = entitlements.find(tenant);
  const int64_t allowed = license ? license->license.terms.limits.max_model_params : 0;
  if (parameters <= allowed) return {};
  return permission_denied(
      fmt::format("the model has {} parameters; license '{}' allows at most {} (max_model_params)",
                  parameters, license ? license->license.terms.id : "", allowed));
}

namespace {

// A base model's record from its directory (`name` is the directory's): a preset when it holds
// only a config, a model with weights when it has model.safetensors (checked like a custom
// model's files). The error says what is wrong.
Result<ModelRecord> describe_base(const fs::path& dir, const std::string& name) {
  if (!valid_name(name)) {
    return invalid_argument(fmt::format("'{}' is not a model name (1-64 of a-z 0-9 . _ -)", name),
                            "name");
  }
  ModelRecord m;
  m.id = name;
  m.directory = dir.string();
  std::error_code ec;
  if (fs::exists(dir / kWeights, ec) || fs::exists(dir / kWeightsIndex, ec)) {
    MH_ASSIGN_OR_RETURN(engine::ModelSummary summary, engine::inspect_model(dir));
    m.kind = "base";
    m.family = std::string(engine::family_name(summary.config.family));
    m.parameters = summary.parameters;
    m.context_length = summary.config.max_positions;
    m.vocab_size = summary.config.vocab_size;
  } else {
    MH_ASSIGN_OR_RETURN(std::string text, engine::read_text_file(dir / "config.json", 1 << 20));
    MH_ASSIGN_OR_RETURN(engine::ModelConfig config, engine::parse_model_config(text));
    m.kind = "preset";
    m.family = std::string(engine::family_name(config.family));
    m.parameters = config.parameter_count();
    m.context_length = config.max_positions;
    m.vocab_size = config.vocab_size;
  }
  if (auto t = fs::last_write_time(dir / "config.json", ec); !ec) {
    m.created_at = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::file_clock::to_sys(t).time_since_epoch())
                       .count();
  }
  return m;
}

}  // namespace

Status Models::load_catalogue() {
  std::error_code ec;
  fs::create_directories(catalogue_root_, ec);
  if (ec) {
    return internal_error(fmt::format("creating {}: {}", catalogue_root_.string(), ec.message()));
  }
  for (const auto& [name, config] : kPresets) {
    const fs::path dir = catalogue_root_ / name;
    if (fs::exists(dir, ec)) continue;  // staff may have changed or removed it: theirs now
    fs::create_directories(dir, ec);
    MH_TRY(write_file_atomically(dir / "config.json", std::string(config) + "\n", 0644));
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(catalogue_root_, ec)) {
    if (e.is_directory() && !e.path().filename().string().starts_with(".")) {
      dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  auto models = std::make_shared<std::vector<ModelRecord>>();
  for (const fs::path& dir : dirs) {
    auto m = describe_base(dir, dir.filename().string());
    if (!m.ok()) {
      spdlog::warn("base model {}: {}; left out", dir.string(), m.status().message());
      continue;
    }
    models->push_back(std::move(*m));
  }
  spdlog::info("base models: {} in {}", models->size(), catalogue_root_.string());
  catalogue_.store(std::move(models));
  MH_ASSIGN_OR_RETURN(const std::vector<ModelRecord> adapters, store_.adapters());
  for (const ModelRecord& a : adapters) remember_adapter(a);
  return {};
}

void Models::remember_adapter(const ModelRecord& m) {
  if (m.base.empty()) return;
  std::lock_guard lock(adapters_mutex_);
  adapters_[{m.tenant, m.id}] = Adapter{m.base, m.directory};
}

std::optional<Models::Adapter> Models::adapter(std::string_view tenant,
                                               std::string_view id) const {
  std::lock_guard lock(adapters_mutex_);
  auto it = adapters_.find(std::pair{std::string(tenant), std::string(id)});
  if (it == adapters_.end()) return std::nullopt;
  return it->second;
}

Result<ModelRecord> Models::publish_base(const std::string& name, const fs::path& source) {
  std::lock_guard lock(publish_mutex_);
  const fs::path target = catalogue_root_ / name;
  std::error_code ec;
  if (!valid_name(name)) {
    return invalid_argument(fmt::format("'{}' is not a model name (1-64 of a-z 0-9 . _ -)", name),
                            "name");
  }
  if (fs::exists(target, ec)) return conflict(fmt::format("base model '{}' already exists", name));
  if (!fs::is_directory(source, ec)) {
    return invalid_argument(
        fmt::format("'{}' is not a directory on the platform's host", source.string()),
        "directory");
  }
  // Checked where it is, then copied beside the catalogue and renamed into place whole.
  auto checked = describe_base(source, name);
  if (!checked.ok()) return invalid_argument(checked.status().message(), "directory");
  const fs::path staging = catalogue_root_ / ("." + name + ".staging");
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  // What the engine reads of the directory: config, tokenizer, the weights (and their index),
  // the chat template and generation settings.
  std::vector<std::string> names(std::begin(kModelFiles), std::end(kModelFiles));
  names.insert(names.end(), std::begin(kOptionalModelFiles), std::end(kOptionalModelFiles));
  names.emplace_back(kWeightsIndex);
  if (auto weights = engine::weight_files(source); weights.ok()) {
    for (const auto& w : *weights) names.push_back(w.filename().string());
  }
  for (const std::string& file : names) {
    if (!fs::exists(source / file, ec)) continue;
    fs::copy_file(source / file, staging / file, ec);
    if (ec) {
      fs::remove_all(staging, ec);
      return internal_error(fmt::format("copying {}: {}", (source / file).string(), ec.message()));
    }
  }
  fs::rename(staging, target, ec);
  if (ec) {
    fs::remove_all(staging, ec);
    return internal_error(fmt::format("placing {}: {}", target.string(), ec.message()));
  }
  MH_ASSIGN_OR_RETURN(ModelRecord m, describe_base(target, name));
  auto models = std::make_shared<std::vector<ModelRecord>>(*catalogue_.load());
  models->push_back(m);
  std::sort(models->begin(), models->end(),
            [](const ModelRecord& a, const ModelRecord& b) { return a.id < b.id; });
  catalogue_.store(std::move(models));
  spdlog::info("base model {} published ({}, {} parameters)", name, m.kind, m.parameters);
  return m;
}

std::vector<ModelRecord> Models::base_models() const { return *catalogue_.load(); }

Result<ModelRecord> Models::get(std::string_view tenant, std::string_view id) const {
  for (const auto& m : *catalogue_.load()) {
    if (m.id == id) return m;
  }
  return store_.get(tenant, id);
}

Result<std::vector<ModelRecord>> Models::list(std::string_view tenant, std::string_view after,
                                                  int64_t limit, bool* has_more) const {
  // The base models first, by name, then the tenant's own, oldest first.
  std::vector<ModelRecord> out;
  const auto catalogue = catalogue_.load();
  auto base = catalogue->begin();
  const bool after_base = std::any_of(catalogue->begin(), catalogue->end(),
                                      [&](const ModelRecord& m) { return m.id == after; });
  if (after_base) {
    base = std::find_if(catalogue->begin(), catalogue->end(),
                        [&](const ModelRecord& m) { return m.id == after; }) +
           1;
  } else if (!after.empty()) {
    base = catalogue->end();
  }
  for (; base != catalogue->end() && static_cast<int64_t>(out.size()) < limit; ++base) {
    out.push_back(*base);
  }
  if (static_cast<int64_t>(out.size()) == limit) {
    *has_more = true;  // at worst, the next page is empty
    return out;
  }
  const std::string own_after = after_base ? std::string() : std::string(after);
  MH_ASSIGN_OR_RETURN(auto own, store_.page(tenant, own_after,
                                            limit - static_cast<int64_t>(out.size()), has_more));
  for (ModelRecord& m : own) out.push_back(std::move(m));
  return out;
}

Result<ModelRecord> Models::remove(std::string_view tenant, std::string_view id) {
  for (const auto& base : *catalogue_.load()) {
    if (base.id == id) {
      return permission_denied(
          fmt::format("'{}' is one of the platform's base models; only staff remove those", id));
    }
  }
  MH_ASSIGN_OR_RETURN(ModelRecord m, store_.remove(tenant, id));
  {
    std::lock_guard lock(adapters_mutex_);
    adapters_.erase({m.tenant, m.id});
  }
  std::error_code ec;
  fs::remove_all(m.directory, ec);
  return m;
}

Result<ModelRecord> Models::record_fine_tune(const std::string& tenant, const std::string& id,
                                                 const fs::path& dir, const std::string& job_id,
                                                 const std::string& base) {
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
  fs::path base_dir;
  if (!base.empty()) {
    MH_ASSIGN_OR_RETURN(ModelRecord b, get(tenant, base));
    base_dir = b.directory;
  }
  auto summary = inspect(dir, base_dir);
  if (!summary.ok()) return internal_error("the trained model: " + summary.status().message());
  ModelRecord m;
  m.id = id;
  m.tenant = tenant;
  m.kind = "fine-tune";
  m.directory = dir.string();
  m.job_id = job_id;
  m.base = base;
  m.created_at = now;
  return accept(std::move(m), *summary, {});  // it stays where the job wrote it
}

void Models::inspect_with(fs::path worker, executor::Sandbox sandbox, fs::path scratch) {
  worker_ = std::move(worker);
  sandbox_ = std::move(sandbox);
  scratch_ = std::move(scratch);
}

Result<ModelRecord> Models::register_adapter(ModelRecord m, const json::object& body) {
  for (const auto& [key, value] : body) {
    if (key != "name" && key != "base" && key != "files") {
      return invalid_argument(fmt::format("\"{}\" is not a field of an adapter's registration "
                                          "(name, base, files)",
                                          std::string_view(key)),
                              std::string(key));
    }
  }
  const json::value* base_v = body.if_contains("base");
  if (!base_v->is_string() || base_v->as_string().empty()) {
    return invalid_argument("\"base\" must name the model the adapter applies to", "base");
  }
  MH_ASSIGN_OR_RETURN(ModelRecord base, get(m.tenant, base_v->as_string()));
  if (!base.base.empty() || base.kind == "preset") {
    return invalid_argument(
        fmt::format("'{}' {}; an adapter applies to a model with weights of its own", base.id,
                    base.kind == "preset" ? "trains from scratch" : "is an adapter itself"),
        "base");
  }
  const json::value* files_v = body.if_contains("files");
  if (files_v == nullptr || !files_v->is_object()) {
    return invalid_argument(
        "\"files\" must map adapter_config.json and adapter_model.safetensors to uploaded file "
        "ids",
        "files");
  }
  const json::object& files = files_v->as_object();
  for (const auto& [key, value] : files) {
    if (std::find(std::begin(kAdapterFiles), std::end(kAdapterFiles), key) ==
        std::end(kAdapterFiles)) {
      return invalid_argument(fmt::format("files.{}: an adapter is made of adapter_config.json "
                                          "and adapter_model.safetensors",
                                          std::string_view(key)),
                              "files");
    }
  }
  // Its files go into the model's directory as hard links to their blobs (a copy where links
  // cannot be made): replicas that started before it read it there.
  std::vector<std::pair<std::string, fs::path>> blobs;
  for (std::string_view name : kAdapterFiles) {
    const std::string param = fmt::format("files.{}", name);
    const json::value* id = files.if_contains(name);
    if (id == nullptr || !id->is_string()) {
      return invalid_argument(param + " must be the id of an uploaded file", param);
    }
    MH_ASSIGN_OR_RETURN(FileRecord f, files_.get(m.tenant, id->as_string()));
    if (f.purpose != "model") {
      return failed_precondition(fmt::format(
          "{}: file '{}' was uploaded with purpose '{}'; model files need purpose 'model'", param,
          f.id, f.purpose));
    }
    MH_ASSIGN_OR_RETURN(fs::path blob, files_.content(m.tenant, f.id));
    blobs.emplace_back(std::string(name), fs::absolute(blob));
    (name == kAdapterFiles[0] ? m.config_file : m.weights_file) = f.id;
  }
  const fs::path final_dir = m.directory;
  const fs::path staging = final_dir.parent_path() /
                           ("." + final_dir.filename().string() + ".staging-" +
                            secure_random_base64url(9));
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) return internal_error(fmt::format("creating {}: {}", staging.string(), ec.message()));
  auto discard = [&] { fs::remove_all(staging, ec); };
  for (const auto& [name, blob] : blobs) {
    fs::create_hard_link(blob, staging / name, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(blob, staging / name, ec);
    }
    if (ec) {
      discard();
      return internal_error(fmt::format("placing {}: {}", name, ec.message()));
    }
  }
  auto summary = inspect(staging, base.directory);
  if (!summary.ok()) {
    discard();
    return summary.status().code() == Code::kInvalidArgument
               ? invalid_argument(summary.status().message(), "files")
               : summary.status();
  }
  m.base = base.id;
  Result<ModelRecord> accepted = accept(std::move(m), *summary, staging);
  if (!accepted.ok()) discard();
  return accepted;
}

Result<std::string> Models::run_contained(std::vector<std::string> args,
                                          std::vector<fs::path> reads, const fs::path& work_dir,
                                          uint64_t memory,
                                          std::chrono::seconds limit,
                                          std::string_view what) const {
  if (worker_.empty()) return internal_error("model workers are not configured");
  executor::WorkerSpec spec;
  spec.argv = {worker_.string()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.work_dir = work_dir;
  spec.cpu_threads = 1;
  spec.sandbox = sandbox_;
  spec.sandbox.read = std::move(reads);
  spec.sandbox.network = false;
  spec.sandbox.address_space_bytes = memory;
  MH_ASSIGN_OR_RETURN(auto worker, executor::WorkerProcess::start(spec, {}));
  std::optional<executor::WorkerExit> exit = worker->wait(limit);
  if (!exit) {
    worker->cancel(std::chrono::seconds(1));
    return invalid_argument(fmt::format("{} took longer than {} s", what, limit.count()));
  }
  MH_ASSIGN_OR_RETURN(std::string log,
                      engine::read_text_file(spec.work_dir / "worker.log", size_t{1} << 20));
  if (!exit->ok()) {
    // mh-worker says what is wrong on its last line ("mh-worker: <why>"); a worker that died
    // (out of memory, a signal) says nothing of the files.
    const size_t at = log.rfind("mh-worker: ");
    if (exit->exit_code == 2 && at != std::string::npos) {
      std::string why = log.substr(at + 11);
      while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
      return invalid_argument(why);
    }
    spdlog::warn("{}: {}", what, exit->reason);
    return invalid_argument(fmt::format(
        "{} could not finish within {} GiB of memory and {} s (the worker {})", what,
        memory >> 30, limit.count(),
        exit->signal != 0 ? fmt::format("was killed by signal {}", exit->signal)
                          : fmt::format("exited with status {}", exit->exit_code)));
  }
  return log;
}

namespace {

// The largest file in `dir` (through links, to the blobs).
uint64_t largest_file(const fs::path& dir) {
  uint64_t largest = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const uint64_t size = fs::file_size(e.path(), ec);
    if (!ec) largest = std::max(largest, size);
    ec.clear();
  }
  return largest;
}

// Removes a directory when it goes out of scope.
struct Scratch {
  fs::path dir;
  ~Scratch() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

}  // namespace

Result<ModelRecord> Models::merge(std::string_view tenant_view, std::string_view id,
                                  const json::object& body) {
  const std::string tenant(tenant_view);
  MH_ASSIGN_OR_RETURN(int64_t now, context_.clock.now());
  for (const auto& [key, value] : body) {
    if (key != "name") {
      return invalid_argument(
          fmt::format("\"{}\" is not a field of a merge (name)", std::string_view(key)),
          std::string(key));
    }
  }
  const json::value* name_v = body.if_contains("name");
  if (name_v == nullptr || !name_v->is_string() || !valid_name(name_v->as_string())) {
    return invalid_argument(
        "\"name\" must be 1-64 characters of a-z 0-9 . _ - (not starting with . or -)", "name");
  }
  MH_ASSIGN_OR_RETURN(const ModelRecord adapter, get(tenant, id));
  if (adapter.base.empty()) {
    return failed_precondition(
        fmt::format("'{}' is not a LoRA adapter: there is nothing to merge", adapter.id));
  }
  MH_ASSIGN_OR_RETURN(const ModelRecord base, get(tenant, adapter.base));
  MH_TRY(check_model_params(context_.entitlements, tenant, base.parameters));
  const std::string name(name_v->as_string());
  ModelRecord m;
  m.id = std::string(kCustomPrefix) + name;
  m.tenant = tenant;
  m.kind = "merged";
  m.created_at = now;
  m.merged_from = adapter.id;
  m.directory = (root_ / tenant / name).string();
  if (get(tenant, m.id).ok()) {
    return conflict(fmt::format("model '{}' already exists; delete it first", m.id));
  }
  // The worker writes the merged model into its own directory; checked as any model is, it is
  // then moved into place.
  const Scratch work{root_ / tenant / ("." + name + ".merging-" + secure_random_base64url(9))};
  const uint64_t weights = largest_file(base.directory);
  MH_TRY(run_contained({"merge", "--base", base.directory, "--adapter", adapter.directory,
                        "--out", (work.dir / "model").string()},
                       {base.directory, adapter.directory}, work.dir,
                       3 * 2 * weights + kInspectMemory, kMergeTime, "merging the adapter")
             .status());
  auto summary = inspect(work.dir / "model");
  if (!summary.ok()) return internal_error("the merged model: " + summary.status().message());
  return accept(std::move(m), *summary, work.dir / "model");
}

Result<Models::Inspected> Models::inspect(const fs::path& dir, const fs::path& base) const {
  // Memory for the largest weights file (the worker maps each in turn) and the parse beside it.
  std::vector<std::string> args = {"inspect", "--model", dir.string()};
  std::vector<fs::path> reads = {dir};
  if (!base.empty()) {
    args.insert(args.end(), {"--base", base.string()});
    reads.push_back(base);
  }
  const Scratch scratch{scratch_ / ("inspect-" + secure_random_base64url(9))};
  MH_ASSIGN_OR_RETURN(const std::string log,
                      run_contained(std::move(args), std::move(reads), scratch.dir,
                                    largest_file(dir) + kInspectMemory, kInspectTime,
                                    "checking the model's files"));
  const size_t line = log.rfind("\n{");
  boost::system::error_code jec;
  json::value v = json::parse(line == std::string::npos ? std::string_view(log)
                                                        : std::string_view(log).substr(line + 1),
                              jec);
  if (jec || !v.is_object()) return internal_error("mh-worker inspect printed no summary");
  const json::object& o = v.as_object();
  Inspected out;
  auto number = [&](std::string_view key) -> int64_t {
    const json::value* x = o.if_contains(key);
    return x != nullptr && x->is_int64() ? x->as_int64() : -1;
  };
  const json::value* family = o.if_contains("family");
  out.family = family != nullptr && family->is_string() ? std::string(family->as_string()) : "";
  out.parameters = number("parameters");
  out.context_length = number("context");
  out.vocab_size = number("vocab_size");
  if (out.family.empty() || out.parameters < 0 || out.context_length < 0 || out.vocab_size < 0) {
    return internal_error("mh-worker inspect printed an incomplete summary");
  }
  return out;
}

}  // namespace mh::api
