// mh-worker: runs the engine on a model directory in Hugging Face layout (config.json,
// model.safetensors, tokenizer.json). The platform starts it for training ranks and inference
// replicas; on its own it trains, generates, prints logits and tokenizes.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "platform/engine/files.h"
#include "platform/engine/generate.h"
#include "platform/engine/json.h"
#include "platform/engine/train.h"
#include "platform/executor/worker_contract.h"
#include "platform/worker/device.h"
#include "platform/worker/events.h"
#include "platform/worker/contain.h"
#include "platform/worker/sandbox_check.h"
#include "platform/worker/serve.h"

namespace fs = std::filesystem;
using namespace mh;
using namespace mh::engine;
using mh::worker::emit;

namespace {

constexpr int kBadInput = 2;

std::string json_quoted(const std::string& s) {
  std::string out;
  mh::engine::append_json_string(out, s);
  return out;
}

// SIGTERM asks a training run to checkpoint and stop after its current step.
std::atomic<bool> stop_requested{false};
extern "C" void on_sigterm(int) { stop_requested = true; }

[[noreturn]] void fail(const Status& s) {
  std::fprintf(stderr, "mh-worker: %s\n", s.message().c_str());
  std::exit(s.code() == Code::kInternal ? 1 : kBadInput);
}

template <typename T>
T need(Result<T> r) {
  if (!r.ok()) fail(r.status());
  return std::move(r).value();
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
    model_dir = train_args.model;
    out_dir = train_args.out;
    const std::string& data_file = train_args.data;
    const std::string& resume_dir = train_args.resume;
    const std::string& validation_file = train_args.validation_data;
    const int64_t checkpoint_every = train_args.checkpoint_every;
    const int64_t log_every = train_args.log_every;
    TrainConfig tc;
    if (train_args.steps) tc.steps = *train_args.steps;
    if (train_args.batch_size) tc.batch_size = *train_args.batch_size;
    if (train_args.seq_len) tc.seq_len = *train_args.seq_len;
    if (train_args.grad_accum) tc.grad_accum = *train_args.grad_accum;
    if (train_args.warmup) tc.warmup_steps = *train_args.warmup;
    if (train_args.lr) tc.lr = static_cast<float>(*train_args.lr);
    if (train_args.min_lr_ratio) tc.min_lr_ratio = static_cast<float>(*train_args.min_lr_ratio);
    if (train_args.weight_decay) tc.weight_decay = static_cast<float>(*train_args.weight_decay);
    if (train_args.clip) tc.clip = static_cast<float>(*train_args.clip);
    if (train_args.seed) tc.seed = *train_args.seed;
    // A SIGTERM from here on (while the model loads, too) stops the run after a step, with a
    // checkpoint.
    std::signal(SIGTERM, on_sigterm);
    // A directory with a config but no weights is an architecture to train from scratch: its
    // tokenizer is learned from the training data (unless it has one, or a checkpoint being
    // resumed does), its weights start from the seed.
    const bool from_scratch = !fs::exists(fs::path(model_dir) / "model.safetensors") &&
                              !fs::exists(fs::path(model_dir) / "model.safetensors.index.json");
    std::unique_ptr<Model> model;
    Tokenizer tok;
    if (from_scratch) {
      const ModelConfig config = need(parse_model_config(
          need(read_text_file(fs::path(model_dir) / "config.json", size_t{1} << 20))));
      const fs::path tokenizer_dir =
          !resume_dir.empty() ? fs::path(resume_dir) : fs::path(model_dir);
      if (fs::exists(tokenizer_dir / "tokenizer.json")) {
        tok = need(Tokenizer::load(tokenizer_dir));
      } else {
        const std::string text = need(read_text_file(data_file, size_t{4} << 30));
        BpeTrainerOptions learn;
        learn.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
        learn.vocab_size = static_cast<int32_t>(config.vocab_size);
        tok = need(train_bpe(need(jsonl_texts(text)), learn));
        std::printf("from scratch: learned a %d-token tokenizer from %s\n", tok.vocab_size(),
                    data_file.c_str());
      }
      model = need(Model::create(config, backend(), tc.seed));
      std::printf("from scratch: %s with %lld parameters\n",
                  std::string(family_name(config.family)).c_str(),
                  static_cast<long long>(config.parameter_count()));
    } else {
      model = need(Model::load(model_dir, backend()));
      tok = need(Tokenizer::load(model_dir));
    }
    if (tok.vocab_size() > model->config().vocab_size) {
      fail(invalid_argument("the tokenizer has more tokens than the model's vocab_size"));
    }
    if (tc.seq_len > model->config().max_positions) {
      fail(invalid_argument(fmt::format("--seq-len {} is longer than the model's context {}",
                                        tc.seq_len, model->config().max_positions)));
    }
    // The chat template of the model trained from (or of the checkpoint resumed).
    const ChatTemplate chat_format = need(ChatTemplate::load(
        !resume_dir.empty() && from_scratch ? fs::path(resume_dir) : fs::path(model_dir), tok));
    // Its generation settings go with the trained model (checked now, not after the training).
    const fs::path generation_file = fs::path(model_dir) / "generation_config.json";
    std::optional<std::string> generation_config;
    if (fs::exists(generation_file)) {
      generation_config = need(read_text_file(generation_file, size_t{1} << 20));
      need(parse_generation_config(*generation_config, model->config().vocab_size));
    }
    auto save_generation_config = [&](const fs::path& dir) {
      if (!generation_config) return;
      if (Status s = write_file_atomically(dir / "generation_config.json", *generation_config);
          !s.ok()) {
        fail(s);
      }
    };
    const Dataset data = need(Dataset::from_jsonl(data_file, tok, {}, &chat_format));
    if (data.rows(tc.seq_len) < 1) {
      fail(invalid_argument(fmt::format("{}: {} tokens do not fill one row of {}", data_file,
                                        data.tokens(), tc.seq_len)));
    }
    // Data-parallel ranks: the executor names this one's rank and rank 0's address.
    const auto group_options = need(process_group_from_env());
    const int world = group_options ? group_options->world : 1;
    if (train_args.epochs) {  // the run's length from the data's
      const double rows_per_step = static_cast<double>(tc.batch_size * tc.grad_accum * world);
      tc.steps = std::max<int64_t>(
          1, static_cast<int64_t>(std::ceil(*train_args.epochs *
                                            static_cast<double>(data.rows(tc.seq_len)) /
                                            rows_per_step)));
    }
    // The default warm-up is at most a tenth of the run.
    if (!train_args.warmup) tc.warmup_steps = std::min(tc.warmup_steps, tc.steps / 10);
    if (Status s = tc.validate(); !s.ok()) fail(s);
    std::printf("data: %lld examples, %lld tokens, %lld rows of %lld\n",
                static_cast<long long>(data.examples()), static_cast<long long>(data.tokens()),
                static_cast<long long>(data.rows(tc.seq_len)), static_cast<long long>(tc.seq_len));
    std::optional<Dataset> validation;
    if (!validation_file.empty()) {
      validation.emplace(need(Dataset::from_jsonl(validation_file, tok, {}, &chat_format)));
      if (validation->rows(tc.seq_len) < 1) {
        fail(invalid_argument(fmt::format("{}: {} tokens do not fill one row of {}",
                                          validation_file, validation->tokens(), tc.seq_len)));
      }
    }
    std::unique_ptr<Collective> group = need(worker::data_parallel(
        group_options ? need(connect_process_group(*group_options)) : make_single_rank(), compute));
    const bool rank0 = group->rank() == 0;
    Trainer trainer(*model, data, tc, *group,
                    need(worker::make_step_engine(compute, *model, tc, *group)));
    std::printf("training on %s%s\n", backend().name(),
                compute.cuda ? " (weights, gradients and moments on the device)" : "");
    // The validation loss over at most 64 rows, on the trainer's engine, for an event.
    auto valid_loss = [&]() -> std::optional<double> {
      if (!validation) return std::nullopt;
      const double loss = trainer.validation_loss(*validation, 64);
      std::printf("validation loss %.4f\n", loss);
      return loss;
    };
    using executor::WorkerEvent;
    auto event = [](WorkerEvent::Kind kind, int64_t step) {
      WorkerEvent e;
      e.kind = kind;
      e.step = step;
      return e;
    };
    if (world > 1) {
      std::printf("rank %d of %d: joined the group; %lld rows per micro-batch, %lld per step\n",
                  group->rank(), world, static_cast<long long>(tc.batch_size),
                  static_cast<long long>(tc.batch_size * tc.grad_accum * world));
    }
    if (!resume_dir.empty()) {
      if (Status s = trainer.load_checkpoint(resume_dir); !s.ok()) fail(s);
      std::printf("resumed from %s at step %lld\n", resume_dir.c_str(),
                  static_cast<long long>(trainer.steps_done()));
    }
    // Only rank 0 writes checkpoints and the model (every rank holds the same weights).
    auto checkpoint = [&](int64_t step) {
      const fs::path dir = fs::path(out_dir) / fmt::format("checkpoint-{}", step);
      if (Status s = trainer.save_checkpoint(dir); !s.ok()) fail(s);
      if (Status s = tok.save(dir); !s.ok()) fail(s);
      if (Status s = chat_format.save(dir); !s.ok()) fail(s);
      save_generation_config(dir);
      WorkerEvent e = event(WorkerEvent::Kind::kCheckpoint, step);
      e.path = dir.string();
      e.valid_loss = valid_loss();
      emit(executor::encode_worker_event(e));
      return dir;
    };
    auto started = std::chrono::steady_clock::now();
    int64_t tokens = 0;
    while (trainer.steps_done() < tc.steps) {
      StepResult r;
      try {
        r = trainer.step(stop_requested);
      } catch (const CollectiveError& e) {
        fail(internal_error(e.what()));
      }
      tokens += r.tokens;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      const double rate = static_cast<double>(tokens) / std::max(secs, 1e-9);
      WorkerEvent step = event(WorkerEvent::Kind::kStep, r.step);
      step.steps = tc.steps;
      step.loss = r.loss;
      step.lr = r.lr;
      step.grad_norm = r.grad_norm;
      step.tokens_per_s = rate;
      emit(executor::encode_worker_event(step));
      if (r.step % std::max<int64_t>(1, log_every) == 0 || r.step == tc.steps || r.step == 1) {
        std::printf("step %lld/%lld  loss %.4f  lr %.2e  grad_norm %.3f  %.0f tokens/s\n",
                    static_cast<long long>(r.step), static_cast<long long>(tc.steps), r.loss, r.lr,
                    r.grad_norm, rate);
        std::fflush(stdout);
      }
      // The ranks stop after the step they agreed on; a single rank after this one.
      const bool stop = r.stop || (world == 1 && stop_requested);
      if (stop && r.step < tc.steps) {
        if (!rank0) {
          std::printf("stopped at step %lld with the group\n", static_cast<long long>(r.step));
          return 0;
        }
        const fs::path dir = checkpoint(r.step);
        std::printf("stopped at step %lld; resume with --resume %s\n",
                    static_cast<long long>(r.step), dir.c_str());
        WorkerEvent stopped = event(WorkerEvent::Kind::kStopped, r.step);
        stopped.path = dir.string();
        emit(executor::encode_worker_event(stopped));
        return 0;
      }
      if (rank0 && checkpoint_every > 0 && r.step % checkpoint_every == 0 && r.step < tc.steps) {
        checkpoint(r.step);
      }
    }
    if (!rank0) return 0;
    trainer.sync_model();
    if (Status s = model->save(out_dir); !s.ok()) fail(s);
    if (Status s = tok.save(out_dir); !s.ok()) fail(s);
    if (Status s = chat_format.save(out_dir); !s.ok()) fail(s);
    save_generation_config(out_dir);
    std::printf("saved %s\n", out_dir.c_str());
    const int64_t tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum * world;
    WorkerEvent done = event(WorkerEvent::Kind::kDone, trainer.steps_done());
    done.trained_tokens = trainer.steps_done() * tokens_per_step;
    done.path = out_dir;
    done.valid_loss = valid_loss();
    emit(executor::encode_worker_event(done));
  }
  return 0;
}
