// Progress on a terminal for mhctl's transfers: a one-line bar on stderr, and the --progress
// option that says when to draw it.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <string>

#include <macrohard/macrohard.hpp>

namespace mh::cli {

// 1536 -> "1.5 KiB".
std::string human_bytes(double bytes);

// Adds --progress auto|always|never (default auto: on a terminal) to `cmd`, into `mode`.
void add_progress_option(CLI::App* cmd, std::string& mode);
bool progress_wanted(const std::string& mode);

// A one-line progress bar on stderr, redrawn at most ten times a second:
//   model.safetensors  42% [##########..............]  45.2 MiB / 107.0 MiB  38.1 MiB/s  ETA 2s
class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  macrohard::Progress callback();

 private:
  using Clock = std::chrono::steady_clock;
  void draw(uint64_t done, uint64_t total);

  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
};

}  // namespace mh::cli
