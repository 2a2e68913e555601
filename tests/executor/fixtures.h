// What the executor's tests share: an event sink, and a tiny model with data to train on.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "platform/executor/worker_process.h"
#include "tests/support/harness.h"

namespace mh::executor {

namespace fs = std::filesystem;

// Lines from a worker's channel, collected across the reader thread.
struct Events {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  size_t size() {
    std::lock_guard lock(mutex);
    return lines.size();
  }
  size_t count(std::string_view type) {
    std::lock_guard lock(mutex);
    const std::string needle = "\"type\":\"" + std::string(type) + "\"";
    return static_cast<size_t>(std::count_if(lines.begin(), lines.end(), [&](const auto& l) {
      return l.find(needle) != std::string::npos;
    }));
  }
  // The newest event of this type ("" if none).
  std::string last(std::string_view type) {
    std::lock_guard lock(mutex);
    const std::string needle = "\"type\":\"" + std::string(type) + "\"";
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
      if (it->find(needle) != std::string::npos) return *it;
    }
    return {};
  }
};

// A field of an event line, as text: a string's contents, or a number's digits.
inline std::string event_field(const std::string& line, const std::string& name) {
  size_t at = line.find("\"" + name + "\":");
  if (at == std::string::npos) return {};
  at += name.size() + 3;
  if (at < line.size() && line[at] == '"')
    return line.substr(at + 1, line.find('"', at + 1) - at - 1);
  return line.substr(at, line.find_first_of(",}", at) - at);
}

// A tiny llama with the golden tokenizer and a JSONL file to train on, in `dir`.
inline void make_training_inputs(const fs::path& dir) {
  fs::create_directories(dir / "tok");
  fs::copy_file(test::source_dir() / "tests/engine/golden/tokenizer/tokenizer.json",
                dir / "tok" / "tokenizer.json");
  std::ofstream(dir / "config.json")
      << R"({"model_type":"llama","vocab_size":512,"hidden_size":16,"intermediate_size":32,
            "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":32})";
  std::ofstream data(dir / "data.jsonl");
  for (int i = 0; i < 40; ++i) {
    data << R"({"text": "The quick brown fox )" << i << R"( jumps over the lazy dog."})"
         << "\n";
  }
  auto r = test::run_process({test::mhworker_path().string(), "init", "--config",
                              (dir / "config.json").string(), "--tokenizer", (dir / "tok").string(),
                              "--out", (dir / "model").string()});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
}

inline WorkerSpec train_spec(const fs::path& dir, const char* steps, const char* name) {
  WorkerSpec spec;
  spec.argv = {test::mhworker_path().string(),
               "train",
               "--model",
               (dir / "model").string(),
               "--data",
               (dir / "data.jsonl").string(),
               "--out",
               (dir / name / "out").string(),
               "--steps",
               steps,
               "--seq-len",
               "16",
               "--batch-size",
               "2",
               "--log-every",
               "1"};
  spec.work_dir = dir / name;
  spec.cpu_threads = 1;
  return spec;
}

}  // namespace mh::executor
