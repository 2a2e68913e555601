// A tenant's file, as the files service, its store and its protocol share it.
#pragma once

#include <cstdint>
#include <string>

namespace mh::api {

struct FileRecord {
  std::string id;  // "file-…"
  std::string tenant;
  std::string purpose;
  std::string filename;
  int64_t bytes = 0;
  std::string sha256;
  int64_t created_at = 0;
};

}  // namespace mh::api
