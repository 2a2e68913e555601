// libFuzzer target: any bytes as a line a worker wrote on its event stream. Parsing never
// throws; an event taken is whole and within its ranges.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "platform/executor/worker_contract.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mh::executor::WorkerEvent;
  auto e = mh::executor::parse_worker_event(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!e.ok()) {
    if (e.status().message().empty()) std::abort();
    return 0;
  }
  if (e->step < 0 || e->steps < 0 || e->prompt_tokens < 0 || e->completion_tokens < 0) {
    std::abort();
  }
  if (!std::isfinite(e->loss) || !std::isfinite(e->lr)) std::abort();
  if (e->valid_loss && !std::isfinite(*e->valid_loss)) std::abort();
  if (e->kind == WorkerEvent::Kind::kReady && (e->port < 1 || e->port > 65535)) std::abort();
  if (e->path.size() > 4096 || e->tenant.size() > 200) std::abort();
  return 0;
}
