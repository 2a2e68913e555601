#include "platform/engine/cuda/nccl_collective.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

namespace mh::engine {
namespace {

class Nccl final : public NcclCollective {
 public:
  Nccl(ncclComm_t comm, int rank, int world, cudaStream_t stream)
      : comm_(comm), rank_(rank), world_(world), stream_(stream) {}
  ~Nccl() override {
    cudaFree(buffer_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void all_reduce_sum(std::span<float> data) override {
    if (data.empty()) return;
    float* d = buffer(data.size_bytes());
    expect(cudaMemcpyAsync(d, data.data(), data.size_bytes(), cudaMemcpyHostToDevice, stream_),
           "copy to device");
    all_reduce_sum_device(d, data.size(), stream_);
    expect(cudaMemcpyAsync(data.data(), d, data.size_bytes(), cudaMemcpyDeviceToHost, stream_),
           "copy to host");
    expect(cudaStreamSynchronize(stream_), "synchronize");
  }

  void all_reduce_sum_device(float* device_data, size_t n, cudaStream_t stream) override {
    expect(ncclAllReduce(device_data, device_data, n, ncclFloat32, ncclSum, comm_, stream),
           "ncclAllReduce");
  }

  void broadcast(std::span<uint8_t> bytes, int root) override {
    if (bytes.empty()) return;
    auto* d = reinterpret_cast<uint8_t*>(buffer(bytes.size()));
    expect(cudaMemcpyAsync(d, bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream_),
           "copy to device");
    expect(ncclBroadcast(d, d, bytes.size(), ncclUint8, root, comm_, stream_), "ncclBroadcast");
    expect(cudaMemcpyAsync(bytes.data(), d, bytes.size(), cudaMemcpyDeviceToHost, stream_),
           "copy to host");
    expect(cudaStreamSynchronize(stream_), "synchronize");
  }

 private:
  float* buffer(size_t bytes) {
    if (bytes > capacity_) {
      cudaFree(buffer_);
      buffer_ = nullptr;
      capacity_ = 0;
      expect(cudaMalloc(&buffer_, bytes), "cudaMalloc");
      capacity_ = bytes;
    }
    return static_cast<float*>(buffer_);
  }
  void expect(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      throw CollectiveError("rank " + std::to_string(rank_) + ": " + what + ": " +
                            cudaGetErrorString(e));
    }
  }
  void expect(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) {
      throw CollectiveError("rank " + std::to_string(rank_) + ": " + what + ": " +
                            ncclGetErrorString(r) + " (" + ncclGetLastError(comm_) + ")");
    }
  }

  ncclComm_t comm_;
  int rank_, world_;
  cudaStream_t stream_;
  void* buffer_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace

Result<std::unique_ptr<NcclCollective>> make_nccl_collective(Collective& bootstrap, int device) {
  const std::string who = "rank " + std::to_string(bootstrap.rank()) + ": ";
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return unavailable(who + "cudaSetDevice(" + std::to_string(device) +
                       "): " + cudaGetErrorString(e));
  }
  // Rank 0 mints the id; a failure there is sent on as an id of zeros, so that the others fail
  // too instead of waiting for it.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  std::string minted;
  if (bootstrap.rank() == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      minted = ncclGetErrorString(r);
      std::memset(&id, 0, sizeof id);
    }
  }
  std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id), sizeof id);
  try {
    bootstrap.broadcast(bytes, 0);
  } catch (const CollectiveError& e) {
    return unavailable(who + "sharing the NCCL id: " + e.what());
  }
  bool zero = true;
  for (uint8_t b : bytes) zero = zero && b == 0;
  if (zero) {
    return unavailable(who + "rank 0 could not create an NCCL id" +
                       (minted.empty() ? "" : ": " + minted));
  }
  ncclComm_t comm = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&comm, bootstrap.world(), id, bootstrap.rank());
      r != ncclSuccess) {
    return unavailable(who + "ncclCommInitRank: " + ncclGetErrorString(r));
  }
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    ncclCommDestroy(comm);
    return unavailable(who + "stream: " + cudaGetErrorString(e));
  }
  return std::unique_ptr<NcclCollective>(
      std::make_unique<Nccl>(comm, bootstrap.rank(), bootstrap.world(), stream));
}

}  // namespace mh::engine
