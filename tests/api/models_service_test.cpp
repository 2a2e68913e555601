// The models, with no HTTP: the wire format (file names, model names, the "model" object), the
// store's typed queries on a real SQLite store, and the service's catalogue of base models
// beside each tenant's own.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "platform/api/jobs/store.h"
#include "platform/api/models/protocol.h"
#include "platform/api/models/service.h"
#include "platform/api/models/store.h"
#include "tests/api/service_platform.h"

namespace mh::api {
namespace {

ModelRecord custom(const std::string& tenant, const std::string& name) {
  ModelRecord m;
  m.id = std::string(kCustomPrefix) + name;
  m.tenant = tenant;
  m.kind = "custom";
  m.family = "llama";
  m.parameters = 1000;
  m.context_length = 128;
  m.vocab_size = 64;
  m.config_file = "file-config";
  m.weights_file = "file-index";
  m.tokenizer_file = "file-tokenizer";
  m.extra_files = {{"chat_template.jinja", "file-template"},
                   {"model-00001-of-00002.safetensors", "file-shard1"}};
  m.directory = "/models/" + tenant + "/" + name;
  m.created_at = 10;
  return m;
}

TEST_CASE("model names, shard names and the model object follow the published layout") {
  CHECK(valid_name("llama-3.1_8b"));
  CHECK_FALSE(valid_name(""));
  CHECK_FALSE(valid_name(".hidden"));
  CHECK_FALSE(valid_name("-flag"));
  CHECK_FALSE(valid_name("Upper"));
  CHECK_FALSE(valid_name(std::string(65, 'a')));
  CHECK(shard_name("model-00001-of-00002.safetensors"));
  CHECK_FALSE(shard_name("model.safetensors"));
  CHECK_FALSE(shard_name("../x.safetensors"));
  CHECK_FALSE(shard_name("model.bin"));

  const ModelRecord m = custom("acme", "mine");
  CHECK(sharded(m));
  const boost::json::object o = model_json(m);
  CHECK(o.at("object") == "model");
  CHECK(o.at("owned_by") == "acme");
  // A sharded model names its index, not model.safetensors, and every file it is made of.
  const auto& files = o.at("files").as_object();
  CHECK(files.at("model.safetensors.index.json") == "file-index");
  CHECK_FALSE(files.contains("model.safetensors"));
  CHECK(files.at("chat_template.jinja") == "file-template");
  CHECK(files.at("model-00001-of-00002.safetensors") == "file-shard1");

  ModelRecord tuned;
  tuned.kind = "fine-tune";
  tuned.job_id = "ftjob-1";
  CHECK(model_json(tuned).at("fine_tuning_job") == "ftjob-1");
  CHECK(model_json(tuned).at("owned_by") == "macrohard");
  ModelRecord preset;
  preset.kind = "preset";
  CHECK(model_json(preset).at("trains_from_scratch") == true);
}

struct Fixture : ServicePlatform {
  Files files{context, 1 << 20};
  Models models{context, files, dir.path() / "models", dir.path() / "base-models"};
  ModelStore store{*db};

  Fixture() { REQUIRE(models.load_catalogue().ok()); }
  // The model `custom` describes, made of real files of the tenant's (the store refers to them).
  ModelRecord with_files(ModelRecord m) {
    auto file = [&](const std::string& content) {
      auto blob = blobs->put(content);
      REQUIRE(blob.ok());
      auto f = files.commit(m.tenant, "model", "f", *blob, 1 << 20);
      REQUIRE_MESSAGE(f.ok(), f.status().to_string());
      return f->id;
    };
    m.config_file = file("config");
    m.weights_file = file("index");
    m.tokenizer_file = file("tokenizer");
    for (auto& [name, id] : m.extra_files) id = file(name);
    return m;
  }
};

TEST_CASE("a tenant's models are its own, kept while a job trains them, beside the base models") {
  Fixture t;
  const ModelRecord m = t.with_files(custom("acme", "mine"));
  const Status inserted = t.store.insert(m);
  REQUIRE_MESSAGE(inserted.ok(), inserted.to_string());
  const ModelRecord back = t.store.get("acme", m.id).value();
  CHECK(back.extra_files == m.extra_files);
  CHECK(back.weights_file == m.weights_file);
  CHECK(t.store.get("globex", m.id).status().code() == Code::kNotFound);

  // Every tenant sees the base models first (by name), then its own.
  bool more = true;
  auto listed = t.models.list("acme", "", 100, &more);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 4);
  CHECK((*listed)[0].id == "mh-gpt2-small");
  CHECK((*listed)[0].kind == "preset");
  CHECK(listed->back().id == m.id);
  CHECK_FALSE(more);
  CHECK(t.models.list("globex", "", 100, &more)->size() == 3);
  auto page = t.models.list("acme", "", 2, &more);
  CHECK(page->size() == 2);
  CHECK(more);
  page = t.models.list("acme", (*page)[1].id, 10, &more);
  REQUIRE(page->size() == 2);
  CHECK(page->back().id == m.id);
  CHECK(t.models.get("globex", "mh-gpt2-tiny").ok());
  CHECK(t.models.remove("acme", "mh-gpt2-tiny").status().code() == Code::kPermissionDenied);

  // A job that has not ended holds the model; once it has, the model may go.
  JobStore jobs(*t.db);
  JobRecord job;
  job.id = "ftjob-x";
  job.tenant = "acme";
  job.model = m.id;
  job.training_file = "file-1";
  job.training_sha256 = std::string(64, 'b');
  REQUIRE(jobs.insert(job, {}).ok());
  const Status held = t.models.remove("acme", m.id).status();
  CHECK(held.code() == Code::kConflict);
  CHECK(held.message().find("ftjob-x") != std::string::npos);
  REQUIRE(jobs.finish(job, JobStatus::kCancelled, "", "", "", std::nullopt, 11, {}).ok());
  CHECK(t.models.remove("globex", m.id).status().code() == Code::kNotFound);
  REQUIRE(t.models.remove("acme", m.id).ok());
  CHECK(t.models.get("acme", m.id).status().code() == Code::kNotFound);
}

}  // namespace
}  // namespace mh::api
