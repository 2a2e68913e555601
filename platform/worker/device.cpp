#include "platform/worker/device.h"

#ifdef MH_ENGINE_CUDA
#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/trainer.h"
#endif
#ifdef MH_ENGINE_NCCL
#include "platform/engine/cuda/nccl_collective.h"
#endif

namespace mh::worker {

Result<Compute> make_compute(const DeviceOptions& o) {
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda") {
    return invalid_argument("--device must be auto, cpu or cuda, not '" + o.device + "'");
  }
  if (o.precision != "fp32" && o.precision != "bf16") {
    return invalid_argument("--precision must be fp32 or bf16, not '" + o.precision + "'");
  }
  Compute c;
#ifdef MH_ENGINE_CUDA
  if (o.device == "cuda" || (o.device == "auto" && engine::cuda_device_count() > 0)) {
    engine::CudaOptions cuda;
    cuda.bf16_gemm = o.precision == "bf16";
    MH_ASSIGN_OR_RETURN(c.backend, engine::make_cuda_backend(cuda));
    c.cuda = true;
    c.bf16 = cuda.bf16_gemm;
    return c;
  }
#else
  if (o.device == "cuda") {
    return unavailable("this mh-worker was built without CUDA (nvcc was not found at build time)");
  }
#endif
  if (o.precision == "bf16") {
    return invalid_argument("--precision bf16 needs the CUDA backend (--device cuda)");
  }
  c.backend = engine::make_cpu_backend(o.threads);
  return c;
}

Result<std::unique_ptr<engine::SequenceRunner>> make_decoder(const Compute& compute,
                                                             const engine::Model& model,
                                                             int64_t max_sequences) {
#ifdef MH_ENGINE_CUDA
  if (compute.cuda) {
    engine::CudaDecoderOptions o;
    o.max_sequences = static_cast<int>(max_sequences);
    o.bf16_weights = compute.bf16;
    // A model the device-resident decoder does not implement runs through the host engine on
    // the CUDA backend (the empty runner): slower, the same tokens.
    if (engine::cuda_engines_lack(model.config()) != nullptr) {
      return std::unique_ptr<engine::SequenceRunner>();
    }
    MH_ASSIGN_OR_RETURN(auto decoder, engine::CudaDecoder::create(model, o));
    return engine::decoder_runner(std::move(decoder));
  }
#else
  (void)model;
  (void)max_sequences;
#endif
  (void)compute;
  return std::unique_ptr<engine::SequenceRunner>();
}

Result<std::unique_ptr<engine::StepEngine>> make_step_engine(const Compute& compute,
                                                             engine::Model& model,
                                                             const engine::TrainConfig& config,
                                                             engine::Collective& collective) {
#ifdef MH_ENGINE_CUDA
  if (compute.cuda) {
    engine::CudaTrainOptions o;
    o.bf16 = compute.bf16;
    // As for decoding: what the device-resident trainer does not implement trains through the
    // host engine on the CUDA backend.
    if (engine::cuda_engines_lack(model.config()) != nullptr) {
      return std::unique_ptr<engine::StepEngine>();
    }
    return engine::make_cuda_engine(model, config, collective, o);
  }
#else
  (void)model;
  (void)config;
  (void)collective;
#endif
  (void)compute;
  return std::unique_ptr<engine::StepEngine>();
}

Result<std::unique_ptr<engine::Collective>> data_parallel(std::unique_ptr<engine::Collective> group,
                                                          const Compute& compute) {
#ifdef MH_ENGINE_NCCL
  if (compute.cuda && group->world() > 1) {
    MH_ASSIGN_OR_RETURN(auto nccl, engine::make_nccl_collective(*group, 0));
    return std::unique_ptr<engine::Collective>(std::move(nccl));
  }
#else
  (void)compute;
#endif
  return group;
}

}  // namespace mh::worker
