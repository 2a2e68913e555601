#include "platform/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "platform/engine/files.h"
#include "platform/engine/json.h"

namespace mh::engine {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

Status bad(std::string_view what) { return invalid_argument("safetensors: " + std::string(what)); }

std::string errno_text(std::string_view what, const std::filesystem::path& path) {
  return std::string(what) + " " + path.string() + ": " + std::strerror(errno);
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}
size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}
Result<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return d.dtype;
  }
  return bad("unknown dtype \"" + std::string(name) + "\"");
}

int64_t TensorEntry::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorEntry* Safetensors::find(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<Safetensors> Safetensors::parse(std::span<const uint8_t> buffer) {
  if (buffer.size() < 8)
    return bad("file of " + std::to_string(buffer.size()) +
               " bytes is too short for a header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | buffer[static_cast<size_t>(i)];
  if (header_len > kMaxSafetensorsHeader) {
    return bad("header length " + std::to_string(header_len) + " exceeds the limit of " +
               std::to_string(kMaxSafetensorsHeader) + " bytes");
  }
  if (header_len > buffer.size() - 8) {
    return bad("header length " + std::to_string(header_len) + " runs past the end of the file (" +
               std::to_string(buffer.size()) + " bytes)");
  }
  std::string_view header(reinterpret_cast<const char*>(buffer.data() + 8), header_len);
  if (header.empty() || header[0] != '{') return bad("the header must be a JSON object");
  auto parsed = parse_json(header, {.max_depth = 8, .max_bytes = kMaxSafetensorsHeader});
  if (!parsed.ok()) return bad("header: " + parsed.status().message());
  if (!parsed->is_object()) return bad("the header must be a JSON object");
  const std::span<const uint8_t> data = buffer.subspan(8 + header_len);

  Safetensors out;
  for (const auto& [name, v] : parsed->as_object()) {
    if (name == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ must be an object of strings");
      for (const auto& [k, m] : v.as_object()) {
        if (!m.is_string()) return bad("__metadata__ \"" + k + "\" must be a string");
        out.metadata_[k] = m.as_string();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\": ";
    if (!v.is_object()) return bad(where + "must be an object");
    for (const auto& [k, ignored] : v.as_object()) {
      if (k != "dtype" && k != "shape" && k != "data_offsets") {
        return bad(where + "unknown field \"" + k + "\"");
      }
    }
    TensorEntry t;
    t.name = name;
    auto dtype_text = json_string(v, "dtype");
    if (!dtype_text.ok()) return bad(where + dtype_text.status().message());
    auto dtype = parse_dtype(*dtype_text);
    if (!dtype.ok()) return bad(where + dtype.status().message());
    t.dtype = *dtype;
    const Json* shape = v.find("shape");
    if (shape == nullptr || !shape->is_array()) return bad(where + "\"shape\" must be an array");
    if (shape->as_array().size() > 8) return bad(where + "more than 8 dimensions");
    uint64_t bytes = dtype_size(t.dtype);
    for (const Json& d : shape->as_array()) {
      if (!d.is_int() || d.as_int() < 0) return bad(where + "dimensions must be integers >= 0");
      const auto dim = static_cast<uint64_t>(d.as_int());
      if (dim != 0 && bytes > (uint64_t{1} << 62) / dim) return bad(where + "byte size overflows");
      bytes *= dim;
      t.shape.push_back(d.as_int());
    }
    const Json* offsets = v.find("data_offsets");
    if (offsets == nullptr || !offsets->is_array() || offsets->as_array().size() != 2 ||
        !offsets->as_array()[0].is_int() || !offsets->as_array()[1].is_int()) {
      return bad(where + "\"data_offsets\" must be [begin, end]");
    }
    const int64_t begin = offsets->as_array()[0].as_int();
    const int64_t end = offsets->as_array()[1].as_int();
    if (begin < 0 || end < begin) return bad(where + "data_offsets must satisfy 0 <= begin <= end");
    if (static_cast<uint64_t>(end) > data.size()) {
      return bad(where + "data_offsets end " + std::to_string(end) + " is past the data (" +
                 std::to_string(data.size()) + " bytes)");
    }
    if (static_cast<uint64_t>(end - begin) != bytes) {
      return bad(where + "shape and dtype make " + std::to_string(bytes) +
                 " bytes but data_offsets span " + std::to_string(end - begin));
    }
    t.bytes = data.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
    out.tensors_.push_back(std::move(t));
  }
  // In offset order, each tensor must start where the previous ended, and the last end the data.
  std::sort(out.tensors_.begin(), out.tensors_.end(), [&](const auto& a, const auto& b) {
    return a.bytes.data() != b.bytes.data() ? a.bytes.data() < b.bytes.data()
                                            : a.bytes.size() < b.bytes.size();
  });
  const uint8_t* expected = data.data();
  for (const auto& t : out.tensors_) {
    if (t.bytes.data() != expected) {
      return bad("tensor \"" + t.name + "\" " +
                 (t.bytes.data() < expected ? "overlaps the one before it"
                                            : "leaves a gap after the one before it"));
    }
    expected += t.bytes.size();
  }
  if (expected != data.data() + data.size()) {
    return bad(std::to_string(data.data() + data.size() - expected) +
               " bytes after the last tensor belong to none");
  }
  return out;
}

Result<Safetensors> Safetensors::open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found(path.string() + ": no such file");
    return invalid_argument(errno_text("opening", path));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path.string() + " is not a regular file");
  }
  const auto size = static_cast<size_t>(st.st_size);
  void* map = size == 0 ? nullptr : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return internal_error(errno_text("mapping", path));
  std::shared_ptr<void> mapping(map, [size](void* p) {
    if (p != nullptr) ::munmap(p, size);
  });
  auto parsed = parse(std::span<const uint8_t>(static_cast<const uint8_t*>(map), size));
  if (!parsed.ok()) return invalid_argument(path.string() + ": " + parsed.status().message());
  parsed->mapping_ = std::move(mapping);
  return parsed;
}

Result<std::vector<float>> to_float(const TensorEntry& e) {
  const auto n = static_cast<size_t>(e.elements());
  std::vector<float> out(n);
  const uint8_t* p = e.bytes.data();
  switch (e.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), p, n * 4);
      return out;
    case DType::kBF16:
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = e.dtype == DType::kBF16 ? bf16_to_float(h) : f16_to_float(h);
      }
      return out;
    default:
      return invalid_argument("tensor \"" + e.name + "\" is " + std::string(dtype_name(e.dtype)) +
                              "; weights must be F32, F16 or BF16");
  }
}

Status write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, k);
      header += ':';
      append_json_string(header, v);
    }
    header += "},";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.name == "__metadata__") return invalid_argument("a tensor may not be named __metadata__");
    uint64_t expect = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) return invalid_argument("tensor \"" + t.name + "\" has a negative dimension");
      expect *= static_cast<uint64_t>(d);
    }
    if (expect != t.bytes.size()) {
      return invalid_argument("tensor \"" + t.name + "\": shape and dtype make " +
                              std::to_string(expect) + " bytes, given " +
                              std::to_string(t.bytes.size()));
    }
    if (i > 0 && tensors[i - 1].name == t.name) {
      return invalid_argument("tensor \"" + t.name + "\" is given twice");
    }
    if (i > 0) header += ',';
    append_json_string(header, t.name);
    header += ":{\"dtype\":\"" + std::string(dtype_name(t.dtype)) + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d > 0) header += ',';
      header += std::to_string(t.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += '}';
  while (header.size() % 8 != 0) header += ' ';

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  std::vector<std::span<const uint8_t>> pieces;
  pieces.emplace_back(len, 8);
  pieces.emplace_back(reinterpret_cast<const uint8_t*>(header.data()), header.size());
  for (const auto& t : tensors) pieces.push_back(t.bytes);
  return write_file_atomically(path, pieces);
}

}  // namespace mh::engine
