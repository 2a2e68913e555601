// Device and pinned host allocations that free themselves, the check that turns a failed CUDA
// call into a CudaError, and the strided copies that split and join fused projections. Shared by
// the decoder and the trainer.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "platform/engine/cuda/cuda_backend.h"

namespace mh::engine::cuda {

// Throws CudaError naming `where` (the component) and `what` (the call) when err is an error.
inline void check(cudaError_t err, const char* where, const char* what) {
  if (err != cudaSuccess) {
    throw CudaError(std::string(where) + ": " + what + ": " + cudaGetErrorString(err));
  }
}

// A device allocation of T. reserve() grows it (contents lost) and says whether it moved.
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t size = 0;
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  bool reserve(size_t n) {
    if (n <= size) return false;
    cudaFree(ptr);
    ptr = nullptr;
    size = 0;
    check(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)), "cuda", "cudaMalloc");
    size = n;
    return true;
  }
};

// Page-locked host memory of T, for copies the device can run asynchronously.
template <typename T>
struct PinnedArray {
  T* ptr = nullptr;
  size_t size = 0;
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (ptr) cudaFreeHost(ptr);
  }
  bool reserve(size_t n) {
    if (n <= size) return false;
    if (ptr) cudaFreeHost(ptr);
    ptr = nullptr;
    size = 0;
    check(cudaMallocHost(&ptr, std::max<size_t>(n, 1) * sizeof(T)), "cuda", "cudaMallocHost");
    size = n;
    return true;
  }
};

// Copies columns [from, from + width) of a row-major [rows, src_cols] fp32 matrix into columns
// [to, to + width) of a [rows, dst_cols] one: splitting gpt2's fused q|k|v projection, and
// joining the gradients back.
inline cudaError_t copy_columns(float* dst, int64_t dst_cols, int64_t to, const float* src,
                                int64_t src_cols, int64_t from, int64_t width, int64_t rows,
                                cudaStream_t stream) {
  return cudaMemcpy2DAsync(dst + to, static_cast<size_t>(dst_cols) * sizeof(float), src + from,
                           static_cast<size_t>(src_cols) * sizeof(float),
                           static_cast<size_t>(width) * sizeof(float), static_cast<size_t>(rows),
                           cudaMemcpyDeviceToDevice, stream);
}

}  // namespace mh::engine::cuda
