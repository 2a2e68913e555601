// safetensors, the weights format of Hugging Face: an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the bytes. Files are mapped, not
// read, and the header is checked completely before any tensor is handed out: known dtypes,
// shapes whose byte size matches the range (no overflow), ranges inside the data, in order,
// without overlap or gap (as the reference implementation requires).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/tensor.h"

namespace mh::engine {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

std::string_view dtype_name(DType dtype);  // "F32"
size_t dtype_size(DType dtype);            // bytes per element
Result<DType> parse_dtype(std::string_view name);

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;  // inside the mapped file or buffer

  int64_t elements() const;
};

// Limits on what a header may claim (a header is JSON parsed in memory).
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

class Safetensors {
 public:
  // Maps and validates a file; the tensors' bytes stay valid while this object lives.
  static Result<Safetensors> open(const std::filesystem::path& path);
  // Validates a buffer the caller keeps alive (tests, fuzzing).
  static Result<Safetensors> parse(std::span<const uint8_t> buffer);

  Safetensors(Safetensors&&) noexcept = default;
  Safetensors& operator=(Safetensors&&) noexcept = default;
  ~Safetensors() = default;

  // In file order (by offset).
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  Safetensors() = default;
  std::shared_ptr<void> mapping_;  // munmaps on release
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor's values as float, from F32, F16 or BF16 (others: invalid_argument).
Result<std::vector<float>> to_float(const TensorEntry& entry);

// One tensor to write: its bytes are `dtype` elements in row-major order.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};

// Writes a safetensors file (tensors sorted by name, header padded to 8 bytes as the reference
// writer does) under a temporary name, fsyncs it and renames it over `path`.
Status write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace mh::engine
