// Device discovery: the accelerators this process can see (after CUDA_VISIBLE_DEVICES).
// The scheduler builds the local pool from this; status endpoints report it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mh::engine {

struct DeviceInfo {
  int index = 0;     // CUDA ordinal as this process sees it
  std::string name;  // "NVIDIA H100 80GB HBM3"
  uint64_t memory_bytes = 0;
  int compute_major = 0;  // 9 for Hopper
  int compute_minor = 0;
  std::string pci_bus_id;  // "0000:17:00.0"
};

struct DeviceProbe {
  bool cuda_built = false;  // this binary was built with CUDA
  std::vector<DeviceInfo> devices;
  std::string note;  // why there are none ("no CUDA driver"), empty when devices were found
};

DeviceProbe probe_devices();

}  // namespace mh::engine
