// Validation of fine-tuning data: JSONL, one training example per line, in one of the shapes
// OpenAI's fine-tuning accepts ({"messages": [...]}, {"prompt", "completion"}) or raw
// {"text"}. Read from disk in chunks, so a file of any size is checked in constant memory.
#pragma once

#include <cstdint>
#include <filesystem>

#include "platform/base/status.h"

namespace mh::api {

inline constexpr size_t kMaxJsonlLine = 1 << 20;

// The number of examples, or invalid_argument naming the first bad line ("line 3: …").
Result<int64_t> validate_training_jsonl(const std::filesystem::path& file);
// Checks one line's example; the message says what is wrong (without the line number).
Status validate_training_example(std::string_view line);

}  // namespace mh::api
