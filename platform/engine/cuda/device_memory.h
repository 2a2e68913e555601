// Device and pinned host allocations that free themselves, the check that turns a failed CUDA
// call into a CudaError, and the strided copy that splits and joins fused projections (the
// trainer's fp32 attention path). Shared by the decoder and the trainer.
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

// An array of T from `allocate` (freed by `release`) that frees itself. reserve() grows it
// (contents lost) and says whether it moved.
template <typename T, cudaError_t (*allocate)(void**, size_t), cudaError_t (*release)(void*)>
struct CudaArray {
  T* ptr = nullptr;
  size_t size = 0;
  CudaArray() = default;
  CudaArray(const CudaArray&) = delete;
  CudaArray& operator=(const CudaArray&) = delete;
  ~CudaArray() {
    if (ptr) release(ptr);
  }
  bool reserve(size_t n) {
    if (n <= size) return false;
    if (ptr) release(ptr);
    ptr = nullptr;
    size = 0;
    void* p = nullptr;
    check(allocate(&p, std::max<size_t>(n, 1) * sizeof(T)), "cuda", "allocation");
    ptr = static_cast<T*>(p);
    size = n;
    return true;
  }
};

// Device memory, and page-locked host memory (for copies the device runs asynchronously).
template <typename T>
using DeviceArray = CudaArray<T, cudaMalloc, cudaFree>;
template <typename T>
using PinnedArray = CudaArray<T, cudaMallocHost, cudaFreeHost>;

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
