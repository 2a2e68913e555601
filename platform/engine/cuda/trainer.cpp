#include "platform/engine/cuda/trainer.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/device_memory.h"
#include "platform/engine/cuda/flash_attention.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"
#ifdef MH_ENGINE_NCCL
#include "platform/engine/cuda/nccl_collective.h"
#endif

namespace mh::engine {
namespace {

using cuda::DeviceArray;
using cuda::PinnedArray;

void check(cudaError_t err, const char* what) { cuda::check(err, "cuda trainer", what); }

// Parameters start on 256-byte boundaries in the flat arrays (cuBLASLt's preferred alignment).
constexpr size_t kAlign = 64;

// What one block's forward keeps for its backward pass ([rows, width] each).
// The outputs that are only ever GEMM operands (n1, n2, act, and att after the tensor-core
// attention) are kept in bf16 in bf16 runs, as the kernels that make them write them.
struct Saved {
  DeviceArray<float> mean1, rstd1, q, k, v, lse, x_mid, mean2, rstd2, h, up;
  DeviceArray<float> n1, n2, act, att;         // fp32 runs (att: whenever attention is fp32)
  DeviceArray<uint16_t> n1h, n2h, acth, atth;  // bf16 runs
  DeviceArray<uint16_t> qh, kh, vh;            // bf16 q, k, v for the tensor-core attention
  DeviceArray<uint16_t> qkvh;                  // gpt2's: the fused projection in bf16
  DeviceArray<float> q_raw, k_raw, q_rstd, k_rstd;  // q/k norms: q and k before them
};

// A GEMM operand as an activation holds it: fp32, or already bf16.
struct In {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  In at(int64_t offset) const {
    return {f32 != nullptr ? f32 + offset : nullptr, bf16 != nullptr ? bf16 + offset : nullptr};
  }
};

class CudaEngine final : public StepEngine {
 public:
  CudaEngine(Model& model, const TrainConfig& config, Collective& comm,
             const CudaTrainOptions& options)
      : model_(model),
        config_(config),
        comm_(comm),
        options_(options),
        c_(model.config()),
        layout_(Model::layout(model.config())) {}

  ~CudaEngine() override {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (comm_done_) cudaEventDestroy(comm_done_);
    for (cudaEvent_t e : ready_events_) cudaEventDestroy(e);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status init() {
    check(cudaSetDevice(options_.device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "stream");
    check(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming), "event");
    MH_ASSIGN_OR_RETURN(gemm_, cuda::Gemm::create());
#ifdef MH_ENGINE_NCCL
    if (comm_.world() > 1) nccl_ = dynamic_cast<NcclCollective*>(&comm_);
#endif
    const auto& params = model_.parameters();
    size_t at = 0;
    for (const Parameter& p : params) {
      offset_.push_back(at);
      at += (static_cast<size_t>(p.value.numel()) + kAlign - 1) / kAlign * kAlign;
    }
    offset_.push_back(at);
    total_ = at;
    size_t free_bytes = 0, total_bytes = 0;
    check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    const size_t state = total_ * (4 * sizeof(float) + (options_.bf16 ? 2 : 0));
    if (state > free_bytes) {
      return unavailable("the model's weights, gradients and AdamW moments need " +
                         std::to_string(state >> 20) + " MiB; the device has " +
                         std::to_string(free_bytes >> 20) + " MiB free");
    }
    if (!gpt2()) {
      // Each layer's RoPE frequencies (a sliding layer's may differ from a global one's), for
      // the sequences a run can hold: dynamic scaling leaves them as they are there.
      std::vector<float> freq;
      for (int64_t l = 0; l < c_.layers; ++l) {
        const Backend::Rope rope = rope_for(c_, l, c_.max_positions);
        freq.insert(freq.end(), rope.inv_freq.begin(), rope.inv_freq.end());
        rope_factor_.push_back(rope.attention_factor);
      }
      rope_freq_.reserve(freq.size());
      check(cudaMemcpyAsync(rope_freq_.ptr, freq.data(), freq.size() * sizeof(float),
                            cudaMemcpyHostToDevice, stream_),
            "copy RoPE frequencies");
    }
    for (auto* a : {&w_, &g_, &m_, &v_}) a->reserve(total_);
    if (options_.bf16) w16_.reserve(total_);
    check(cudaMemsetAsync(w_.ptr, 0, total_ * sizeof(float), stream_), "memset");
    check(cudaMemsetAsync(m_.ptr, 0, total_ * sizeof(float), stream_), "memset");
    check(cudaMemsetAsync(v_.ptr, 0, total_ * sizeof(float), stream_), "memset");
    check(cudaMemsetAsync(g_.ptr, 0, total_ * sizeof(float), stream_), "memset");
    upload_weights();
    for (int64_t l = 0; l <= c_.layers; ++l) x_.push_back(std::make_unique<DeviceArray<float>>());
    for (int64_t l = 0; l < c_.layers; ++l) saved_.push_back(std::make_unique<Saved>());
    sums_.reserve(kPartial + cuda::kSumBlocks);
    host_sums_.reserve(3);
    check(cudaStreamSynchronize(stream_), "synchronize");
    return {};
  }

  const char* name() const override { return options_.bf16 ? "cuda-bf16" : "cuda"; }

  // Every call in the engine goes through this; with a profile asked for, each also marks the
  // compute stream, so that the time between marks is the op's.
  void check(cudaError_t err, const char* what) {
    ::mh::engine::check(err, what);
    if (options_.profile != nullptr) mark(what);
  }

  void begin_step() override {
    check(cudaStreamWaitEvent(stream_, comm_done_, 0), "wait");
    check(cudaMemsetAsync(g_.ptr, 0, total_ * sizeof(float), stream_), "memset");
    check(cudaMemsetAsync(sums_.ptr, 0, 2 * sizeof(double), stream_), "memset");
    sent_ = false;
  }

  void micro_batch(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets,
                   int64_t batch, int64_t seq_len, int64_t denominator, bool last) override {
    prepare(ids, targets, batch, seq_len);
    forward(std::max<int64_t>(1, denominator), sums_.ptr, true);
    backward(last && comm_.world() > 1 && nccl_ != nullptr);
  }

  float loss(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets, int64_t batch,
             int64_t seq_len, int64_t denominator) override {
    prepare(ids, targets, batch, seq_len);
    double* sum = sums_.ptr + 2;
    check(cudaMemsetAsync(sum, 0, sizeof(double), stream_), "memset");
    forward(std::max<int64_t>(1, denominator), sum, false);
    check(cudaMemcpyAsync(host_sums_.ptr + 2, sum, sizeof(double), cudaMemcpyDeviceToHost, stream_),
          "loss to host");
    check(cudaStreamSynchronize(stream_), "synchronize");
    return static_cast<float>(host_sums_.ptr[2]);
  }

  // Checks a micro-batch's ids and targets (nothing runs when they are bad) and uploads them.
  void prepare(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets, int64_t batch,
               int64_t seq_len) {
    const int64_t n = batch * seq_len;
    if (batch < 1 || seq_len < 1 || static_cast<int64_t>(ids.size()) != n ||
        targets.size() != ids.size()) {
      throw ShapeError("cuda trainer: " + std::to_string(ids.size()) + " ids and " +
                       std::to_string(targets.size()) + " targets are not " +
                       std::to_string(batch) + " rows of " + std::to_string(seq_len));
    }
    if (seq_len > c_.max_positions) {
      throw ShapeError("cuda trainer: rows of " + std::to_string(seq_len) +
                       " tokens are longer than max_positions " + std::to_string(c_.max_positions));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= c_.vocab_size || targets[i] < -1 || targets[i] >= c_.vocab_size) {
        throw ShapeError(
            "cuda trainer: token id " +
            std::to_string(ids[i] < 0 || ids[i] >= c_.vocab_size ? ids[i] : targets[i]) +
            " outside [0, " + std::to_string(c_.vocab_size) + ")");
      }
    }
    reserve(batch, seq_len);
    batch_ = batch;
    seq_len_ = seq_len;
    // The inputs, through pinned memory: ids, targets, positions, and the rows grouped by id and
    // by position for the embeddings' backward pass.
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % seq_len);
    const cuda::IdGroups by_id = cuda::group_by_id(ids.data(), n);
    const cuda::IdGroups by_position = cuda::group_by_id(positions.data(), n);
    // The previous micro-batch's copy must be done before the pinned buffer is rewritten.
    check(cudaStreamSynchronize(stream_), "synchronize");
    int32_t* host = host_ints_.ptr;
    size_t at = 0;
    auto put = [&](const std::vector<int32_t>& v) {
      const size_t start = at;
      std::copy(v.begin(), v.end(), host + at);
      at += v.size();
      return start;
    };
    put(ids);
    put(targets);
    put(positions);
    auto put_groups = [&](const cuda::IdGroups& g, Groups& where) {
      where.count = g.groups();
      where.ids = put(g.ids);
      where.starts = put(g.starts);
      where.rows = put(g.rows);
    };
    put_groups(by_id, id_groups_);
    put_groups(by_position, position_groups_);
    check(cudaMemcpyAsync(ints_.ptr, host, at * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "inputs to device");
  }

  Reduced reduce(bool want_stop) override {
    if (comm_.world() > 1) {
      if (sent_) {
        check(cudaEventRecord(comm_done_, comm_stream_), "record");
        check(cudaStreamWaitEvent(stream_, comm_done_, 0), "wait");
      } else {
        // No NCCL: through the host and the collective, every parameter at once.
        std::vector<float> host(total_);
        check(cudaMemcpyAsync(host.data(), g_.ptr, total_ * sizeof(float), cudaMemcpyDeviceToHost,
                              stream_),
              "gradients to host");
        check(cudaStreamSynchronize(stream_), "synchronize");
        comm_.all_reduce_sum(host);
        check(cudaMemcpyAsync(g_.ptr, host.data(), total_ * sizeof(float), cudaMemcpyHostToDevice,
                              stream_),
              "gradients to device");
      }
    }
    check(cuda::sum(g_.ptr, static_cast<int64_t>(total_), true, 1.0, sums_.ptr + kPartial,
                    sums_.ptr + 1, stream_),
          "gradient norm");
    check(cudaMemcpyAsync(host_sums_.ptr, sums_.ptr, 2 * sizeof(double), cudaMemcpyDeviceToHost,
                          stream_),
          "sums to host");
    check(cudaStreamSynchronize(stream_), "synchronize");
    if (options_.profile != nullptr) collect_profile();
    Reduced r;
    r.loss = static_cast<float>(host_sums_.ptr[0]);
    r.squares = host_sums_.ptr[1];
    r.stop = want_stop;
    if (comm_.world() > 1) {
      std::vector<float> tail = {r.loss, want_stop ? 1.0f : 0.0f};
      comm_.all_reduce_sum(tail);
      r.loss = tail[0];
      r.stop = tail[1] > 0;
    }
    return r;
  }

  void update(float lr, float grad_scale) override {
    ++adam_steps_;
    const double t = static_cast<double>(adam_steps_);
    cuda::AdamWStep s{};
    s.beta1 = config_.beta1;
    s.beta2 = config_.beta2;
    s.eps = config_.eps;
    s.step_size = lr / static_cast<float>(1.0 - std::pow(config_.beta1, t));
    s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(config_.beta2, t)));
    s.grad_scale = grad_scale;
    const auto& params = model_.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      s.decay = params[i].decay ? 1.0f - lr * config_.weight_decay : 1.0f;
      const size_t o = offset_[i];
      check(cuda::adamw(w_.ptr + o, g_.ptr + o, m_.ptr + o, v_.ptr + o, params[i].value.numel(), s,
                        half_weights(i) ? w16_.ptr + o : nullptr, stream_),
            "adamw");
    }
  }

  void sync_to_host() override {
    auto& params = model_.parameters();
    if (m_host_.size() != params.size()) {
      m_host_.clear();
      v_host_.clear();
      for (const auto& p : params) {
        m_host_.emplace_back(p.value.shape());
        v_host_.emplace_back(p.value.shape());
      }
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const size_t bytes = static_cast<size_t>(params[i].value.numel()) * sizeof(float);
      const size_t o = offset_[i];
      check(cudaMemcpyAsync(params[i].value.data(), w_.ptr + o, bytes, cudaMemcpyDeviceToHost,
                            stream_),
            "weights to host");
      check(cudaMemcpyAsync(m_host_[i].data(), m_.ptr + o, bytes, cudaMemcpyDeviceToHost, stream_),
            "moments to host");
      check(cudaMemcpyAsync(v_host_[i].data(), v_.ptr + o, bytes, cudaMemcpyDeviceToHost, stream_),
            "moments to host");
    }
    check(cudaStreamSynchronize(stream_), "synchronize");
  }
  const std::vector<Tensor>& exp_avg() const override { return m_host_; }
  const std::vector<Tensor>& exp_avg_sq() const override { return v_host_; }

  void restore(std::vector<Tensor> m, std::vector<Tensor> v, int64_t steps) override {
    const auto& params = model_.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const size_t bytes = static_cast<size_t>(params[i].value.numel()) * sizeof(float);
      check(
          cudaMemcpyAsync(m_.ptr + offset_[i], m[i].data(), bytes, cudaMemcpyHostToDevice, stream_),
          "moments to device");
      check(
          cudaMemcpyAsync(v_.ptr + offset_[i], v[i].data(), bytes, cudaMemcpyHostToDevice, stream_),
          "moments to device");
    }
    upload_weights();
    check(cudaStreamSynchronize(stream_), "synchronize");  // before m and v go away
    m_host_ = std::move(m);
    v_host_ = std::move(v);
    adam_steps_ = steps;
  }

 private:
  bool gpt2() const { return c_.family == Family::kGpt2; }
  int64_t q_width() const { return c_.heads * c_.head_dim; }
  int64_t kv_width() const { return c_.kv_heads * c_.head_dim; }
  // bf16 runs take the tensor-core attention where it has kernels for the head size.
  // (Not where attention has a window, a scale of its own or a soft-cap: the fp32 kernels take
  // those.)
  bool flash() const {
    return options_.bf16 && options_.flash_attention && cuda::flash_supported(c_.head_dim) &&
           c_.sliding_window == 0 && c_.query_pre_attn_scalar == 0.0f && c_.attn_softcap == 0.0f;
  }
  // Layer l's RoPE frequencies on the device, and the factor on its cos and sin.
  const float* rope_freq(int64_t l) const { return rope_freq_.ptr + l * (c_.head_dim / 2); }
  float rope_factor(int64_t l) const { return rope_factor_[static_cast<size_t>(l)]; }
  bool half_weights(size_t i) const {
    return options_.bf16 && model_.parameters()[i].value.rank() == 2;
  }
  float* weight(size_t i) { return w_.ptr + offset_[i]; }
  float* grad(size_t i) { return g_.ptr + offset_[i]; }

  // The model's parameter values onto the device, with their bf16 copies.
  void upload_weights() {
    const auto& params = model_.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      check(cudaMemcpyAsync(weight(i), params[i].value.data(),
                            static_cast<size_t>(params[i].value.numel()) * sizeof(float),
                            cudaMemcpyHostToDevice, stream_),
            "weights to device");
      if (half_weights(i)) {
        check(cuda::to_bf16(weight(i), params[i].value.numel(), w16_.ptr + offset_[i], stream_),
              "to_bf16");
      }
    }
    // The host buffers must stay put until the copies ran.
    check(cudaStreamSynchronize(stream_), "synchronize");
  }

  // Buffers for micro-batches of `batch` rows of `seq_len`.
  void reserve(int64_t batch, int64_t seq_len) {
    const int64_t n = batch * seq_len;
    if (n <= rows_ && batch * c_.heads * seq_len <= lse_rows_) return;
    const auto r = static_cast<size_t>(std::max(n, rows_));
    const auto c = static_cast<size_t>(c_.hidden), f = static_cast<size_t>(c_.ffn);
    const auto qw = static_cast<size_t>(q_width()), kw = static_cast<size_t>(kv_width());
    const size_t lse =
        std::max(static_cast<size_t>(batch * c_.heads * seq_len), static_cast<size_t>(lse_rows_));
    const auto vocab = static_cast<size_t>(c_.vocab_size);
    // Chunks of a multiple of 128 rows keep every chunk's rows on 256-byte boundaries, as
    // cuBLASLt's fastest kernels want their operands.
    chunk_ =
        std::min<int64_t>(static_cast<int64_t>(r),
                          std::max<int64_t>(128, (int64_t{1} << 27) / c_.vocab_size / 128 * 128));
    const auto chunk = static_cast<size_t>(chunk_);
    // ids, targets, positions, and two IdGroups of at most 3 r + 1 entries each
    host_ints_.reserve(9 * r + 2);
    ints_.reserve(9 * r + 2);
    for (auto& x : x_) x->reserve(r * c);
    for (auto& saved : saved_) {
      Saved& s = *saved;
      s.x_mid.reserve(r * c);
      for (auto* a : {&s.mean1, &s.rstd1, &s.mean2, &s.rstd2}) a->reserve(r);
      if (gpt2() && flash()) {
        s.qkvh.reserve(r * (qw + 2 * kw));
      } else {
        s.q.reserve(r * qw);
        s.k.reserve(r * kw);
        s.v.reserve(r * kw);
      }
      if (c_.qk_norm) {
        s.q_raw.reserve(r * qw);
        s.k_raw.reserve(r * kw);
        s.q_rstd.reserve(r * static_cast<size_t>(c_.heads));
        s.k_rstd.reserve(r * static_cast<size_t>(c_.kv_heads));
      }
      s.lse.reserve(lse);
      s.h.reserve(r * f);
      if (!gpt2()) s.up.reserve(r * f);
      if (options_.bf16) {
        s.n1h.reserve(r * c);
        s.n2h.reserve(r * c);
        s.acth.reserve(r * f);
      } else {
        s.n1.reserve(r * c);
        s.n2.reserve(r * c);
        s.act.reserve(r * f);
      }
      if (flash()) {
        s.atth.reserve(r * qw);
      } else {
        s.att.reserve(r * qw);
      }
      if (flash() && !gpt2()) {
        s.qh.reserve(r * qw);
        s.kh.reserve(r * kw);
        s.vh.reserve(r * kw);
      }
    }
    for (auto* a : {&tmp_, &dx_, &dn_, &dtmp_, &dfinal_}) a->reserve(r * c);
    if (options_.bf16) {
      final_outh_.reserve(r * c);
    } else {
      final_out_.reserve(r * c);
    }
    for (auto* a : {&final_mean_, &final_rstd_, &row_loss_}) a->reserve(r);
    for (auto* a : {&dact_, &dh_, &dup_}) a->reserve(r * f);
    if (options_.bf16) {
      dh16_.reserve(r * f);
      if (!gpt2()) dup16_.reserve(r * f);
      if (gpt2() && flash()) dqkv16_.reserve(r * (qw + 2 * kw));
    }
    qkv_.reserve(r * (qw + 2 * kw));
    for (auto* a : {&datt_, &dq_}) a->reserve(r * qw);
    for (auto* a : {&dk_, &dv_}) a->reserve(r * kw);
    delta_.reserve(lse);
    if (options_.bf16) {
      const size_t widest = std::max({c, f, qw + 2 * kw});
      half_a_.reserve(r * widest);
      half_b_.reserve(r * widest);
      logits16_.reserve(chunk * vocab);
    } else {
      logits_.reserve(chunk * vocab);
    }
    rows_ = static_cast<int64_t>(r);
    lse_rows_ = static_cast<int64_t>(lse);
  }

  // What an activation in fp32 or bf16 storage gives a GEMM: fp32 as it is in fp32 runs; in
  // bf16 runs the bf16 copy, made into `scratch` when the activation is fp32.
  In in(const DeviceArray<float>& f32, const DeviceArray<uint16_t>& bf16) const {
    return options_.bf16 && bf16.ptr != nullptr ? In{nullptr, bf16.ptr} : In{f32.ptr, nullptr};
  }
  const void* operand(In x, int64_t n, DeviceArray<uint16_t>& scratch) {
    if (!options_.bf16) return x.f32;
    if (x.bf16 != nullptr) return x.bf16;
    check(cuda::to_bf16(x.f32, n, scratch.ptr, stream_), "to_bf16");
    return scratch.ptr;
  }
  const void* weight_operand(size_t i) {
    return options_.bf16 ? static_cast<const void*>(w16_.ptr + offset_[i]) : weight(i);
  }
  void mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a, const void* b,
          float beta, float* out) {
    gemm_->run(ta, tb, m, n, k, 1.0f, a, b, beta, out, options_.bf16 ? CUDA_R_16BF : CUDA_R_32F,
               stream_);
    if (options_.profile != nullptr) mark(ta ? "gemm (weight gradient)" : "gemm (backward)");
  }
  // gpt2's Conv1D weights are [in, out]; Linear's (llama, the head) [out, in].
  bool out_in(size_t w) const { return !gpt2() || w == layout_.head; }

  // y[rows, out] = x[rows, in] W (+ b, in the GEMM's epilogue).
  // A layer's bias by its index in the layout, or none (kNone: the config has no such bias).
  static const size_t* bias(const size_t& index) {
    return index == Model::kNone ? nullptr : &index;
  }
  void linear(In x, int64_t rows, int64_t in, size_t w, const size_t* b, int64_t out, float* y) {
    const void* operand_x = operand(x, rows * in, half_a_);
    gemm_->run(false, out_in(w), rows, out, in, 1.0f, operand_x, weight_operand(w), 0.0f, y,
               options_.bf16 ? CUDA_R_16BF : CUDA_R_32F, stream_,
               b != nullptr ? weight(*b) : nullptr);
    if (options_.profile != nullptr) mark("gemm (forward)");
  }
  // dW += ..., db += ..., dx = (or +=, with accumulate) dy W^T.
  // dy in fp32, or (bf16 runs) already in bf16 where the kernel that made it wrote it so.
  void linear_backward(In dy, In x, int64_t rows, int64_t in, int64_t out, size_t w,
                       const size_t* b, float* dx, bool accumulate) {
    const void* dyh = operand(dy, rows * out, half_a_);
    const void* xh = operand(x, rows * in, half_b_);
    if (out_in(w)) {
      mm(true, false, out, in, rows, dyh, xh, 1.0f, grad(w));
      mm(false, false, rows, in, out, dyh, weight_operand(w), accumulate ? 1.0f : 0.0f, dx);
    } else {
      mm(true, false, in, out, rows, xh, dyh, 1.0f, grad(w));
      mm(false, true, rows, in, out, dyh, weight_operand(w), accumulate ? 1.0f : 0.0f, dx);
    }
    if (b != nullptr) {
      check(dy.bf16 != nullptr ? cuda::bias_backward(dy.bf16, rows, out, grad(*b), stream_)
                               : cuda::bias_backward(dy.f32, rows, out, grad(*b), stream_),
            "bias grad");
    }
  }
  void linear_backward(const float* dy, In x, int64_t rows, int64_t in, int64_t out, size_t w,
                       const size_t* b, float* dx, bool accumulate) {
    linear_backward(In{dy, nullptr}, x, rows, in, out, w, b, dx, accumulate);
  }

  template <typename T>
  void norm(const float* x, int64_t rows, size_t w, size_t b, T* out, float* mean, float* rstd) {
    if (gpt2()) {
      check(cuda::layernorm(x, weight(w), weight(b), c_.norm_eps, rows, c_.hidden, out, mean, rstd,
                            stream_),
            "layernorm");
    } else {
      check(cuda::rmsnorm(x, weight(w), c_.norm_eps, rows, c_.hidden, out, rstd, stream_),
            "rmsnorm");
    }
  }
  // RMSNorm over each of `rows` heads of x (rows of head_dim), as Qwen3 norms q and k.
  void head_norm(const float* x, int64_t rows, size_t w, float* out, float* rstd) {
    check(cuda::rmsnorm(x, weight(w), c_.norm_eps, rows, c_.head_dim, out, rstd, stream_),
          "q/k norm");
  }
  // The norm into whichever of its storages this run keeps.
  void norm_into(const float* x, int64_t rows, size_t w, size_t b, DeviceArray<float>& out,
                 DeviceArray<uint16_t>& out_bf16, float* mean, float* rstd) {
    if (options_.bf16) {
      norm(x, rows, w, b, out_bf16.ptr, mean, rstd);
    } else {
      norm(x, rows, w, b, out.ptr, mean, rstd);
    }
  }
  // sum = residual + tmp_, then its norm, as norm_into stores it.
  void add_norm_into(const float* residual, float* sum, int64_t rows, size_t w, size_t b,
                     DeviceArray<float>& out, DeviceArray<uint16_t>& out_bf16, float* mean,
                     float* rstd) {
    const float* bias = gpt2() ? weight(b) : nullptr;
    check(options_.bf16 ? cuda::add_norm(residual, tmp_.ptr, sum, weight(w), bias, c_.norm_eps,
                                         rows, c_.hidden, out_bf16.ptr, mean, rstd, stream_)
                        : cuda::add_norm(residual, tmp_.ptr, sum, weight(w), bias, c_.norm_eps,
                                         rows, c_.hidden, out.ptr, mean, rstd, stream_),
          "residual and norm");
  }
  void norm_backward(const float* dout, const float* x, int64_t rows, size_t w, size_t b,
                     const float* mean, const float* rstd, float* dx) {
    if (gpt2()) {
      check(cuda::layernorm_backward(dout, x, weight(w), mean, rstd, rows, c_.hidden, dx, grad(w),
                                     grad(b), stream_),
            "layernorm backward");
    } else {
      check(cuda::rmsnorm_backward(dout, x, weight(w), rstd, rows, c_.hidden, dx, grad(w), stream_),
            "rmsnorm backward");
    }
  }

  // gpt2's q, k, v as columns of the fused projection (and their gradients of its gradient).
  cuda::FlashStrides fused_strides() const {
    const int64_t w = 3 * c_.hidden;
    return {w, w, w, w};
  }
  cuda::AttentionDims dims(int64_t layer) const {
    const Backend::AttentionShape a = attention_shape(c_, layer);
    return {batch_, seq_len_, seq_len_, c_.heads, c_.kv_heads, c_.head_dim,
            a.window, a.scale,  a.softcap};
  }
  const int32_t* ids() const { return ints_.ptr; }
  const int32_t* targets() const { return ints_.ptr + batch_ * seq_len_; }
  const int32_t* positions() const { return ints_.ptr + 2 * batch_ * seq_len_; }

  // The forward pass of the prepared micro-batch, its loss added into *loss_sum; with
  // `gradients` the classifier's gradient goes into the head's and into dfinal_ for backward().
  void forward(int64_t denominator, double* loss_sum, bool gradients) {
    const int64_t n = batch_ * seq_len_, d = c_.hidden, qw = q_width(), kw = kv_width();
    const bool g = gpt2();
    float* x0 = x_[0]->ptr;
    check(cuda::embedding(weight(layout_.wte), ids(), n, d, x0, stream_), "embedding");
    // Each residual add (of the branch in tmp_ to `pending`) is done by the norm after it, in
    // one pass: add_norm writes the sum (which the backward pass reads) and the norm. gpt2's
    // position embeddings are the first such branch.
    const float* pending = nullptr;
    if (g) {
      check(cuda::embedding(weight(layout_.wpe), positions(), n, d, tmp_.ptr, stream_),
            "positions");
      pending = x0;
    }
    for (int64_t l = 0; l < c_.layers; ++l) {
      const Model::Layer& y = layout_.layers[static_cast<size_t>(l)];
      Saved& s = *saved_[static_cast<size_t>(l)];
      const float* x = x_[static_cast<size_t>(l)]->ptr;
      if (pending != nullptr) {
        add_norm_into(pending, x_[static_cast<size_t>(l)]->ptr, n, y.ln1_w, y.ln1_b, s.n1, s.n1h,
                      s.mean1.ptr, s.rstd1.ptr);
      } else {
        norm_into(x, n, y.ln1_w, y.ln1_b, s.n1, s.n1h, s.mean1.ptr, s.rstd1.ptr);
      }
      const In n1 = in(s.n1, s.n1h);
      if (g && flash()) {
        // q, k and v read in place, as columns of the fused projection.
        linear(n1, n, d, y.qkv_w, &y.qkv_b, 3 * d, qkv_.ptr);
        check(cuda::to_bf16(qkv_.ptr, n * 3 * d, s.qkvh.ptr, stream_), "to_bf16");
        check(cuda::flash_attention(dims(l), s.qkvh.ptr, s.qkvh.ptr + d, s.qkvh.ptr + 2 * d,
                                    s.atth.ptr, s.lse.ptr, stream_, fused_strides()),
              "attention");
      } else {
        if (g) {
          linear(n1, n, d, y.qkv_w, &y.qkv_b, 3 * d, qkv_.ptr);
          check(cuda::copy_columns(s.q.ptr, d, 0, qkv_.ptr, 3 * d, 0, d, n, stream_), "split q");
          check(cuda::copy_columns(s.k.ptr, d, 0, qkv_.ptr, 3 * d, d, d, n, stream_), "split k");
          check(cuda::copy_columns(s.v.ptr, d, 0, qkv_.ptr, 3 * d, 2 * d, d, n, stream_),
                "split v");
        } else {
          if (c_.qk_norm) {
            // Qwen3's RMSNorm over each head of q and of k, before RoPE.
            linear(n1, n, d, y.q, bias(y.q_b), qw, s.q_raw.ptr);
            linear(n1, n, d, y.k, bias(y.k_b), kw, s.k_raw.ptr);
            head_norm(s.q_raw.ptr, n * c_.heads, y.q_norm, s.q.ptr, s.q_rstd.ptr);
            head_norm(s.k_raw.ptr, n * c_.kv_heads, y.k_norm, s.k.ptr, s.k_rstd.ptr);
          } else {
            linear(n1, n, d, y.q, bias(y.q_b), qw, s.q.ptr);
            linear(n1, n, d, y.k, bias(y.k_b), kw, s.k.ptr);
          }
          linear(n1, n, d, y.v, bias(y.v_b), kw, s.v.ptr);
          check(cuda::rope(s.q.ptr, n, qw, c_.head_dim, positions(), rope_freq(l), rope_factor(l),
                           1.0f, stream_),
                "rope");
          check(cuda::rope(s.k.ptr, n, kw, c_.head_dim, positions(), rope_freq(l), rope_factor(l),
                           1.0f, stream_),
                "rope");
        }
        if (flash()) {
          check(cuda::to_bf16(s.q.ptr, n * qw, s.qh.ptr, stream_), "to_bf16");
          check(cuda::to_bf16(s.k.ptr, n * kw, s.kh.ptr, stream_), "to_bf16");
          check(cuda::to_bf16(s.v.ptr, n * kw, s.vh.ptr, stream_), "to_bf16");
          check(cuda::flash_attention(dims(l), s.qh.ptr, s.kh.ptr, s.vh.ptr, s.atth.ptr, s.lse.ptr,
                                      stream_),
                "attention");
        } else {
          check(cuda::attention(dims(l), s.q.ptr, s.k.ptr, s.v.ptr, s.att.ptr, s.lse.ptr, stream_),
                "attention");
        }
      }
      linear(in(s.att, s.atth), n, qw, y.o_w, bias(y.o_b), d, tmp_.ptr);
      add_norm_into(x, s.x_mid.ptr, n, y.ln2_w, y.ln2_b, s.n2, s.n2h, s.mean2.ptr, s.rstd2.ptr);
      const In n2 = in(s.n2, s.n2h);
      if (g) {
        linear(n2, n, d, y.fc_w, &y.fc_b, c_.ffn, s.h.ptr);
        check(options_.bf16 ? cuda::gelu(s.h.ptr, n * c_.ffn, s.acth.ptr, stream_)
                            : cuda::gelu(s.h.ptr, n * c_.ffn, s.act.ptr, stream_),
              "gelu");
        linear(in(s.act, s.acth), n, c_.ffn, y.proj_w, &y.proj_b, d, tmp_.ptr);
      } else {
        linear(n2, n, d, y.gate, nullptr, c_.ffn, s.h.ptr);
        linear(n2, n, d, y.up, nullptr, c_.ffn, s.up.ptr);
        check(options_.bf16 ? cuda::swiglu(s.h.ptr, s.up.ptr, n * c_.ffn, s.acth.ptr, stream_)
                            : cuda::swiglu(s.h.ptr, s.up.ptr, n * c_.ffn, s.act.ptr, stream_),
              "swiglu");
        linear(in(s.act, s.acth), n, c_.ffn, y.proj_w, nullptr, d, tmp_.ptr);
      }
      pending = s.x_mid.ptr;  // x_out = x_mid + tmp_, by the next norm
    }
    float* last = x_[static_cast<size_t>(c_.layers)]->ptr;
    if (pending != nullptr) {
      add_norm_into(pending, last, n, layout_.norm_w, layout_.norm_b, final_out_, final_outh_,
                    final_mean_.ptr, final_rstd_.ptr);
    } else {
      norm_into(last, n, layout_.norm_w, layout_.norm_b, final_out_, final_outh_, final_mean_.ptr,
                final_rstd_.ptr);
    }
    const In final_out = in(final_out_, final_outh_);
    // The classifier a chunk of rows at a time: logits, then in their place the loss's gradient,
    // which goes into the head's gradient and into the final hidden states'. The head is
    // [vocab, hidden] in both families.
    const int64_t vocab = c_.vocab_size;
    const auto inv = static_cast<float>(1.0 / static_cast<double>(denominator));
    for (int64_t begin = 0; begin < n; begin += chunk_) {
      const int64_t m = std::min(chunk_, n - begin);
      const In xin = final_out.at(begin * d);
      float* dxin = dfinal_.ptr + begin * d;
      if (options_.bf16) {
        // bf16 logits, and their gradient in place: both GEMMs read it as it is.
        const size_t head = layout_.head;
        const void* xh = operand(xin, m * d, half_b_);
        uint16_t* logits = logits16_.ptr;
        gemm_->run_bf16_out(false, true, m, vocab, d, 1.0f, xh, weight_operand(head), 0.0f, logits,
                            stream_);
        if (options_.profile != nullptr) mark("gemm (forward)");
        check(cuda::cross_entropy_bf16(logits, targets() + begin, m, vocab, inv,
                                       row_loss_.ptr + begin, logits, stream_),
              "cross-entropy");
        if (gradients) {
          mm(true, false, vocab, d, m, logits, xh, 1.0f, grad(head));  // dW[V, d] += dz^T x
          mm(false, false, m, d, vocab, logits, weight_operand(head), 0.0f, dxin);  // dx = dz W
        }
      } else {
        linear(xin, m, d, layout_.head, nullptr, vocab, logits_.ptr);
        check(cuda::cross_entropy(logits_.ptr, targets() + begin, m, vocab, inv,
                                  row_loss_.ptr + begin, logits_.ptr, stream_),
              "cross-entropy");
        if (gradients) {
          linear_backward(logits_.ptr, xin, m, d, vocab, layout_.head, nullptr, dxin, false);
        }
      }
    }
    check(cuda::sum(row_loss_.ptr, n, false, 1.0 / static_cast<double>(denominator),
                    sums_.ptr + kPartial, loss_sum, stream_),
          "loss");
  }

  // Profiling: an event on the compute stream after each op, named for it; reduce() adds the
  // times between them into options_.profile once the step's work is done.
  void mark(const char* what) {
    if (marks_.size() == events_.size()) {
      cudaEvent_t e = nullptr;
      ::mh::engine::check(cudaEventCreate(&e), "event");
      events_.push_back(e);
    }
    ::mh::engine::check(cudaEventRecord(events_[marks_.size()], stream_), "record");
    marks_.push_back(what);
  }
  void collect_profile() {
    for (size_t i = 1; i < marks_.size(); ++i) {
      float ms = 0;
      ::mh::engine::check(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]), "elapsed");
      (*options_.profile)[marks_[i]] += ms;
    }
    marks_.clear();
  }

  // Parameters [begin, end) have their gradient for this step: with NCCL, reduce them on the
  // communication stream once the compute stream has produced them.
  void finished(size_t begin, size_t end, bool send) {
    if (!send || begin >= end) return;
    cudaEvent_t e = nullptr;
    if (next_event_ < ready_events_.size()) {
      e = ready_events_[next_event_];
    } else {
      check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
      ready_events_.push_back(e);
    }
    ++next_event_;
    check(cudaEventRecord(e, stream_), "record");
    check(cudaStreamWaitEvent(comm_stream_, e, 0), "wait");
#ifdef MH_ENGINE_NCCL
    nccl_->all_reduce_sum_device(g_.ptr + offset_[begin], offset_[end] - offset_[begin],
                                 comm_stream_);
#endif
    sent_ = true;
  }

  void backward(bool send) {
    next_event_ = 0;
    const int64_t n = batch_ * seq_len_, d = c_.hidden, qw = q_width(), kw = kv_width();
    const int64_t f = c_.ffn;
    const bool g = gpt2();
    const size_t count = model_.parameters().size();
    float* dx = dx_.ptr;
    norm_backward(dfinal_.ptr, x_[static_cast<size_t>(c_.layers)]->ptr, n, layout_.norm_w,
                  layout_.norm_b, final_mean_.ptr, final_rstd_.ptr, dx);
    finished(layout_.norm_w, count, send);
    for (int64_t l = c_.layers - 1; l >= 0; --l) {
      const Model::Layer& y = layout_.layers[static_cast<size_t>(l)];
      Saved& s = *saved_[static_cast<size_t>(l)];
      const In n1 = in(s.n1, s.n1h), n2 = in(s.n2, s.n2h);
      const float* x = x_[static_cast<size_t>(l)]->ptr;
      // dx is the gradient at the block's output; the MLP's branch first.
      if (g) {
        linear_backward(dx, in(s.act, s.acth), n, f, d, y.proj_w, &y.proj_b, dact_.ptr, false);
        // bf16 runs: the gradient the fc product reads is written in bf16 as it is made.
        In dh{dh_.ptr, nullptr};
        if (options_.bf16) {
          check(cuda::gelu_backward(dact_.ptr, s.h.ptr, n * f, dh16_.ptr, stream_),
                "gelu backward");
          dh = In{nullptr, dh16_.ptr};
        } else {
          check(cuda::gelu_backward(dact_.ptr, s.h.ptr, n * f, dh_.ptr, stream_), "gelu backward");
        }
        linear_backward(dh, n2, n, d, f, y.fc_w, &y.fc_b, dn_.ptr, false);
      } else {
        linear_backward(dx, in(s.act, s.acth), n, f, d, y.proj_w, nullptr, dact_.ptr, false);
        In dgate{dh_.ptr, nullptr}, dup{dup_.ptr, nullptr};
        if (options_.bf16) {
          check(cuda::swiglu_backward(dact_.ptr, s.h.ptr, s.up.ptr, n * f, dh16_.ptr, dup16_.ptr,
                                      stream_),
                "swiglu backward");
          dgate = In{nullptr, dh16_.ptr};
          dup = In{nullptr, dup16_.ptr};
        } else {
          check(cuda::swiglu_backward(dact_.ptr, s.h.ptr, s.up.ptr, n * f, dh_.ptr, dup_.ptr,
                                      stream_),
                "swiglu backward");
        }
        linear_backward(dgate, n2, n, d, f, y.gate, nullptr, dn_.ptr, false);
        linear_backward(dup, n2, n, d, f, y.up, nullptr, dn_.ptr, true);
      }
      norm_backward(dn_.ptr, s.x_mid.ptr, n, y.ln2_w, y.ln2_b, s.mean2.ptr, s.rstd2.ptr, dtmp_.ptr);
      check(cuda::add(dx, dtmp_.ptr, n * d, dx, stream_), "add");  // the gradient at x_mid
      linear_backward(dx, in(s.att, s.atth), n, qw, d, y.o_w, bias(y.o_b), datt_.ptr, false);
      if (g && flash()) {
        // The gradients go straight into their columns of the fused projection's gradient, in
        // bf16: the qkv product (and its bias gradient) is all that reads them.
        uint16_t* dqkv = dqkv16_.ptr;
        check(cuda::flash_attention_backward(dims(l), datt_.ptr, s.atth.ptr, s.qkvh.ptr,
                                             s.qkvh.ptr + d, s.qkvh.ptr + 2 * d, s.lse.ptr,
                                             half_a_.ptr, delta_.ptr, dqkv, dqkv + d, dqkv + 2 * d,
                                             stream_, fused_strides()),
              "attention backward");
        linear_backward(In{nullptr, dqkv}, n1, n, d, 3 * d, y.qkv_w, &y.qkv_b, dn_.ptr, false);
      } else {
        if (flash()) {
          check(cuda::flash_attention_backward(dims(l), datt_.ptr, s.atth.ptr, s.qh.ptr, s.kh.ptr,
                                               s.vh.ptr, s.lse.ptr, half_a_.ptr, delta_.ptr,
                                               dq_.ptr, dk_.ptr, dv_.ptr, stream_),
                "attention backward");
        } else {
          check(cuda::attention_backward(dims(l), datt_.ptr, s.q.ptr, s.k.ptr, s.v.ptr, s.att.ptr,
                                         s.lse.ptr, delta_.ptr, dq_.ptr, dk_.ptr, dv_.ptr, stream_),
                "attention backward");
        }
        if (g) {
          float* dqkv = qkv_.ptr;
          check(cuda::copy_columns(dqkv, 3 * d, 0, dq_.ptr, d, 0, d, n, stream_), "join q");
          check(cuda::copy_columns(dqkv, 3 * d, d, dk_.ptr, d, 0, d, n, stream_), "join k");
          check(cuda::copy_columns(dqkv, 3 * d, 2 * d, dv_.ptr, d, 0, d, n, stream_), "join v");
          linear_backward(dqkv, n1, n, d, 3 * d, y.qkv_w, &y.qkv_b, dn_.ptr, false);
        } else {
          check(cuda::rope(dq_.ptr, n, qw, c_.head_dim, positions(), rope_freq(l), rope_factor(l),
                           -1.0f, stream_),
                "rope backward");
          check(cuda::rope(dk_.ptr, n, kw, c_.head_dim, positions(), rope_freq(l), rope_factor(l),
                           -1.0f, stream_),
                "rope backward");
          // Through the q/k norms (into buffers free by now: datt_ was read by the attention's
          // backward pass, qkv_ is gpt2's alone).
          const float* dq = dq_.ptr;
          const float* dk = dk_.ptr;
          if (c_.qk_norm) {
            check(cuda::rmsnorm_backward(dq_.ptr, s.q_raw.ptr, weight(y.q_norm), s.q_rstd.ptr,
                                         n * c_.heads, c_.head_dim, datt_.ptr, grad(y.q_norm),
                                         stream_),
                  "q norm backward");
            check(cuda::rmsnorm_backward(dk_.ptr, s.k_raw.ptr, weight(y.k_norm), s.k_rstd.ptr,
                                         n * c_.kv_heads, c_.head_dim, qkv_.ptr, grad(y.k_norm),
                                         stream_),
                  "k norm backward");
            dq = datt_.ptr;
            dk = qkv_.ptr;
          }
          linear_backward(dq, n1, n, d, qw, y.q, bias(y.q_b), dn_.ptr, false);
          linear_backward(dk, n1, n, d, kw, y.k, bias(y.k_b), dn_.ptr, true);
          linear_backward(dv_.ptr, n1, n, d, kw, y.v, bias(y.v_b), dn_.ptr, true);
        }
      }
      norm_backward(dn_.ptr, x, n, y.ln1_w, y.ln1_b, s.mean1.ptr, s.rstd1.ptr, dtmp_.ptr);
      check(cuda::add(dx, dtmp_.ptr, n * d, dx, stream_), "add");  // the gradient at x_in
      const size_t end =
          l + 1 < c_.layers ? layout_.layers[static_cast<size_t>(l + 1)].ln1_w : layout_.norm_w;
      finished(y.ln1_w, end, send);
    }
    auto embedding_backward = [&](const Groups& groups, size_t table) {
      check(
          cuda::embedding_backward(dx, ints_.ptr + groups.ids, ints_.ptr + groups.starts,
                                   ints_.ptr + groups.rows, groups.count, d, grad(table), stream_),
          "embedding backward");
    };
    embedding_backward(id_groups_, layout_.wte);
    if (g) embedding_backward(position_groups_, layout_.wpe);
    finished(0, layout_.layers.empty() ? layout_.norm_w : layout_.layers[0].ln1_w, send);
  }

  Model& model_;
  TrainConfig config_;
  Collective& comm_;
  CudaTrainOptions options_;
  ModelConfig c_;
  Model::Layout layout_;
#ifdef MH_ENGINE_NCCL
  NcclCollective* nccl_ = nullptr;
#else
  void* nccl_ = nullptr;
#endif
  cudaStream_t stream_ = nullptr, comm_stream_ = nullptr;
  cudaEvent_t comm_done_ = nullptr;
  std::vector<cudaEvent_t> ready_events_;
  size_t next_event_ = 0;
  bool sent_ = false;                // this step's gradient went out through NCCL
  std::vector<cudaEvent_t> events_;  // profiling marks, reused from step to step
  std::vector<const char*> marks_;
  std::unique_ptr<cuda::Gemm> gemm_;

  // Every parameter's weights, gradient and moments, at offset_[i] in flat arrays.
  std::vector<size_t> offset_;  // one past the last: the total
  size_t total_ = 0;
  DeviceArray<float> w_, g_, m_, v_;
  DeviceArray<uint16_t> w16_;  // bf16 copies of the weight matrices
  int64_t adam_steps_ = 0;
  std::vector<Tensor> m_host_, v_host_;

  // [0] the step's loss, [1] its gradient's squared norm, [2] a validation batch's loss, then
  // the sums' scratch.
  static constexpr int kPartial = 3;
  DeviceArray<double> sums_;
  PinnedArray<double> host_sums_;

  // One micro-batch: its inputs and what the backward pass needs.
  int64_t batch_ = 0, seq_len_ = 0, rows_ = 0, lse_rows_ = 0, chunk_ = 0;
  PinnedArray<int32_t> host_ints_;
  DeviceArray<int32_t> ints_;  // ids, targets, positions, then the groups
  struct Groups {              // a cuda::IdGroups in ints_, by offsets
    int64_t count = 0;
    size_t ids = 0, starts = 0, rows = 0;
  };
  Groups id_groups_, position_groups_;
  std::vector<std::unique_ptr<DeviceArray<float>>> x_;  // each block's input, and the last output
  std::vector<std::unique_ptr<Saved>> saved_;
  DeviceArray<float> final_out_, final_mean_, final_rstd_, dfinal_, row_loss_, logits_;
  DeviceArray<uint16_t> final_outh_;  // the final norm's output in bf16 runs
  DeviceArray<float> tmp_, qkv_, dx_, dn_, dtmp_, dact_, dh_, dup_, datt_, dq_, dk_, dv_, delta_;
  DeviceArray<uint16_t> half_a_, half_b_, logits16_;
  DeviceArray<uint16_t> dh16_, dup16_, dqkv16_;  // bf16 runs: gradients only products read
  DeviceArray<float> rope_freq_;                  // [layers, head_dim / 2]
  std::vector<float> rope_factor_;                // per layer
};

}  // namespace

Result<std::unique_ptr<StepEngine>> make_cuda_engine(Model& model, const TrainConfig& config,
                                                     Collective& collective,
                                                     const CudaTrainOptions& options) {
  if (cuda_device_count() <= options.device) {
    return unavailable("no CUDA device " + std::to_string(options.device));
  }
  if (model.config().head_dim > cuda::kMaxHeadDim) {
    return failed_precondition("the CUDA trainer takes heads of up to " +
                               std::to_string(cuda::kMaxHeadDim) + " dimensions");
  }
  if (model.lora() != nullptr) {
    return failed_precondition("the CUDA trainer does not train LoRA adapters; the host engine "
                               "does, on any backend");
  }
  if (model.has_half_weights()) {
    return failed_precondition("the CUDA trainer uploads fp32 weights; load the model with "
                               "Weights::kFloat32");
  }
  if (const char* missing = cuda_engines_lack(model.config())) {
    return failed_precondition(std::string("the CUDA trainer does not implement ") + missing +
                               " (" + std::string(family_name(model.config().family)) + ")");
  }
  auto engine = std::make_unique<CudaEngine>(model, config, collective, options);
  try {
    MH_TRY(engine->init());
  } catch (const std::exception& e) {
    return unavailable(e.what());
  }
  return std::unique_ptr<StepEngine>(std::move(engine));
}

}  // namespace mh::engine
