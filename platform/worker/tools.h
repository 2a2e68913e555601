// mh-worker's engine tools, one file each beside the roles the daemon starts (train.cpp,
// serve.cpp): tokenize and detokenize (tokenize.cpp), logits and greedy (logits.cpp), generate,
// chat-template, inspect (which the daemon also runs to check uploaded models), init, merge
// (which the daemon runs for a merged export of an adapter) and train-tokenizer. Each adds its
// subcommand to the app and says what runs if it was given.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "platform/worker/device.h"

namespace mh::worker {

// The compute backend, made on first use: tokenizing or inspecting starts no GPU.
class LazyBackend {
 public:
  explicit LazyBackend(const DeviceOptions& device) : device_(device) {}
  engine::Backend& get();

 private:
  const DeviceOptions& device_;
  Compute compute_;
};

// A subcommand, and what runs (its exit code) once the command line named it.
struct Tool {
  CLI::App* command = nullptr;
  std::function<int()> run;
};

Tool add_tokenize(CLI::App& app);
Tool add_detokenize(CLI::App& app);
Tool add_logits(CLI::App& app, LazyBackend& backend);
Tool add_greedy(CLI::App& app, LazyBackend& backend);
Tool add_generate(CLI::App& app, LazyBackend& backend);
Tool add_chat_template(CLI::App& app);
Tool add_inspect(CLI::App& app);
Tool add_init(CLI::App& app, LazyBackend& backend);
Tool add_merge(CLI::App& app, LazyBackend& backend);
Tool add_train_tokenizer(CLI::App& app);

// Token ids as the tools take them ("[464, 3290]" or "464 3290"); a bad one fails the process.
std::vector<int32_t> parse_ids(const std::string& text);
// Token ids as "[464, 3290]" on a line.
void print_ids(const std::vector<int32_t>& ids);

}  // namespace mh::worker
