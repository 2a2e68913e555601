// Custom models through the HTTP API on a real daemon: registered from uploaded files,
// validated (config, weights against it, tokenizer, the license's feature and parameter limit),
// listed only to their tenant, loadable by the engine, and holding on to their files.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <fstream>
#include <random>
#include <thread>
#include <tuple>
#include <macrohard/macrohard.hpp>

#include "platform/engine/generate.h"
#include "platform/engine/model.h"
#include "platform/engine/tokenizer.h"
#include "tests/integration/model_helpers.h"
#include "tests/integration/sdk_client.h"

namespace mh::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

std::string message_of(const RawResponse& r) {
  return std::string(json::parse(r.body).at("error").at("message").as_string());
}

// The tenant's own models in its list (the platform's base models come first, owned by
// "macrohard").
std::vector<json::object> own_models(ModelsPlatform& p, const std::string& tenant) {
  std::vector<json::object> own;
  const json::value list = json::parse(p.as(tenant, "GET", "/v1/models?limit=1000").body);
  for (const auto& m : list.at("data").as_array()) {
    if (m.at("owned_by") != "macrohard") own.push_back(m.as_object());
  }
  return own;
}

TEST_CASE("every tenant sees the platform's base models, and cannot change them") {
  ModelsPlatform p;
  p.license_models("acme", {"train", "deploy"});
  json::object list = json::parse(p.as("acme", "GET", "/v1/models").body).as_object();
  std::vector<std::string> ids;
  for (const auto& m : list.at("data").as_array()) ids.emplace_back(m.at("id").as_string());
  CHECK(ids == std::vector<std::string>{"mh-gpt2-small", "mh-gpt2-tiny", "mh-llama-small"});
  json::object tiny =
      json::parse(p.as("globex", "GET", "/v1/models/mh-gpt2-tiny").body).as_object();
  CHECK(tiny.at("owned_by") == "macrohard");
  CHECK(tiny.at("kind") == "preset");
  CHECK(tiny.at("trains_from_scratch") == true);
  CHECK(tiny.at("family") == "gpt2");
  CHECK(tiny.at("context_length") == 256);
  CHECK(tiny.at("parameters").as_int64() > 500'000);
  // Pages run from the base models on into the tenant's own.
  json::object first = json::parse(p.as("acme", "GET", "/v1/models?limit=2").body).as_object();
  CHECK(first.at("has_more") == true);
  json::object rest =
      json::parse(p.as("acme", "GET", "/v1/models?limit=2&after=mh-gpt2-tiny").body).as_object();
  REQUIRE(rest.at("data").as_array().size() == 1);
  CHECK(rest.at("data").at(0).at("id") == "mh-llama-small");
  RawResponse r = p.as("acme", "DELETE", "/v1/models/mh-gpt2-tiny");
  CHECK(r.status == 403);
  // A preset has no weights to serve: it is trained first.
  r = p.as("acme", "POST", "/v1/deployments",
           json::serialize(json::object{{"model", "mh-gpt2-tiny"}}));
  CHECK(r.status == 422);
  CHECK(message_of(r).find("train it first") != std::string::npos);
  // A model larger than the license allows is refused where it would be used.
  p.license_models("acme", {"train", "deploy"}, 1000);
  r = p.upload("acme", "fine-tune", "t.jsonl", "{\"text\":\"hello\"}\n");
  REQUIRE(r.status == 200);
  r = p.as("acme", "POST", "/v1/fine_tuning/jobs",
           json::serialize(json::object{{"model", "mh-gpt2-tiny"},
                                        {"training_file", json::parse(r.body).at("id")}}));
  CHECK(r.status == 403);
  CHECK(message_of(r).find("max_model_params") != std::string::npos);
}

TEST_CASE("a tenant registers a custom model from its files, and only it can see and use it") {
  ModelsPlatform p;
  p.license_models("acme", {"train", "custom_models"});
  TempDir work;
  const auto files = tiny_model_files(work.path() / "tiny", 16);
  const json::object ids = p.upload_model("acme", files);

  // A model whose name is another's plus ".staging" is its own model: registering the other
  // leaves it whole.
  RawResponse r = p.register_model("acme", "tiny.staging", ids);
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const fs::path other = p.dir.path() / "data" / "models" / "acme" / "tiny.staging";
  REQUIRE(fs::exists(other / "config.json"));
  r = p.register_model("acme", "tiny", ids);
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(fs::exists(other / "config.json"));
  REQUIRE(p.as("acme", "DELETE", "/v1/models/custom:tiny.staging").status == 200);
  const json::object m = json::parse(r.body).as_object();
  CHECK(m.at("id") == "custom:tiny");
  CHECK(m.at("object") == "model");
  CHECK(m.at("owned_by") == "acme");
  CHECK(m.at("family") == "llama");
  CHECK(m.at("context_length") == 32);
  CHECK(m.at("files").at("model.safetensors") == ids.at("model.safetensors"));
  const int64_t params = m.at("parameters").as_int64();
  CHECK(params > 0);

  REQUIRE(own_models(p, "acme").size() == 1);
  CHECK(p.as("acme", "GET", "/v1/models/custom:tiny").status == 200);
  // Another tenant sees nothing of it.
  CHECK(own_models(p, "globex").empty());
  CHECK(p.as("globex", "GET", "/v1/models/custom:tiny").status == 404);
  CHECK(p.as("globex", "DELETE", "/v1/models/custom:tiny").status == 404);

  // The engine loads it from where the platform laid it out.
  auto cpu = engine::make_cpu_backend(1);
  const fs::path dir = p.dir.path() / "data" / "models" / "acme" / "tiny";
  auto loaded = engine::Model::load(dir, *cpu);
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK((*loaded)->config().parameter_count() == params);
  CHECK(engine::Tokenizer::load(dir).ok());

  // Its files stay while it exists; the name is taken.
  r = p.as("acme", "DELETE", "/v1/files/" + std::string(ids.at("config.json").as_string()));
  CHECK(r.status == 409);
  CHECK(message_of(r).find("belongs to model 'custom:tiny'") != std::string::npos);
  r = p.register_model("acme", "tiny", ids);
  CHECK(r.status == 409);

  r = p.as("acme", "DELETE", "/v1/models/custom:tiny");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body).at("deleted") == true);
  CHECK_FALSE(fs::exists(dir));
  CHECK(p.as("acme", "DELETE", "/v1/files/" + std::string(ids.at("config.json").as_string()))
            .status == 200);
}

TEST_CASE("custom models are refused, saying why, when the files or the license do not fit") {
  ModelsPlatform p;
  p.license_models("acme", {"custom_models"});
  TempDir work;
  const auto good = tiny_model_files(work.path() / "a", 16);
  const json::object ids = p.upload_model("acme", good);

  // globex's license does not grant custom_models.
  const json::object theirs = p.upload_model("globex", good);
  RawResponse r = p.register_model("globex", "tiny", theirs);
  CHECK(r.status == 403);
  CHECK(message_of(r).find("custom_models") != std::string::npos);

  // Weights that do not match the config: config.json of a wider model.
  auto wide = tiny_model_files(work.path() / "b", 32);
  json::object mixed = ids;
  mixed["config.json"] =
      p.upload_model("acme", {{"config.json", wide["config.json"]}}).at("config.json");
  r = p.register_model("acme", "mixed", mixed);
  CHECK(r.status == 400);
  CHECK(message_of(r).find("has shape") != std::string::npos);
  CHECK(json::parse(r.body).at("error").at("param") == "files");

  // Files uploaded for fine-tuning, another tenant's file, a missing or unknown entry, a bad name.
  json::object wrong_purpose = ids;
  wrong_purpose["tokenizer.json"] =
      p.upload_model("acme", {{"tokenizer.json", "{\"text\": \"hello\"}\n"}}, "fine-tune")
          .at("tokenizer.json");
  r = p.register_model("acme", "x", wrong_purpose);
  CHECK(r.status == 422);
  CHECK(message_of(r).find("purpose 'fine-tune'") != std::string::npos);
  json::object foreign = ids;
  foreign["config.json"] = theirs.at("config.json");
  CHECK(p.register_model("acme", "x", foreign).status == 404);
  json::object missing = ids;
  missing.erase("tokenizer.json");
  r = p.register_model("acme", "x", missing);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body).at("error").at("param") == "files.tokenizer.json");
  json::object extra = ids;
  extra["vocab.json"] = "file-x";
  CHECK(p.register_model("acme", "x", extra).status == 400);
  CHECK(p.register_model("acme", "Bad Name", ids).status == 400);

  // Over the license's max_model_params.
  p.license_models("acme", {"custom_models"}, 1000);
  r = p.register_model("acme", "tiny", ids);
  CHECK(r.status == 403);
  CHECK(message_of(r).find("allows at most 1000 (max_model_params)") != std::string::npos);

  // Nothing was recorded or left on disk by any of these.
  CHECK(own_models(p, "acme").empty());
  const fs::path models = p.dir.path() / "data" / "models";
  size_t left = 0;
  if (fs::exists(models)) {
    for (const auto& e : fs::recursive_directory_iterator(models)) left += !e.is_directory();
  }
  CHECK(left == 0);
}

// The daemon's peak resident memory so far, in bytes.
int64_t peak_resident(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

TEST_CASE("a hostile weights file is checked in a worker: the daemon's memory does not grow") {
  ModelsPlatform p;
  p.license_models("acme", {"custom_models"});
  TempDir work;
  auto files = tiny_model_files(work.path() / "a", 16);
  // A 48 MiB safetensors header that is one long shape array: about 30x that once parsed.
  std::string header = R"({"x":{"dtype":"F32","shape":[)";
  header.reserve(48 << 20);
  while (header.size() < (48u << 20)) header += "1,";
  header += R"(1],"data_offsets":[0,4]}})";
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  files["model.safetensors"] = bytes + header + std::string(4, '\0');
  const json::object ids = p.upload_model("acme", files);
  const int64_t before = peak_resident(p.daemon->pid());
  const auto started = std::chrono::steady_clock::now();
  // (Checking it takes seconds: a longer wait than http_request's.)
  RawConnection c(p.daemon->port());
  const std::string body =
      json::serialize(json::object{{"name", "hostile"}, {"files", ids}});
  c.send("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + p.owners.at("acme") +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body);
  auto response = c.read_response(std::chrono::seconds(120));
  REQUIRE(response.has_value());
  const RawResponse& r = *response;
  CHECK(r.status == 400);
  CHECK(json::parse(r.body).at("error").at("param") == "files");
  MESSAGE("refused in ", std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                             .count(),
          " s: ", message_of(r));
  // The parse happened elsewhere: the daemon's peak grew by far less than the header's size.
  const int64_t after = peak_resident(p.daemon->pid());
  CHECK_MESSAGE(after - before < (32 << 20), "daemon peak grew by ", (after - before) >> 20,
                " MiB");
  CHECK(own_models(p, "acme").empty());
}

TEST_CASE("mhctl models register uploads a model directory, and the SDK sees the model") {
  ModelsPlatform p;
  p.license_models("acme", {"custom_models"});
  TempDir work;
  tiny_model_files(work.path() / "tiny", 16);
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(), "models", "register",
                                 (work.path() / "tiny").string(), "--name", "tiny"},
                                env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.starts_with("registered custom:tiny: llama, "));
  r = run_process({mhctl_path().string(), "models", "list"}, env);
  CHECK(r.output.find("custom:tiny") != std::string::npos);

  macrohard::Client client = sdk_client(p, "acme");
  const macrohard::Model m = client.get_model("custom:tiny");
  CHECK(m.family == "llama");
  CHECK(m.context_length == 32);
  CHECK(m.config_file.starts_with("file-"));
  CHECK(m.tokenizer_file.starts_with("file-"));
  auto own = [&] {
    size_t n = 0;
    for (const auto& item : client.list_models().items) n += item.owned_by != "macrohard";
    return n;
  };
  CHECK(own() == 1);
  // A refusal comes back as an SDK error with the server's message.
  try {
    client.register_model("tiny", m.config_file, m.weights_file, m.tokenizer_file);
    FAIL("a second model named tiny was accepted");
  } catch (const macrohard::Error& e) {
    CHECK(std::string(e.what()).find("already exists") != std::string::npos);
  }
  client.delete_model("custom:tiny");
  CHECK(own() == 0);
  // A directory without a tokenizer is refused by mhctl before anything is uploaded.
  fs::remove(work.path() / "tiny" / "tokenizer.json");
  r = run_process({mhctl_path().string(), "models", "register", (work.path() / "tiny").string(),
                   "--name", "again"},
                  env);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("has no tokenizer.json") != std::string::npos);
  const size_t files_before =
      json::parse(p.as("acme", "GET", "/v1/files").body).at("data").as_array().size();
  CHECK(files_before == 3);  // the first registration's; nothing new
}

TEST_CASE("mhctl models upload sends a sharded directory as published, with progress") {
  ModelsPlatform p;
  p.license_models("acme", {"custom_models"});
  TempDir work;
  const fs::path dir = work.path() / "sharded";
  tiny_model_files(dir, 16);
  shard_model(dir);
  std::ofstream(dir / "generation_config.json")
      << R"({"bos_token_id":1,"do_sample":true,"temperature":0.6,"top_p":0.9,"transformers_version":"4.45.0"})";
  std::ofstream(dir / "README.md") << "# a model card, not part of the model\n";
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(), "models", "upload", dir.string(), "--name",
                                 "sharded", "--progress", "always"},
                                env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("registered custom:sharded: llama, ") != std::string::npos);
  CHECK(r.output.find("sharded 100% [########################]") != std::string::npos);
  CHECK(r.output.find("not part of the model, left behind: README.md") != std::string::npos);
  const json::object m =
      json::parse(p.as("acme", "GET", "/v1/models/custom:sharded").body).as_object();
  const json::object& files = m.at("files").as_object();
  for (const char* name : {"config.json", "tokenizer.json", "model.safetensors.index.json",
                           "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "generation_config.json"}) {
    CHECK_MESSAGE(files.contains(name), name);
  }
  CHECK_FALSE(files.contains("model.safetensors"));
  CHECK_FALSE(files.contains("README.md"));
  // A file of a model cannot be deleted while the model uses it, shards included.
  const std::string shard(files.at("model-00002-of-00002.safetensors").as_string());
  CHECK(p.as("acme", "DELETE", "/v1/files/" + shard).status == 409);

  // Shards that disagree with their index are refused, and the upload leaves no file behind.
  const size_t files_before =
      json::parse(p.as("acme", "GET", "/v1/files").body).at("data").as_array().size();
  tiny_model_files(dir, 16);
  shard_model(dir, /*misplaced=*/true);
  r = run_process({mhctl_path().string(), "models", "upload", dir.string(), "--name", "bad"}, env);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("model.safetensors.index.json puts tensor") != std::string::npos);
  CHECK(json::parse(p.as("acme", "GET", "/v1/files").body).at("data").as_array().size() ==
        files_before);
  // A shard the index names but the directory lacks: refused before anything is sent.
  fs::remove(dir / "model-00002-of-00002.safetensors");
  r = run_process({mhctl_path().string(), "models", "upload", dir.string(), "--name", "bad"}, env);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("has no model-00002-of-00002.safetensors") != std::string::npos);

  // Through the API: a shard the index does not name, or one it names but not given.
  RawResponse raw = p.register_model("acme", "x",
                                     json::object{{"config.json", files.at("config.json")},
                                                  {"tokenizer.json", files.at("tokenizer.json")},
                                                  {"model.safetensors.index.json",
                                                   files.at("model.safetensors.index.json")},
                                                  {"model-00001-of-00002.safetensors",
                                                   files.at("model-00001-of-00002.safetensors")}});
  CHECK(raw.status == 400);
  CHECK(message_of(raw).find("files.model-00002-of-00002.safetensors: "
                             "model.safetensors.index.json names this shard") != std::string::npos);
  json::object extra = files;
  extra["model-00003-of-00002.safetensors"] = shard;
  raw = p.register_model("acme", "x", extra);
  CHECK(raw.status == 400);
  CHECK(message_of(raw).find("names no such shard") != std::string::npos);
}

TEST_CASE("mhctl models register sends a directory's chat template files with it") {
  ModelsPlatform p;
  p.license_models("acme", {"custom_models"});
  TempDir work;
  tiny_model_files(work.path() / "tiny", 16);
  std::ofstream(work.path() / "tiny" / "tokenizer_config.json")
      << R"({"eos_token":"<|endoftext|>","chat_template":"{% for m in messages %}{{ m.content }}{% endfor %}"})";
  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(), "models", "register",
                                 (work.path() / "tiny").string(), "--name", "chatty"},
                                env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.starts_with("registered custom:chatty: llama, "));
  const json::object m = json::parse(p.as("acme", "GET", "/v1/models/custom:chatty").body).as_object();
  CHECK(m.at("files").as_object().contains("tokenizer_config.json"));
  // A template the engine cannot run is refused, and mhctl says why.
  std::ofstream(work.path() / "tiny" / "tokenizer_config.json")
      << R"({"chat_template":"{{ x | wordwrap }}"})";
  r = run_process({mhctl_path().string(), "models", "register", (work.path() / "tiny").string(),
                   "--name", "wrapped"},
                  env);
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("the filter 'wordwrap' is not implemented") != std::string::npos);
}

TEST_CASE("a LoRA adapter trained elsewhere registers on its base, and a base deployment serves it") {
  ModelsPlatform p;
  p.license_models("acme", {"train", "deploy", "custom_models"});
  TempDir work;
  REQUIRE(p.register_model("acme", "tiny", p.upload_model("acme", tiny_model_files(
                                                                      work.path() / "tiny", 16)))
              .status == 201);
  // An adapter made as PEFT makes one, on the base as the platform laid it out.
  auto cpu = engine::make_cpu_backend(1);
  const fs::path base_dir = p.dir.path() / "data" / "models" / "acme" / "tiny";
  const fs::path adapter = work.path() / "adapter";
  lora_adapter_files(base_dir, adapter, 3);
  auto files_of = [&](const fs::path& dir) {
    return std::map<std::string, std::string>{
        {"adapter_config.json", read_file(dir / "adapter_config.json")},
        {"adapter_model.safetensors", read_file(dir / "adapter_model.safetensors")}};
  };
  const json::object ids = p.upload_model("acme", files_of(adapter));
  auto register_adapter = [&](const std::string& name, const json::value& base,
                              const json::object& files) {
    return p.as("acme", "POST", "/v1/models",
                json::serialize(json::object{{"name", name}, {"base", base}, {"files", files}}));
  };

  // What does not fit is refused by name, and nothing is recorded.
  RawResponse r = register_adapter("x", "custom:nothing", ids);
  CHECK(r.status == 404);
  r = register_adapter("x", "mh-gpt2-tiny", ids);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body).at("error").at("param") == "base");
  json::object extra = ids;
  extra["tokenizer.json"] = ids.at("adapter_config.json");
  r = register_adapter("x", "custom:tiny", extra);
  CHECK(r.status == 400);
  CHECK(message_of(r).find("files.tokenizer.json") != std::string::npos);
  for (const auto& [from, to, why] :
       {std::tuple{"\"r\":2", "\"r\":4", "adapter_model.safetensors"},
        std::tuple{"\"use_dora\":false", "\"use_dora\":true", "\"use_dora\" is set"},
        std::tuple{"\"down_proj\"", "\"c_fc\"", "\"c_fc\" names no linear layer"}}) {
    const fs::path bad = work.path() / "bad";
    fs::create_directories(bad);
    std::string config = read_file(adapter / "adapter_config.json");
    REQUIRE(config.find(from) != std::string::npos);
    config.replace(config.find(from), std::string(from).size(), to);
    std::ofstream(bad / "adapter_config.json") << config;
    fs::copy_file(adapter / "adapter_model.safetensors", bad / "adapter_model.safetensors",
                  fs::copy_options::overwrite_existing);
    r = register_adapter("x", "custom:tiny", p.upload_model("acme", files_of(bad)));
    CHECK(r.status == 400);
    CHECK_MESSAGE(message_of(r).find(why) != std::string::npos, message_of(r));
  }
  CHECK(p.as("acme", "GET", "/v1/models/custom:x").status == 404);

  r = register_adapter("tuned", "custom:tiny", ids);
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const json::object m = json::parse(r.body).as_object();
  CHECK(m.at("parent") == "custom:tiny");
  CHECK(m.at("root") == "custom:tiny");
  CHECK(m.at("format") == "peft-lora");
  CHECK(m.at("files").at("adapter_model.safetensors") == ids.at("adapter_model.safetensors"));
  CHECK(p.as("globex", "GET", "/v1/models/custom:tuned").status == 404);
  // The base stays while an adapter applies to it.
  r = p.as("acme", "DELETE", "/v1/models/custom:tiny");
  CHECK(r.status == 409);
  CHECK(message_of(r).find("adapter 'custom:tuned'") != std::string::npos);

  // A deployment of the base answers for the adapter, as the engine with the adapter loaded
  // decodes the same tokens.
  r = p.as("acme", "POST", "/v1/deployments", R"({"model":"custom:tiny"})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string deployment(json::parse(r.body).at("id").as_string());
  for (int i = 0; i < 600; ++i) {
    r = p.as("acme", "GET", "/v1/deployments/" + deployment);
    if (json::parse(r.body).at("status") == "ready") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(json::parse(r.body).at("status") == "ready");
  const std::vector<int32_t> prompt = {5, 17, 3, 42, 8};
  const std::string expected = greedy_text(base_dir, adapter, prompt, 6);
  auto served = engine::Model::load(base_dir, *cpu);
  REQUIRE((*served)->load_lora(adapter).ok());
  for (const char* model : {"custom:tuned", "custom:tiny"}) {
    r = p.as("acme", "POST", "/v1/completions",
             json::serialize(json::object{{"model", model},
                                          {"prompt", json::array{5, 17, 3, 42, 8}},
                                          {"max_tokens", 6},
                                          {"temperature", 0},
                                          {"ignore_eos", true}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const json::object answer = json::parse(r.body).as_object();
    CHECK(answer.at("model") == model);
    const std::string text(answer.at("choices").at(0).at("text").as_string());
    if (std::string_view(model) == "custom:tuned") {
      CHECK(text == expected);
    } else {
      CHECK(text != expected);  // the base alone answers otherwise
    }
  }
  // Another tenant cannot reach it through anyone's deployment.
  r = p.as("globex", "POST", "/v1/completions",
           R"({"model":"custom:tuned","prompt":"the cat","max_tokens":2})");
  CHECK(r.status == 404);

  // A merged export: the adapter folded into its base, a full model of its own whose logits are
  // the adapted model's.
  r = p.as("acme", "POST", "/v1/models/custom:tiny/merge", R"({"name":"nothing-to-merge"})");
  CHECK(r.status == 422);
  r = p.as("acme", "POST", "/v1/models/custom:tuned/merge", R"({"name":"merged","x":1})");
  CHECK(r.status == 400);
  r = p.as("acme", "POST", "/v1/models/custom:tuned/merge", R"({"name":"merged"})");
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const json::object merged = json::parse(r.body).as_object();
  CHECK(merged.at("kind") == "merged");
  CHECK(merged.at("merged_from") == "custom:tuned");
  CHECK(merged.at("parent").is_null());
  CHECK(merged.at("parameters") == json::parse(p.as("acme", "GET", "/v1/models/custom:tiny").body)
                                       .at("parameters"));
  auto whole = engine::Model::load(p.dir.path() / "data" / "models" / "acme" / "merged", *cpu);
  REQUIRE_MESSAGE(whole.ok(), whole.status().to_string());
  CHECK((*whole)->lora() == nullptr);
  (*whole)->forward(prompt, 1, static_cast<int64_t>(prompt.size()), {});
  (*served)->forward(prompt, 1, static_cast<int64_t>(prompt.size()), {});
  const engine::Tensor a = (*whole)->logits(), b = (*served)->logits();
  REQUIRE(a.numel() == b.numel());
  for (int64_t i = 0; i < a.numel(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-4));
  CHECK(engine::Tokenizer::load(p.dir.path() / "data" / "models" / "acme" / "merged").ok());
}

}  // namespace
}  // namespace mh::test
