#include "platform/executor/worker_contract.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <boost/json.hpp>
#include <cmath>
#include <limits>

namespace mh::executor {

namespace json = boost::json;

namespace {

class Fields {
 public:
  explicit Fields(const json::object& o) : o_(o) {}

  Result<int64_t> count(std::string_view key, int64_t max = std::numeric_limits<int64_t>::max()) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    int64_t n = -1;
    if (v->is_int64()) {
      n = v->as_int64();
    } else if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(max)) {
      n = static_cast<int64_t>(v->as_uint64());
    }
    if (n < 0 || n > max) {
      return invalid_argument(
          "worker event: \"" + std::string(key) + "\" must be an integer from 0 to " +
          std::to_string(max));
    }
    return n;
  }
  Result<double> number(std::string_view key) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    if (!v->is_number() || !std::isfinite(v->to_number<double>())) {
      return invalid_argument("worker event: \"" + std::string(key) + "\" must be a finite number");
    }
    return v->to_number<double>();
  }
  Result<std::optional<double>> optional_number(std::string_view key) {
    if (o_.if_contains(key) == nullptr) return std::optional<double>();
    MH_ASSIGN_OR_RETURN(double x, number(key));
    return std::optional<double>(x);
  }
  Result<std::string> text(std::string_view key, size_t max_bytes) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    if (!v->is_string() || v->as_string().size() > max_bytes) {
      return invalid_argument("worker event: \"" + std::string(key) + "\" must be a string of at most " +
                              std::to_string(max_bytes) + " bytes");
    }
    return std::string(v->as_string());
  }

 private:
  static Status missing(std::string_view key) {
    return invalid_argument("worker event: \"" + std::string(key) + "\" is missing");
  }
  const json::object& o_;
};

constexpr size_t kMaxPath = 4096;

// A number as JSON: a value that is not finite is null, which the reader refuses.
json::value number_value(double x) { return std::isfinite(x) ? json::value(x) : json::value(); }

// One command-line option of a role: its flag, its help, and what a value must be.
struct Flag {
  const char* name;
  const char* help;
  bool required = false;
  const CLI::Validator* check = nullptr;
};

const CLI::Range kEpochs(0.001, 1000.0);
const CLI::Range kMaxBatch(1, 4096);
const CLI::Range kLoraRank(1, 1024);
const CLI::Range kMaxAdapters(1, 1024);
const CLI::Range kPrefixCacheMb(0, 1 << 20);

// Each role's options, written once: `visit(flag, field)` for each, in argv order. Args is the
// role's struct, const when it is being written out.
template <typename Args, typename Visit>
void train_flags(Args& a, Visit&& visit) {
  visit(Flag{"--model", "model directory to start from", true}, a.model);
  visit(Flag{"--data", "JSONL training file", true}, a.data);
  visit(Flag{"--out", "where the trained model and checkpoints go", true}, a.out);
  visit(Flag{"--validation-data",
             "JSONL file whose loss is measured at each checkpoint and at the end"},
        a.validation_data);
  visit(Flag{"--resume", "checkpoint directory to continue from"}, a.resume);
  visit(Flag{"--epochs", "passes over the data (sets --steps from the data's size)", false,
             &kEpochs},
        a.epochs);
  visit(Flag{"--steps", "optimizer steps", false, &CLI::PositiveNumber}, a.steps);
  visit(Flag{"--batch-size", "rows per micro-batch", false, &CLI::PositiveNumber}, a.batch_size);
  visit(Flag{"--seq-len", "tokens per row", false, &CLI::PositiveNumber}, a.seq_len);
  visit(Flag{"--grad-accum", "micro-batches per step", false, &CLI::PositiveNumber},
        a.grad_accum);
  visit(Flag{"--warmup", "warm-up steps"}, a.warmup);
  visit(Flag{"--lr", "peak learning rate"}, a.lr);
  visit(Flag{"--min-lr-ratio", "final learning rate / peak"}, a.min_lr_ratio);
  visit(Flag{"--weight-decay", "AdamW weight decay"}, a.weight_decay);
  visit(Flag{"--clip", "gradient norm limit (0: none)"}, a.clip);
  visit(Flag{"--seed", "data order seed"}, a.seed);
  visit(Flag{"--checkpoint-every", "steps between checkpoints (0: none)"}, a.checkpoint_every);
  visit(Flag{"--log-every", "steps between progress lines"}, a.log_every);
  visit(Flag{"--device", "auto (CUDA when this process sees a GPU), cpu or cuda"}, a.device);
  visit(Flag{"--precision", "fp32, or bf16 GEMMs on CUDA"}, a.precision);
  visit(Flag{"--method", "supervised (the default), or dpo: train on preference pairs"},
        a.method);
  visit(Flag{"--dpo-beta", "DPO's beta: how strongly the policy is held to the reference"},
        a.dpo_beta);
  visit(Flag{"--lora-rank", "train LoRA adapters of this rank on the frozen base", false,
             &kLoraRank},
        a.lora_rank);
  visit(Flag{"--lora-alpha", "LoRA scale numerator (the scale is alpha / rank)"}, a.lora_alpha);
  visit(Flag{"--lora-dropout", "LoRA dropout probability, in [0, 1)"}, a.lora_dropout);
  visit(Flag{"--lora-targets", "modules to adapt, comma-separated, or all-linear"},
        a.lora_targets);
  visit(Flag{"--lora-base", "the base model's name, written into adapter_config.json"},
        a.lora_base);
}

template <typename Args, typename Visit>
void serve_flags(Args& a, Visit&& visit) {
  visit(Flag{"--model", "model directory", true}, a.model);
  visit(Flag{"--name", "the model's name in responses"}, a.name);
  visit(Flag{"--host", "address to listen on"}, a.host);
  visit(Flag{"--port", "port (0: any free one)"}, a.port);
  visit(Flag{"--max-batch", "sequences decoding at once", false, &kMaxBatch}, a.max_batch);
  visit(Flag{"--device", "auto (CUDA when this process sees a GPU), cpu or cuda"}, a.device);
  visit(Flag{"--precision", "fp32, or bf16 GEMMs on CUDA"}, a.precision);
  visit(Flag{"--adapter-root", "a directory whose LoRA adapters requests may name (repeated)"},
        a.adapter_roots);
  visit(Flag{"--max-adapters", "LoRA adapters kept loaded at once", false, &kMaxAdapters},
        a.max_adapters);
  visit(Flag{"--prefix-cache-mb", "MiB of prompts' KV caches kept for reuse (0: none)", false,
             &kPrefixCacheMb},
        a.prefix_cache_mb);
}

// Writing a field out: a string when required or not empty, an optional when set, a number
// always. Floating point as the shortest text that reads back exactly.
template <typename T>
std::string text_of(const T& value) {
  if constexpr (std::is_floating_point_v<T>) {
    return fmt::format("{}", value);
  } else {
    return std::to_string(value);
  }
}

struct Writer {
  std::vector<std::string>& argv;

  void operator()(const Flag& flag, const std::string& value) const {
    if (!flag.required && value.empty()) return;
    argv.insert(argv.end(), {flag.name, value});
  }
  template <typename T>
  void operator()(const Flag& flag, const std::optional<T>& value) const {
    if (value) argv.insert(argv.end(), {flag.name, text_of(*value)});
  }
  void operator()(const Flag& flag, const std::vector<std::string>& values) const {
    for (const std::string& v : values) argv.insert(argv.end(), {flag.name, v});
  }
  template <typename T>
  void operator()(const Flag& flag, const T& value) const {
    argv.insert(argv.end(), {flag.name, text_of(value)});
  }
};

// Reading a field back: an optional is set only when its flag is given.
struct Reader {
  CLI::App* app;

  template <typename T>
  void operator()(const Flag& flag, std::optional<T>& field) const {
    finish(flag, app->add_option_function<T>(
                     flag.name, [&field](const T& v) { field = v; }, flag.help));
  }
  template <typename T>
  void operator()(const Flag& flag, T& field) const {
    finish(flag, app->add_option(flag.name, field, flag.help));
  }
  static void finish(const Flag& flag, CLI::Option* option) {
    if (flag.required) option->required();
    if (flag.check != nullptr) option->check(*flag.check);
  }
};

std::vector<std::string> role_argv(const char* role) {
  return {role, "--contract", std::to_string(kWorkerContract)};
}

CLI::App* role_command(CLI::App& app, const char* role, const char* help, int& contract) {
  CLI::App* command = app.add_subcommand(role, help);
  command->add_option("--contract", contract, "the worker contract the caller speaks");
  return command;
}

}  // namespace

std::vector<std::string> to_argv(const TrainArgs& args) {
  std::vector<std::string> argv = role_argv("train");
  train_flags(args, Writer{argv});
  return argv;
}

std::vector<std::string> to_argv(const ServeArgs& args) {
  std::vector<std::string> argv = role_argv("serve");
  serve_flags(args, Writer{argv});
  return argv;
}

CLI::App* add_train_command(CLI::App& app, TrainArgs& args, int& contract) {
  CLI::App* train =
      role_command(app, "train", "train on a JSONL file, writing checkpoints", contract);
  train_flags(args, Reader{train});
  return train;
}

CLI::App* add_serve_command(CLI::App& app, ServeArgs& args, int& contract) {
  CLI::App* serve =
      role_command(app, "serve", "answer OpenAI-style completions over HTTP", contract);
  serve_flags(args, Reader{serve});
  return serve;
}

Status check_contract(int contract) {
  if (contract == kWorkerContract) return {};
  return failed_precondition(fmt::format(
      "this mh-worker speaks worker contract {}, and was started by a daemon of contract {}: "
      "install the daemon's mh-worker where this one runs",
      kWorkerContract, contract));
}

std::string encode_worker_event(const WorkerEvent& e) {
  json::object o;
  switch (e.kind) {
    case WorkerEvent::Kind::kStep:
      o = {{"type", "step"}, {"step", e.step}, {"steps", e.steps}, {"loss", number_value(e.loss)},
           {"lr", number_value(e.lr)}, {"grad_norm", number_value(e.grad_norm)},
           {"tokens_per_s", number_value(e.tokens_per_s)}};
      if (e.token_accuracy) o["token_accuracy"] = number_value(*e.token_accuracy);
      if (e.reward_margin) o["reward_margin"] = number_value(*e.reward_margin);
      if (e.reward_accuracy) o["reward_accuracy"] = number_value(*e.reward_accuracy);
      break;
    case WorkerEvent::Kind::kCheckpoint:
      o = {{"type", "checkpoint"}, {"step", e.step}, {"path", e.path}};
      if (e.valid_loss) o["valid_loss"] = number_value(*e.valid_loss);
      break;
    case WorkerEvent::Kind::kStopped:
      o = {{"type", "stopped"}, {"step", e.step}, {"checkpoint", e.path}};
      break;
    case WorkerEvent::Kind::kDone:
      o = {{"type", "done"},
           {"step", e.step},
           {"trained_tokens", e.trained_tokens.value_or(0)},
           {"path", e.path}};
      if (e.valid_loss) o["valid_loss"] = number_value(*e.valid_loss);
      break;
    case WorkerEvent::Kind::kReady:
      o = {{"type", "ready"}, {"port", e.port}};
      break;
    case WorkerEvent::Kind::kUsage:
      o = {{"type", "usage"},
           {"tenant", e.tenant.empty() ? json::value() : json::value(e.tenant)},
           {"prompt_tokens", e.prompt_tokens},
           {"completion_tokens", e.completion_tokens}};
      break;
    case WorkerEvent::Kind::kStats:
      o = e.stats;
      o["type"] = "stats";
      break;
  }
  return json::serialize(o);
}

Result<WorkerEvent> parse_worker_event(std::string_view line) {
  if (line.size() > kMaxEventLine) {
    return invalid_argument("worker event: a line of " + std::to_string(line.size()) +
                            " bytes is longer than " + std::to_string(kMaxEventLine));
  }
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return invalid_argument("worker event: not a JSON object");
  const json::object& o = v.as_object();
  Fields f(o);
  MH_ASSIGN_OR_RETURN(const std::string type, f.text("type", 32));
  WorkerEvent e;
  if (type == "step") {
    e.kind = WorkerEvent::Kind::kStep;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.steps, f.count("steps"));
    MH_ASSIGN_OR_RETURN(e.loss, f.number("loss"));
    MH_ASSIGN_OR_RETURN(e.lr, f.number("lr"));
    MH_ASSIGN_OR_RETURN(auto grad_norm, f.optional_number("grad_norm"));
    MH_ASSIGN_OR_RETURN(auto tokens_per_s, f.optional_number("tokens_per_s"));
    e.grad_norm = grad_norm.value_or(0);
    e.tokens_per_s = tokens_per_s.value_or(0);
    MH_ASSIGN_OR_RETURN(e.token_accuracy, f.optional_number("token_accuracy"));
    MH_ASSIGN_OR_RETURN(e.reward_margin, f.optional_number("reward_margin"));
    MH_ASSIGN_OR_RETURN(e.reward_accuracy, f.optional_number("reward_accuracy"));
  } else if (type == "checkpoint") {
    e.kind = WorkerEvent::Kind::kCheckpoint;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("path", kMaxPath));
    MH_ASSIGN_OR_RETURN(e.valid_loss, f.optional_number("valid_loss"));
  } else if (type == "stopped") {
    e.kind = WorkerEvent::Kind::kStopped;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("checkpoint", kMaxPath));
  } else if (type == "done") {
    e.kind = WorkerEvent::Kind::kDone;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("path", kMaxPath));
    MH_ASSIGN_OR_RETURN(e.trained_tokens, f.count("trained_tokens"));
    MH_ASSIGN_OR_RETURN(e.valid_loss, f.optional_number("valid_loss"));
  } else if (type == "ready") {
    e.kind = WorkerEvent::Kind::kReady;
    MH_ASSIGN_OR_RETURN(e.port, f.count("port", 65535));
    if (e.port == 0) return invalid_argument("worker event: \"port\" must be from 1 to 65535");
  } else if (type == "usage") {
    e.kind = WorkerEvent::Kind::kUsage;
    if (o.if_contains("tenant") != nullptr && !o.at("tenant").is_null()) {
      MH_ASSIGN_OR_RETURN(e.tenant, f.text("tenant", 200));
    }
    MH_ASSIGN_OR_RETURN(e.prompt_tokens, f.count("prompt_tokens"));
    MH_ASSIGN_OR_RETURN(e.completion_tokens, f.count("completion_tokens"));
  } else if (type == "stats") {
    e.kind = WorkerEvent::Kind::kStats;
    e.stats = o;
    e.stats.erase("type");
  } else {
    return invalid_argument("worker event: unknown type \"" + type + "\"");
  }
  return e;
}

}  // namespace mh::executor
