// The files' wire format, OpenAI's shapes: the "file" object, the deletion answer, the purposes
// an upload may name, and what a multipart upload may carry besides the file's bytes.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <string_view>

#include "platform/api/files/file.h"
#include "platform/base/status.h"

namespace mh::api {

// What a multipart upload may carry besides the file's own bytes (boundaries, part headers, the
// purpose field): the HTTP body limit is the per-file limit plus this, and a declared length
// beyond the remaining quota plus this is refused before the body is read.
constexpr uint64_t kMultipartAllowance = 64 * 1024;
// The longest file name kept (bytes).
constexpr size_t kMaxFilename = 255;

// OK for a purpose the platform takes ("fine-tune", "model"); invalid_argument naming
// `purpose` otherwise.
Status check_purpose(std::string_view purpose);

boost::json::object file_json(const FileRecord& file);
boost::json::object file_deleted_json(const FileRecord& file);

}  // namespace mh::api
