#include "platform/mhctl/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace mh::cli {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[unit]);
}

void add_progress_option(CLI::App* cmd, std::string& mode) {
  cmd->add_option("--progress", mode, "progress bar on stderr: auto (on a terminal), always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
}

bool progress_wanted(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  return ::isatty(STDERR_FILENO) == 1;
}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fputc('\n', stderr);
}

macrohard::Progress ProgressBar::callback() {
  if (!enabled_) return {};
  return [this](uint64_t done, uint64_t total) {
    draw(done, total);
    return true;
  };
}

void ProgressBar::draw(uint64_t done, uint64_t total) {
  const auto now = Clock::now();
  const bool finished = total > 0 && done >= total;
  if (drawn_ && !finished && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  std::string line = label_;
  if (total > 0) {
    constexpr int kWidth = 24;
    const double fraction = static_cast<double>(done) / static_cast<double>(total);
    const int filled = static_cast<int>(fraction * kWidth);
    line += fmt::format(" {:3.0f}% [{}{}]  {} / {}", fraction * 100, std::string(filled, '#'),
                        std::string(kWidth - filled, '.'), human_bytes(done), human_bytes(total));
    if (rate > 0 && !finished) {
      line += fmt::format("  ETA {:.0f}s", static_cast<double>(total - done) / rate);
    }
  } else {
    line += "  " + human_bytes(done);
  }
  line += fmt::format("  {}/s", human_bytes(rate));
  std::fprintf(stderr, "\r%-100s", line.c_str());
  std::fflush(stderr);
}

}  // namespace mh::cli
