// mh-worker: runs the engine on a model directory in Hugging Face layout (config.json,
// model.safetensors, tokenizer.json). The platform starts it for training ranks and inference
// replicas; on its own it trains, generates, prints logits and tokenizes.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "platform/engine/files.h"
#include "platform/engine/generate.h"
#include "platform/engine/json.h"
#include "platform/engine/train.h"
#include "platform/executor/worker_contract.h"
#include "platform/worker/cli.h"
#include "platform/worker/device.h"
#include "platform/worker/contain.h"
#include "platform/worker/sandbox_check.h"
#include "platform/worker/serve.h"
#include "platform/worker/train.h"

namespace fs = std::filesystem;
using namespace mh;
using namespace mh::engine;
using mh::worker::fail;
using mh::worker::need;

namespace {

std::string json_quoted(const std::string& s) {
  std::string out;
  mh::engine::append_json_string(out, s);
  return out;
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string token;
  std::istringstream in(text);
  while (in >> token) {
    if (token == "," || token == "[" || token == "]") continue;
    while (!token.empty() && (token.back() == ',' || token.back() == ']')) token.pop_back();
    while (!token.empty() && token.front() == '[') token.erase(0, 1);
    if (token.empty()) continue;
    size_t used = 0;
    long value = -1;
    try {
      value = std::stol(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size() || value < 0 || value > INT32_MAX) {
      fail(invalid_argument("\"" + token + "\" is not a token id"));
    }
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  std::puts((out + "]").c_str());
}

std::string read_input(const std::string& text, const std::string& file) {
  if (file.empty()) return text;
  return need(read_text_file(file, size_t{1} << 30));
}

}  // namespace

int main(int argc, char** argv) {
  // Another program's arguments follow contain's "--": they are not ours to parse.
  if (argc >= 2 && std::string_view(argv[1]) == "contain") return worker::contain(argc, argv);
  CLI::App app{"mh-worker: the Macrohard engine on a Hugging Face model directory"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads after the subcommand too
  std::string model_dir;
  // The executor passes the thread budget in MH_THREADS; --threads overrides it.
  int threads = std::getenv("MH_THREADS") ? std::atoi(std::getenv("MH_THREADS")) : 0;
  app.add_option("--threads", threads, "CPU threads (0: one per core)");
  worker::DeviceOptions device;
  app.add_option("--device", device.device,
                 "auto (CUDA when this process sees a GPU), cpu or cuda");
  app.add_option("--precision", device.precision, "fp32, or bf16 GEMMs on CUDA");

  // tokenize / detokenize
  auto* tokenize = app.add_subcommand("tokenize", "print the token ids of a text");
  std::string text, text_file;
  tokenize->add_option("--model", model_dir, "model directory (its tokenizer)")->required();
  tokenize->add_option("--text", text, "the text");
  tokenize->add_option("--file", text_file, "read the text from a file");
  bool allow_special = false;
  tokenize->add_flag("--special", allow_special,
                     "turn special tokens written in the text into ids");

  auto* detokenize = app.add_subcommand("detokenize", "print the text of token ids");
  std::string ids_text;
  detokenize->add_option("--model", model_dir, "model directory")->required();
  detokenize->add_option("ids", ids_text, "token ids, e.g. \"[464, 3290]\"")->required();

  // logits / greedy
  auto* logits = app.add_subcommand("logits", "print the logits after each of the token ids");
  bool last_only = false;
  logits->add_option("--model", model_dir, "model directory")->required();
  logits->add_option("ids", ids_text, "token ids")->required();
  logits->add_flag("--last", last_only, "only the last position's logits");

  auto* greedy = app.add_subcommand("greedy", "print the greedy continuation's token ids");
  int64_t max_tokens = 16;
  greedy->add_option("--model", model_dir, "model directory")->required();
  greedy->add_option("ids", ids_text, "prompt token ids")->required();
  greedy->add_option("--max-tokens", max_tokens, "tokens to generate");

  // generate
  auto* gen = app.add_subcommand("generate", "continue a prompt, streaming the text");
  SamplingParams sampling;
  std::string prompt;
  bool chat = false;
  gen->add_option("--model", model_dir, "model directory")->required();
  gen->add_option("--prompt", prompt, "the prompt")->required();
  gen->add_flag("--chat", chat, "send the prompt as a user message through the chat template");
  gen->add_option("--max-tokens", sampling.max_tokens, "most tokens to generate");
  gen->add_option("--temperature", sampling.temperature, "0 is greedy");
  gen->add_option("--top-k", sampling.top_k, "sample among the k likeliest (0: all)");
  gen->add_option("--top-p", sampling.top_p, "nucleus sampling mass");
  gen->add_option("--seed", sampling.seed, "sampling seed");
  gen->add_option("--stop", sampling.stop, "stop before this text (repeatable)");
  gen->add_flag("--ignore-eos", sampling.ignore_eos, "keep going past the end-of-text token");

  // chat-template
  auto* chat_template = app.add_subcommand(
      "chat-template", "print a conversation as the model's chat template renders it");
  std::string messages_file, tools_file;
  bool add_generation_prompt = false;
  chat_template->add_option("--model", model_dir, "model directory")->required();
  chat_template->add_option("--messages", messages_file, "a JSON file: the messages")->required();
  chat_template->add_option("--tools", tools_file, "a JSON file: the tools");
  chat_template->add_flag("--add-generation-prompt", add_generation_prompt,
                          "end with the start of the assistant's reply");

  // inspect
  auto* inspect = app.add_subcommand(
      "inspect", "check a model directory (config, weights' headers, tokenizer); print a summary");
  inspect->add_option("--model", model_dir, "model directory")->required();

  // init
  auto* init = app.add_subcommand("init", "create a model with fresh weights from a config.json");
  std::string config_file, out_dir, tokenizer_dir;
  uint64_t seed = 1234;
  init->add_option("--config", config_file, "config.json to use")->required();
  init->add_option("--tokenizer", tokenizer_dir, "directory whose tokenizer to copy")->required();
  init->add_option("--out", out_dir, "new model directory")->required();
  init->add_option("--seed", seed, "initialisation seed");

  // train-tokenizer
  auto* train_tok = app.add_subcommand("train-tokenizer", "learn a byte-level BPE tokenizer");
  std::vector<std::string> inputs;
  BpeTrainerOptions bpe;
  bpe.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  train_tok->add_option("--input", inputs, "text files to learn from")->required();
  train_tok->add_option("--vocab-size", bpe.vocab_size, "vocabulary size");
  train_tok->add_option("--out", out_dir, "directory for tokenizer.json")->required();

  // The roles the daemon starts, as the worker contract defines them.
  int contract = executor::kWorkerContract;
  executor::TrainArgs train_args;
  auto* train = executor::add_train_command(app, train_args, contract);
  executor::ServeArgs serve_args;
  auto* serve = executor::add_serve_command(app, serve_args, contract);

  // Handled before parsing (main's first lines); here for --help.
  app.add_subcommand("contain", "enter the worker sandbox, then run the program after --");
  auto* sandbox_check = app.add_subcommand(
      "sandbox-check", "try reads, writes and connections, and say what this process may do");
  std::vector<std::string> try_read, try_write, try_connect;
  sandbox_check->add_option("--try-read", try_read, "a file to read");
  sandbox_check->add_option("--try-write", try_write, "a file to create and write");
  sandbox_check->add_option("--try-connect", try_connect, "a local TCP port to connect to");

  CLI11_PARSE(app, argc, argv);
  if (train->parsed() || serve->parsed()) {
    if (Status s = executor::check_contract(contract); !s.ok()) fail(s);
    const std::string& role_device = train->parsed() ? train_args.device : serve_args.device;
    const std::string& role_precision =
        train->parsed() ? train_args.precision : serve_args.precision;
    if (!role_device.empty()) device.device = role_device;
    if (!role_precision.empty()) device.precision = role_precision;
  }
  device.threads = threads;
  if (sandbox_check->parsed()) return worker::sandbox_check(try_read, try_write, try_connect);
  if (serve->parsed()) {
    worker::ServeOptions so;
    so.model_dir = serve_args.model;
    so.model_name = serve_args.name;
    so.host = serve_args.host;
    so.port = serve_args.port;
    so.max_batch = serve_args.max_batch;
    if (const char* token = std::getenv("MH_REPLICA_TOKEN")) so.token = token;
    so.compute = device;
    return worker::serve(so);
  }
  // The backend is made on first use: tokenizing or inspecting starts no GPU.
  worker::Compute compute;
  auto backend = [&]() -> Backend& {
    if (!compute.backend) compute = need(worker::make_compute(device));
    return *compute.backend;
  };

  if (tokenize->parsed()) {
    const Tokenizer tok = need(Tokenizer::load(model_dir));
    print_ids(tok.encode(read_input(text, text_file), allow_special));
  } else if (detokenize->parsed()) {
    const Tokenizer tok = need(Tokenizer::load(model_dir));
    const std::string out = need(tok.decode(parse_ids(ids_text)));
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
  } else if (logits->parsed() || greedy->parsed()) {
    auto model = need(Model::load(model_dir, backend()));
    const auto ids = parse_ids(ids_text);
    for (int32_t id : ids) {
      if (id >= model->config().vocab_size)
        fail(invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary"));
    }
    if (ids.empty()) fail(invalid_argument("no token ids given"));
    if (static_cast<int64_t>(ids.size()) > model->config().max_positions) {
      fail(invalid_argument("more token ids than the model's context"));
    }
    if (logits->parsed()) {
      model->forward(ids, 1, static_cast<int64_t>(ids.size()), {});
      const Tensor l = model->logits();
      const int64_t v = model->config().vocab_size;
      for (int64_t r = last_only ? l.dim(0) - 1 : 0; r < l.dim(0); ++r) {
        std::string line = "[";
        for (int64_t j = 0; j < v; ++j)
          line += (j ? ", " : "") + fmt::format("{:.6g}", l[r * v + j]);
        std::puts((line + "]").c_str());
      }
    } else {
      KvCache cache = model->new_cache(static_cast<int64_t>(ids.size()) + max_tokens);
      std::vector<Model::Step> steps = {{&cache, ids}};
      std::vector<int32_t> out;
      for (int64_t i = 0; i < max_tokens && cache.length() < model->config().max_positions; ++i) {
        const Tensor l = model->forward_cached(steps);
        const auto next =
            static_cast<int32_t>(std::max_element(l.data(), l.data() + l.numel()) - l.data());
        out.push_back(next);
        steps[0].tokens = {next};
      }
      print_ids(out);
    }
  } else if (chat_template->parsed()) {
    const Tokenizer tok = need(Tokenizer::load(model_dir));
    const ChatTemplate tmpl = need(ChatTemplate::load(model_dir, tok));
    const Json messages = need(read_json_file(messages_file));
    const Json tools = tools_file.empty() ? Json() : need(read_json_file(tools_file));
    const std::string text = need(tmpl.render(messages, tools, add_generation_prompt));
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else if (gen->parsed()) {
    auto model = need(Model::load(model_dir, backend(), Weights::kAsStored));
    const Tokenizer tok = need(Tokenizer::load(model_dir));
    std::vector<int32_t> ids;
    if (chat) {
      const ChatTemplate tmpl = need(ChatTemplate::load(model_dir, tok));
      ids = need(tmpl.prompt(Json(JsonArray{Json(JsonObject{{"role", Json(std::string("user"))},
                                                            {"content", Json(prompt)}})}),
                             Json()));
    } else {
      ids = tok.encode(prompt, false);
    }
    auto result = need(generate(*model, tok, {ids}, sampling, [](const TokenEvent& e) {
      std::fwrite(e.text.data(), 1, e.text.size(), stdout);
      std::fflush(stdout);
      return true;
    }));
    std::fprintf(stdout, "\n");
    std::fflush(stdout);
    std::fprintf(stderr, "[%zu tokens, finish_reason %s]\n", result[0].tokens.size(),
                 result[0].finish_reason.c_str());
  } else if (inspect->parsed()) {
    const ModelSummary m = need(inspect_model(model_dir));
    std::string files;
    for (const auto& f : m.weight_files) files += (files.empty() ? "" : ",") + json_quoted(f);
    std::printf(
        "{\"family\":\"%s\",\"parameters\":%lld,\"weight_bytes\":%lld,\"vocab_size\":%lld,"
        "\"tokenizer_vocab\":%d,\"context\":%lld,\"layers\":%lld,\"hidden\":%lld,"
        "\"weight_files\":[%s]}\n",
        std::string(family_name(m.config.family)).c_str(), static_cast<long long>(m.parameters),
        static_cast<long long>(m.weight_bytes), static_cast<long long>(m.config.vocab_size),
        m.tokenizer_vocab, static_cast<long long>(m.config.max_positions),
        static_cast<long long>(m.config.layers), static_cast<long long>(m.config.hidden),
        files.c_str());
  } else if (init->parsed()) {
    const ModelConfig config = need(parse_model_config(need(read_text_file(config_file, 1 << 20))));
    const Tokenizer tok = need(Tokenizer::load(tokenizer_dir));
    if (tok.vocab_size() > config.vocab_size) {
      fail(invalid_argument(fmt::format("the tokenizer has {} tokens but vocab_size is {}",
                                        tok.vocab_size(), config.vocab_size)));
    }
    auto model = need(Model::create(config, backend(), seed));
    if (Status s = model->save(out_dir); !s.ok()) fail(s);
    if (Status s = tok.save(out_dir); !s.ok()) fail(s);
    std::printf("%s: %s with %lld parameters\n", out_dir.c_str(),
                std::string(family_name(config.family)).c_str(),
                static_cast<long long>(config.parameter_count()));
  } else if (train_tok->parsed()) {
    std::vector<std::string> texts;
    for (const auto& f : inputs) texts.push_back(need(read_text_file(f, size_t{1} << 30)));
    const Tokenizer tok = need(train_bpe(texts, bpe));
    if (Status s = tok.save(out_dir); !s.ok()) fail(s);
    std::printf("%s/tokenizer.json: %d tokens\n", out_dir.c_str(), tok.vocab_size());
  } else if (train->parsed()) {
    return worker::train(train_args, device);
  }
  return 0;
}
