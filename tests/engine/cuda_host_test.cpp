// The CUDA engine's host side, which runs without a device: grouping a batch's rows by id for
// the embedding gradient, the checks that refuse shapes before any launch, and the clean errors
// the engine, decoder and backend give where no device is visible.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/flash_attention.h"
#include "platform/engine/cuda/kernels.h"
#include "platform/engine/cuda/trainer.h"

namespace mh::engine {
namespace {

TEST_CASE("rows grouped by id list every row once, each group in row order") {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> id(0, 40);
  std::vector<int32_t> ids(500);
  for (auto& i : ids) i = id(rng);
  const cuda::IdGroups g = cuda::group_by_id(ids.data(), static_cast<int64_t>(ids.size()));
  REQUIRE(g.starts.size() == g.ids.size() + 1);
  CHECK(g.starts.front() == 0);
  CHECK(g.starts.back() == static_cast<int32_t>(ids.size()));
  CHECK(std::is_sorted(g.ids.begin(), g.ids.end()));
  CHECK(std::adjacent_find(g.ids.begin(), g.ids.end()) == g.ids.end());  // distinct
  std::vector<int> seen(ids.size(), 0);
  for (int64_t k = 0; k < g.groups(); ++k) {
    const auto begin = static_cast<size_t>(g.starts[static_cast<size_t>(k)]);
    const auto end = static_cast<size_t>(g.starts[static_cast<size_t>(k) + 1]);
    REQUIRE(begin < end);
    for (size_t i = begin; i < end; ++i) {
      const auto row = static_cast<size_t>(g.rows[i]);
      CHECK(ids[row] == g.ids[static_cast<size_t>(k)]);
      if (i > begin) CHECK(g.rows[i - 1] < g.rows[i]);
      ++seen[row];
    }
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  CHECK(cuda::group_by_id(ids.data(), 0).groups() == 0);
}

TEST_CASE("kernels refuse what they do not take before launching anything") {
  CHECK(cuda::flash_supported(32));
  CHECK(cuda::flash_supported(128));
  CHECK_FALSE(cuda::flash_supported(80));
  // More rows than the matrix-vector kernel takes, a k not a multiple of 8, misaligned rows.
  CHECK(cuda::gemv_bf16(nullptr, nullptr, cuda::kGemvRows + 1, 8, 8, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  alignas(16) uint16_t buffer[64] = {};
  CHECK(cuda::gemv_bf16(buffer, buffer, 1, 4, 12, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(cuda::gemv_bf16(buffer + 1, buffer, 1, 4, 8, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
}

TEST_CASE("without a visible device the CUDA engine, decoder and backend say so") {
  if (cuda_device_count() > 0) return;  // the GPU tests cover a machine with one
  auto config = parse_model_config(R"({"model_type":"gpt2","vocab_size":64,"n_embd":32,
                                       "n_layer":1,"n_head":2,"n_positions":16})");
  REQUIRE(config.ok());
  auto cpu = make_cpu_backend(1);
  auto model = Model::create(*config, *cpu, 1).value();
  auto one = make_single_rank();
  auto engine = make_cuda_engine(*model, TrainConfig{}, *one);
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().code() == Code::kUnavailable);
  auto decoder = CudaDecoder::create(*model);
  REQUIRE_FALSE(decoder.ok());
  CHECK(decoder.status().code() == Code::kUnavailable);
  CHECK_FALSE(make_cuda_backend().ok());
}

}  // namespace
}  // namespace mh::engine
