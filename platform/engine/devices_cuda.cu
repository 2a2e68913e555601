#include <cuda_runtime.h>

#include "platform/engine/devices.h"

namespace mh::engine {

DeviceProbe probe_cuda_devices() {
  DeviceProbe probe;
  probe.cuda_built = true;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    probe.note = std::string("the CUDA runtime found none: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error for later callers
    return probe;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.memory_bytes = prop.totalGlobalMem;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    char bus[32] = {};
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, i) == cudaSuccess) info.pci_bus_id = bus;
    probe.devices.push_back(std::move(info));
  }
  if (probe.devices.empty()) probe.note = "the CUDA runtime reports no devices";
  return probe;
}

}  // namespace mh::engine
