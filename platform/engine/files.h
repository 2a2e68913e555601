// Files as the engine reads and writes them: bounded reads, and writes that either land whole
// or not at all (a temporary name, fsync, rename, and an fsync of the directory), so a crash
// mid-save never leaves a torn model, tokenizer or checkpoint behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh::engine {

// A whole file as text (at most `max_bytes`; larger files are refused, not truncated).
Result<std::string> read_text_file(const std::filesystem::path& path, size_t max_bytes);

// Writes the concatenation of `pieces` to `path` atomically. A full disk is resource_exhausted.
Status write_file_atomically(const std::filesystem::path& path,
                             std::span<const std::span<const uint8_t>> pieces);
Status write_file_atomically(const std::filesystem::path& path, std::string_view text);

// Calls fn(line_number, line) for each line of `text` (numbered from 1, "\n" or "\r\n" endings,
// the line without its ending); stops at the first error fn returns and returns it.
Status for_each_line(std::string_view text,
                     const std::function<Status(int64_t, std::string_view)>& fn);

}  // namespace mh::engine
