// libFuzzer target: any bytes as a safetensors file. Parsing must reject or accept without
// crashing, and what it accepts must satisfy the header rules.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "platform/engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = mh::engine::Safetensors::parse(std::span<const uint8_t>(data, size));
  if (!parsed.ok()) return 0;
  const uint8_t* end = data + size;
  for (const auto& t : parsed->tensors()) {
    // Every accepted tensor lies inside the buffer and its bytes match its shape.
    if (t.bytes.data() < data || t.bytes.data() + t.bytes.size() > end) std::abort();
    if (static_cast<uint64_t>(t.elements()) * mh::engine::dtype_size(t.dtype) != t.bytes.size()) {
      std::abort();
    }
    if (t.dtype == mh::engine::DType::kF32 || t.dtype == mh::engine::DType::kBF16 ||
        t.dtype == mh::engine::DType::kF16) {
      if (!mh::engine::to_float(t).ok()) std::abort();
    }
  }
  return 0;
}
