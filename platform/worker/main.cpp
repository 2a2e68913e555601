// mh-worker: runs the engine on a model directory in Hugging Face layout (config.json,
// model.safetensors, tokenizer.json). The platform starts it for training ranks and inference
// replicas (train.cpp, serve.cpp; their arguments are the worker contract's); on its own it
// trains, generates, prints logits and tokenizes (tools.h: a file each).
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "platform/executor/worker_contract.h"
#include "platform/worker/cli.h"
#include "platform/worker/contain.h"
#include "platform/worker/device.h"
#include "platform/worker/sandbox_check.h"
#include "platform/worker/serve.h"
#include "platform/worker/tools.h"
#include "platform/worker/train.h"

using namespace mh;

namespace mh::worker {

engine::Backend& LazyBackend::get() {
  if (!compute_.backend) compute_ = need(make_compute(device_));
  return *compute_.backend;
}

}  // namespace mh::worker

int main(int argc, char** argv) {
  // Another program's arguments follow contain's "--": they are not ours to parse.
  if (argc >= 2 && std::string_view(argv[1]) == "contain") return worker::contain(argc, argv);
  CLI::App app{"mh-worker: the Macrohard engine on a Hugging Face model directory"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads after the subcommand too
  // The executor passes the thread budget in MH_THREADS; --threads overrides it.
  int threads = std::getenv("MH_THREADS") ? std::atoi(std::getenv("MH_THREADS")) : 0;
  app.add_option("--threads", threads, "CPU threads (0: one per core)");
  worker::DeviceOptions device;
  app.add_option("--device", device.device,
                 "auto (CUDA when this process sees a GPU), cpu or cuda");
  app.add_option("--precision", device.precision, "fp32, or bf16 GEMMs on CUDA");

  worker::LazyBackend backend(device);
  const std::vector<worker::Tool> tools = {
      worker::add_tokenize(app),          worker::add_detokenize(app),
      worker::add_logits(app, backend),   worker::add_greedy(app, backend),
      worker::add_generate(app, backend), worker::add_chat_template(app),
      worker::add_inspect(app),           worker::add_init(app, backend),
      worker::add_merge(app, backend),    worker::add_train_tokenizer(app)};

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
    if (Status s = executor::check_contract(contract); !s.ok()) worker::fail(s);
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
    so.adapter_roots = serve_args.adapter_roots;
    so.max_adapters = serve_args.max_adapters;
    so.prefix_cache_bytes = serve_args.prefix_cache_mb << 20;
    if (const char* token = std::getenv("MH_REPLICA_TOKEN")) so.token = token;
    so.compute = device;
    return worker::serve(so);
  }
  if (train->parsed()) return worker::train(train_args, device);
  for (const worker::Tool& tool : tools) {
    if (tool.command->parsed()) return tool.run();
  }
  return 0;
}
