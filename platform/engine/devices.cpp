#include "platform/engine/devices.h"

namespace mh::engine {

#ifdef MH_WITH_CUDA
DeviceProbe probe_cuda_devices();  // devices_cuda.cu
#endif

DeviceProbe probe_devices() {
#ifdef MH_WITH_CUDA
  return probe_cuda_devices();
#else
  DeviceProbe probe;
  probe.note = "this build has no CUDA support (nvcc was not found at build time)";
  return probe;
#endif
}

}  // namespace mh::engine
