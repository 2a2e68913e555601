// The contract between the daemon and mh-worker, written once: what each worker role is told
// (typed arguments that become its argv, and are parsed back from it by the same definitions),
// and what it says back (typed events, one JSON object per line on its events channel, encoded
// and decoded here). Both sides are built from this file; a worker started by a daemon of
// another contract version refuses to run, naming both (`--contract`).
//
// Besides its argv a worker is given, by the executor: MH_EVENTS_FD (or MH_EVENTS_FILE on a
// Slurm node), its events channel; MH_THREADS, its CPU thread budget; CUDA_VISIBLE_DEVICES; a
// rank of a group MH_RANK, MH_WORLD_SIZE and MH_RENDEZVOUS (worker_group.h); a replica
// MH_REPLICA_TOKEN, the secret every request to it bears, each request's tenant in an
// X-Mh-Tenant header, and the LoRA adapter it decodes through (a directory under one of the
// replica's --adapter-root) in X-Mh-Adapter.
//
// Events. A worker parses tenant-supplied files, so its output is input: a line is taken only
// whole and well-typed, and anything else is refused with what is wrong, never thrown on the
// daemon's reader thread.
//
//   {"type":"step","step":N,"steps":N,"loss":X,"lr":X,"grad_norm":X,"tokens_per_s":X,
//    "token_accuracy":X?,"reward_margin":X?,"reward_accuracy":X?}   (the last two: DPO)
//   {"type":"checkpoint","step":N,"path":"…","valid_loss":X?}        a checkpoint written
//   {"type":"stopped","step":N,"checkpoint":"…"}                     stopped, resumable there
//   {"type":"done","step":N,"trained_tokens":N,"path":"…","valid_loss":X?}   the model written
//   {"type":"ready","port":N}                                       a replica serves on port N
//   {"type":"usage","tenant":"…"|null,"prompt_tokens":N,"completion_tokens":N}   a request's
//   {"type":"stats",...}                                            a replica's counters
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"

namespace CLI {
class App;
}

namespace mh::executor {

// The version of this contract; a change to an argument or event that an older peer would
// misread raises it.
inline constexpr int kWorkerContract = 2;

// `mh-worker train`: one rank of a fine-tuning run. Unset tunables take the engine's defaults.
struct TrainArgs {
  std::string model;            // the model directory to start from
  std::string data;             // the JSONL training file
  std::string out;              // where checkpoints and the trained model go
  std::string validation_data;  // "": none
  std::string resume;           // a checkpoint directory to continue from; "": none
  std::optional<double> epochs;  // the run's length from the data's (else `steps`)
  std::optional<int64_t> steps, batch_size, seq_len, grad_accum, warmup;
  std::optional<double> lr, min_lr_ratio, weight_decay, clip;
  std::optional<uint64_t> seed;
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0: none
  int64_t log_every = 10;        // steps between progress lines
  std::string device;            // "auto" (""), "cpu" or "cuda"
  std::string precision;         // "fp32" (""), or "bf16"
  // The objective: "" (supervised: the data's examples imitated) or "dpo" (the data's
  // preference pairs ranked, with this beta).
  std::string method;
  std::optional<double> dpo_beta;
  // LoRA: with a rank, adapters are trained on the frozen base and the result is the adapter
  // (PEFT's files). Targets: comma-separated module names, or "all-linear" ("" too).
  std::optional<int64_t> lora_rank;
  std::optional<double> lora_alpha, lora_dropout;
  std::string lora_targets;
  std::string lora_base;  // the base's name in adapter_config.json

  bool operator==(const TrainArgs&) const = default;
};

// `mh-worker serve`: an inference replica.
struct ServeArgs {
  std::string model;         // the model directory
  std::string name;          // the model's name in responses; "": the directory's
  std::string host = "127.0.0.1";
  uint16_t port = 0;         // 0: any free port (reported by the ready event)
  int64_t max_batch = 64;    // sequences decoding at once
  std::string device;
  std::string precision;
  // LoRA adapters a request may name (X-Mh-Adapter: a directory under one of these roots),
  // loaded on demand and kept, the most recently used, up to max_adapters.
  std::vector<std::string> adapter_roots;
  int64_t max_adapters = 8;
  // Prompts' KV caches kept for later prompts that begin alike, in MiB (0: none).
  int64_t prefix_cache_mb = 256;

  bool operator==(const ServeArgs&) const = default;
};

// The arguments after the program's path: {"train", "--contract", "1", "--model", …}.
std::vector<std::string> to_argv(const TrainArgs& args);
std::vector<std::string> to_argv(const ServeArgs& args);

// The role's subcommand on `app`, whose parse fills `args` (mh-worker's own command line, and
// the tests' round trip). `contract` receives the version the caller asked for.
CLI::App* add_train_command(CLI::App& app, TrainArgs& args, int& contract);
CLI::App* add_serve_command(CLI::App& app, ServeArgs& args, int& contract);

// Refuses a contract version this build does not speak.
Status check_contract(int contract);

struct WorkerEvent {
  enum class Kind { kStep, kCheckpoint, kStopped, kDone, kReady, kUsage, kStats };
  Kind kind = Kind::kStep;
  int64_t step = 0, steps = 0;             // step, checkpoint, stopped, done
  double loss = 0, lr = 0;                 // step
  double grad_norm = 0, tokens_per_s = 0;  // step
  std::optional<double> token_accuracy;                  // a supervised step, where counted
  std::optional<double> reward_margin, reward_accuracy;  // a DPO step
  std::optional<double> valid_loss;        // checkpoint, done
  std::optional<int64_t> trained_tokens;   // done
  std::string path;                        // checkpoint, done; stopped: its checkpoint
  int64_t port = 0;                        // ready
  std::string tenant;                      // usage ("" when the request named none)
  int64_t prompt_tokens = 0, completion_tokens = 0;  // usage
  boost::json::object stats;               // stats: every field but "type"
};

// The event as one line (no newline), as parse_worker_event reads it back.
std::string encode_worker_event(const WorkerEvent& event);

// The longest line a worker may write; longer ones are refused unread.
inline constexpr size_t kMaxEventLine = 64 * 1024;

// The event on one line, or invalid_argument naming what is wrong with it.
Result<WorkerEvent> parse_worker_event(std::string_view line);

}  // namespace mh::executor
