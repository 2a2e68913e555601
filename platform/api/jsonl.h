// Validation of fine-tuning data: JSONL, one training example per line, in one of the shapes
// OpenAI's fine-tuning accepts ({"messages": [...]}, {"prompt", "completion"}, or for DPO
// {"input", "preferred_output", "non_preferred_output"}) or raw {"text"}. Read from disk in
// chunks, so a file of any size is checked in constant memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "platform/base/status.h"

namespace mh::api {

inline constexpr size_t kMaxJsonlLine = 1 << 20;

// What a line is: an example for supervised training, or a preference pair for DPO
// ({"input": {"messages"}, "preferred_output": [message], "non_preferred_output": [message]}).
enum class ExampleKind { kSupervised, kPreference };
std::string_view kind_name(ExampleKind kind);  // "supervised", "preference"

// The number of examples, or invalid_argument naming the first bad line ("line 3: …"). Every
// line of a file is of one kind.
Result<int64_t> validate_training_jsonl(const std::filesystem::path& file);
// Checks one line's example; the message says what is wrong (without the line number).
Result<ExampleKind> validate_training_example(std::string_view line);
// The kind of a validated file's examples (its first line's).
Result<ExampleKind> training_file_kind(const std::filesystem::path& file);

}  // namespace mh::api
