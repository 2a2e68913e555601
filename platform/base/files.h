// Small files done carefully: bounded reads, exclusive creation with a mode, atomic replacement.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh {

// The whole file, refusing one larger than max_bytes (a license or key file is small; a
// multi-gigabyte "license" is an error, not something to load).
Result<std::string> read_small_file(const std::filesystem::path& path,
                                    uint64_t max_bytes = 1 << 20);
// Creates the file with `mode`; conflict if it exists (never overwrites).
Status write_new_file(const std::filesystem::path& path, std::string_view content, mode_t mode);
// Writes to a temporary name, fsyncs, renames over `path`.
Status write_file_atomically(const std::filesystem::path& path, std::string_view content,
                             mode_t mode);

}  // namespace mh
