#include "platform/engine/cuda/decoder.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <string>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/device_memory.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"

namespace mh::engine {
namespace {

void check(cudaError_t err, const char* what) { cuda::check(err, "cuda decoder", what); }

using cuda::DeviceArray;

// A weight matrix on the device: fp32, and a bf16 copy when the GEMMs take bf16.
struct Weight {
  DeviceArray<float> f32;
  DeviceArray<uint16_t> bf16;
};

}  // namespace

struct CudaDecoder::Impl {
  ModelConfig config;
  CudaDecoderOptions options;
  int64_t capacity = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<cuda::Gemm> gemm;
  std::vector<std::unique_ptr<Weight>> weights;  // by parameter index (Model::layout)

  // Llama's q, k, v projections are joined into one [q + 2 kv, hidden] matrix and gate and up
  // into one [2 ffn, hidden] (gpt2's c_attn is joined already), so that a step makes one product
  // where it would make three, and one where two.
  struct Layer {
    Weight *ln1_w = nullptr, *ln1_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
    Weight *qkv_w = nullptr, *qkv_b = nullptr, *o_w = nullptr, *o_b = nullptr;
    Weight *fc_w = nullptr, *fc_b = nullptr, *gate_up = nullptr, *proj_w = nullptr,
           *proj_b = nullptr;
    Weight *q_norm = nullptr, *k_norm = nullptr;  // qwen3's, over each head
    Weight joined_qkv, joined_qkv_b, joined_gate_up;  // llama's, owned here
    DeviceArray<float> k_cache, v_cache;  // [slot][capacity][kv_heads * head_dim]
  };
  std::vector<std::unique_ptr<Layer>> layers;
  DeviceArray<float> rope_freq;    // [layers, head_dim / 2]: each layer's RoPE frequencies
  std::vector<float> rope_factor;  // per layer
  Weight *wte = nullptr, *wpe = nullptr, *norm_w = nullptr, *norm_b = nullptr, *head = nullptr;
  bool head_out_in = true;  // the head is [vocab, hidden] (Linear, or tied to wte)

  std::vector<int64_t> lengths;  // per slot; -1: free
  // One step's inputs (pinned on the host, copied to fixed device buffers) and activations.
  cuda::PinnedArray<int32_t> host_ints;
  cuda::PinnedArray<float> host_logits;
  DeviceArray<int32_t> ints;  // ids, positions, slots, last rows: 3 * rows + sequences
  DeviceArray<float> x, n, qkv, q, att, tmp, h, act, last, normed, logits;
  DeviceArray<float> mean, rstd;
  DeviceArray<float> head_rstd;  // [rows * heads]: the q/k norms' (qwen3)
  DeviceArray<uint16_t> half;  // an activation rounded to bf16 for a bf16 GEMM
  int64_t rows_capacity = 0, sequences_capacity = 0;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs;  // (rows, sequences)

  ~Impl() {
    for (auto& [key, g] : graphs) cudaGraphExecDestroy(g);
    if (stream) cudaStreamDestroy(stream);
  }

  bool gpt2() const { return config.family == Family::kGpt2; }
  int64_t kv_width() const { return config.kv_heads * config.head_dim; }
  int64_t q_width() const { return config.heads * config.head_dim; }

  // `out` = the given [out, in] matrices stacked by rows, which then leave the device.
  void join(Weight& out, std::initializer_list<size_t> parts) {
    size_t total = 0;
    for (size_t i : parts) total += weight(i)->f32.size;
    out.f32.reserve(total);
    size_t at = 0;
    for (size_t i : parts) {
      const Weight* w = weight(i);
      check(cudaMemcpyAsync(out.f32.ptr + at, w->f32.ptr, w->f32.size * sizeof(float),
                            cudaMemcpyDeviceToDevice, stream),
            "join weights");
      at += w->f32.size;
    }
    if (options.bf16_weights) {
      out.bf16.reserve(total);
      check(cuda::to_bf16(out.f32.ptr, static_cast<int64_t>(total), out.bf16.ptr, stream),
            "to_bf16");
    }
    check(cudaStreamSynchronize(stream), "synchronize");
    for (size_t i : parts) weights[i].reset();
  }

  Weight* weight(size_t i) {
    if (i >= weights.size() || !weights[i]) {
      throw ShapeError("cuda decoder: the model has no tensor " + std::to_string(i));
    }
    return weights[i].get();
  }

  // Buffers for steps of up to `rows` rows and `sequences` sequences; graphs captured against
  // smaller ones are dropped.
  void reserve(int64_t rows, int64_t sequences) {
    if (rows <= rows_capacity && sequences <= sequences_capacity) return;
    rows = std::max(rows, rows_capacity);
    sequences = std::max(sequences, sequences_capacity);
    const auto r = static_cast<size_t>(rows), c = static_cast<size_t>(config.hidden);
    const auto f = static_cast<size_t>(config.ffn), qw = static_cast<size_t>(q_width());
    const auto kw = static_cast<size_t>(kv_width()), s = static_cast<size_t>(sequences);
    ints.reserve(3 * r + s);
    for (auto* b : {&x, &n, &tmp}) b->reserve(r * c);
    qkv.reserve(r * (qw + 2 * kw));
    h.reserve(r * 2 * f);  // llama's gate|up
    q.reserve(r * qw);
    att.reserve(r * qw);
    act.reserve(r * f);
    mean.reserve(std::max(r, s));
    rstd.reserve(std::max(r, s));
    if (config.qk_norm) head_rstd.reserve(r * static_cast<size_t>(config.heads));
    last.reserve(s * c);
    normed.reserve(s * c);
    logits.reserve(s * static_cast<size_t>(config.vocab_size));
    half.reserve(std::max(r * std::max({c, f, qw}), s * c));
    host_ints.reserve(3 * r + s);
    host_logits.reserve(s * static_cast<size_t>(config.vocab_size));
    for (auto& [key, g] : graphs) cudaGraphExecDestroy(g);
    graphs.clear();
    rows_capacity = rows;
    sequences_capacity = sequences;
  }

  // y[rows, out] = x[rows, in] W (+ b) from an operand of the GEMMs' type: gpt2's Conv1D W is
  // [in, out], Linear's [out, in].
  void linear(const void* xin, int64_t rows, int64_t in, const Weight& w, const Weight* b,
              int64_t out, bool out_in, float* y) {
    const float* bias = b != nullptr ? b->f32.ptr : nullptr;
    if (options.bf16_weights && out_in && rows <= cuda::kGemvRows && in % 8 == 0) {
      // A few rows: a matrix-vector product that streams W once at the memory's pace.
      check(cuda::gemv_bf16(w.bf16.ptr, static_cast<const uint16_t*>(xin), rows, out, in, bias, y,
                            stream),
            "gemv");
    } else if (options.bf16_weights) {
      gemm->run(false, out_in, rows, out, in, 1.0f, xin, w.bf16.ptr, 0.0f, y, CUDA_R_16BF, stream,
                bias);
    } else {
      gemm->run(false, out_in, rows, out, in, 1.0f, xin, w.f32.ptr, 0.0f, y, CUDA_R_32F, stream,
                bias);
    }
  }

  // Qwen3's RMSNorm over each head of q (columns [from, from + width) of the fused projection)
  // or of k, before RoPE: the columns are copied out, normalised as rows of head_dim, and
  // copied back. `att` and `q` are free until the attention.
  void head_norm(int64_t rows, int64_t from, int64_t width, const Weight& w) {
    const int64_t stride = q_width() + 2 * kv_width();
    check(cuda::copy_columns(att.ptr, width, 0, qkv.ptr, stride, from, width, rows, stream),
          "split heads");
    check(cuda::rmsnorm(att.ptr, w.f32.ptr, config.norm_eps, rows * width / config.head_dim,
                        config.head_dim, q.ptr, head_rstd.ptr, stream),
          "q/k norm");
    check(cuda::copy_columns(qkv.ptr, stride, from, q.ptr, width, 0, width, rows, stream),
          "join heads");
  }

  // The norm of `rows` rows as a GEMM operand: into `out` (fp32), or straight into `half` in
  // bf16 (its only readers are the GEMMs).
  template <typename T>
  void norm_to(const float* xin, int64_t rows, const Weight* w, const Weight* b, T* out) {
    const int64_t c = config.hidden;
    if (gpt2()) {
      check(cuda::layernorm(xin, w->f32.ptr, b->f32.ptr, config.norm_eps, rows, c, out, mean.ptr,
                            rstd.ptr, stream),
            "layernorm");
    } else {
      check(cuda::rmsnorm(xin, w->f32.ptr, config.norm_eps, rows, c, out, rstd.ptr, stream),
            "rmsnorm");
    }
  }
  const void* norm(const float* xin, int64_t rows, const Weight* w, const Weight* b, float* out) {
    if (options.bf16_weights) {
      norm_to(xin, rows, w, b, half.ptr);
      return half.ptr;
    }
    norm_to(xin, rows, w, b, out);
    return out;
  }

  // The whole forward pass of one step, on the stream, from the device inputs in `ints`.
  void forward(int64_t rows, int64_t sequences) {
    const ModelConfig& c = config;
    const int64_t d = c.hidden, qw = q_width(), kw = kv_width();
    const int32_t* ids = ints.ptr;
    const int32_t* positions = ints.ptr + rows;
    const int32_t* slots = ints.ptr + 2 * rows;
    const int32_t* last_rows = ints.ptr + 3 * rows;
    const bool g = gpt2();
    check(cuda::embedding(wte->f32.ptr, ids, rows, d, x.ptr, stream), "embedding");
    // The residual add of each branch (in tmp) is done by the norm that follows it; gpt2's
    // position embeddings are the first such branch.
    bool pending = false;
    if (g) {
      check(cuda::embedding(wpe->f32.ptr, positions, rows, d, tmp.ptr, stream), "positions");
      pending = true;
    }
    cuda::CachedAttentionDims dims{rows, c.heads, c.kv_heads, c.head_dim, capacity};
    auto residual_norm = [&](bool add, int64_t r, const Weight* w, const Weight* b) -> const void* {
      if (!add) return norm(x.ptr, r, w, b, n.ptr);
      const float* bias = b != nullptr ? b->f32.ptr : nullptr;
      if (options.bf16_weights) {
        check(cuda::add_norm(x.ptr, tmp.ptr, x.ptr, w->f32.ptr, bias, c.norm_eps, r, d, half.ptr,
                             mean.ptr, rstd.ptr, stream),
              "residual and norm");
        return half.ptr;
      }
      check(cuda::add_norm(x.ptr, tmp.ptr, x.ptr, w->f32.ptr, bias, c.norm_eps, r, d, n.ptr,
                           mean.ptr, rstd.ptr, stream),
            "residual and norm");
      return n.ptr;
    };
    for (size_t l = 0; l < layers.size(); ++l) {
      Layer& y = *layers[l];
      const Backend::AttentionShape shape = attention_shape(c, static_cast<int64_t>(l));
      dims.window = shape.window;
      dims.scale = shape.scale;
      dims.softcap = shape.softcap;
      const float* freq = g ? nullptr : rope_freq.ptr + l * static_cast<size_t>(c.head_dim / 2);
      const float factor = g ? 1.0f : rope_factor[l];
      const void* n1 = residual_norm(pending, rows, y.ln1_w, y.ln1_b);
      // One product for q, k and v, then one kernel: q out, k (rotated for llama) and v into
      // the caches.
      linear(n1, rows, d, *y.qkv_w, y.qkv_b, qw + 2 * kw, !g, qkv.ptr);
      if (c.qk_norm) {
        head_norm(rows, 0, qw, *y.q_norm);
        head_norm(rows, qw, kw, *y.k_norm);
      }
      check(cuda::qkv_to_cache(dims, qkv.ptr, slots, positions, freq, factor, q.ptr,
                               y.k_cache.ptr, y.v_cache.ptr, stream),
            "qkv to cache");
      // Attention's output is only the output projection's operand: bf16 straight away.
      const void* attended = att.ptr;
      if (options.bf16_weights) {
        check(cuda::cached_attention(dims, q.ptr, y.k_cache.ptr, y.v_cache.ptr, slots, positions,
                                     half.ptr, stream),
              "attention");
        attended = half.ptr;
      } else {
        check(cuda::cached_attention(dims, q.ptr, y.k_cache.ptr, y.v_cache.ptr, slots, positions,
                                     att.ptr, stream),
              "attention");
      }
      linear(attended, rows, qw, *y.o_w, y.o_b, d, !g, tmp.ptr);
      const void* n2 = residual_norm(true, rows, y.ln2_w, y.ln2_b);
      // The activation's output is only the down projection's operand: bf16 straight away.
      const bool bf16 = options.bf16_weights;
      const void* a = bf16 ? static_cast<const void*>(half.ptr) : act.ptr;
      if (g) {
        linear(n2, rows, d, *y.fc_w, y.fc_b, c.ffn, false, h.ptr);
        check(bf16 ? cuda::gelu(h.ptr, rows * c.ffn, half.ptr, stream)
                   : cuda::gelu(h.ptr, rows * c.ffn, act.ptr, stream),
              "gelu");
        linear(a, rows, c.ffn, *y.proj_w, y.proj_b, d, false, tmp.ptr);
      } else {
        linear(n2, rows, d, *y.gate_up, nullptr, 2 * c.ffn, true, h.ptr);
        check(bf16 ? cuda::swiglu_fused(h.ptr, rows, c.ffn, half.ptr, stream)
                   : cuda::swiglu_fused(h.ptr, rows, c.ffn, act.ptr, stream),
              "swiglu");
        linear(a, rows, c.ffn, *y.proj_w, nullptr, d, true, tmp.ptr);
      }
      pending = true;  // added by the next norm
    }
    if (pending) check(cuda::add(x.ptr, tmp.ptr, rows * d, x.ptr, stream), "residual");
    // Only each sequence's last row goes through the final norm and the head.
    check(cuda::embedding(x.ptr, last_rows, sequences, d, last.ptr, stream), "last rows");
    const void* normed_last = norm(last.ptr, sequences, norm_w, norm_b, normed.ptr);
    linear(normed_last, sequences, d, *head, nullptr, c.vocab_size, head_out_in, logits.ptr);
    check(cudaMemcpyAsync(host_logits.ptr, logits.ptr,
                          static_cast<size_t>(sequences * c.vocab_size) * sizeof(float),
                          cudaMemcpyDeviceToHost, stream),
          "logits to host");
  }
};

CudaDecoder::CudaDecoder() : impl_(std::make_unique<Impl>()) {}
CudaDecoder::~CudaDecoder() = default;

const ModelConfig& CudaDecoder::config() const { return impl_->config; }
int CudaDecoder::slots() const { return static_cast<int>(impl_->lengths.size()); }

Result<std::unique_ptr<CudaDecoder>> CudaDecoder::create(const Model& model,
                                                         const CudaDecoderOptions& options) {
  if (cuda_device_count() <= options.device) {
    return unavailable("no CUDA device " + std::to_string(options.device));
  }
  if (model.lora() != nullptr) {
    return failed_precondition("the CUDA decoder does not apply LoRA adapters");
  }
  const ModelConfig& c = model.config();
  if (c.head_dim > cuda::kMaxHeadDim) {
    return failed_precondition("the CUDA decoder takes heads of up to " +
                               std::to_string(cuda::kMaxHeadDim) + " dimensions");
  }
  if (model.has_half_weights()) {
    return failed_precondition("the CUDA decoder uploads fp32 weights; load the model with "
                               "Weights::kFloat32");
  }
  if (const char* missing = cuda_engines_lack(c)) {
    return failed_precondition(std::string("the CUDA decoder does not implement ") + missing +
                               " (" + std::string(family_name(c.family)) + ")");
  }
  if (options.max_sequences < 1) return invalid_argument("max_sequences must be at least 1");
  std::unique_ptr<CudaDecoder> dec(new CudaDecoder());
  Impl& m = *dec->impl_;
  m.config = c;
  m.options = options;
  m.capacity = options.capacity > 0 ? std::min(options.capacity, c.max_positions) : c.max_positions;
  m.lengths.assign(static_cast<size_t>(options.max_sequences), -1);
  try {
    check(cudaSetDevice(options.device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "stream");
    auto gemm = cuda::Gemm::create();
    if (!gemm.ok()) return gemm.status();
    m.gemm = std::move(gemm).value();
    for (const Parameter& p : model.parameters()) {
      auto w = std::make_unique<Weight>();
      const auto count = static_cast<size_t>(p.value.numel());
      w->f32.reserve(count);
      check(cudaMemcpy(w->f32.ptr, p.value.data(), count * 4, cudaMemcpyHostToDevice), "weights");
      if (options.bf16_weights && p.value.rank() == 2) {
        w->bf16.reserve(count);
        check(cuda::to_bf16(w->f32.ptr, p.value.numel(), w->bf16.ptr, m.stream), "to_bf16");
      }
      m.weights.push_back(std::move(w));
    }
    // The caches: as many slots as asked for, or as fit in half of what the weights left.
    const size_t per_slot =
        static_cast<size_t>(m.capacity * m.kv_width()) * 4 * 2 * static_cast<size_t>(c.layers);
    size_t free_bytes = 0, total_bytes = 0;
    check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    const size_t fit = std::max<size_t>(1, free_bytes / 2 / std::max<size_t>(per_slot, 1));
    const size_t slots = std::min(static_cast<size_t>(options.max_sequences), fit);
    m.lengths.assign(slots, -1);
    const size_t cache = slots * static_cast<size_t>(m.capacity * m.kv_width());
    if (!m.gpt2()) {
      std::vector<float> freq;
      for (int64_t l = 0; l < c.layers; ++l) {
        const Backend::Rope rope = rope_for(c, l, m.capacity);
        freq.insert(freq.end(), rope.inv_freq.begin(), rope.inv_freq.end());
        m.rope_factor.push_back(rope.attention_factor);
      }
      m.rope_freq.reserve(freq.size());
      check(cudaMemcpy(m.rope_freq.ptr, freq.data(), freq.size() * 4, cudaMemcpyHostToDevice),
            "RoPE frequencies");
    }
    const Model::Layout layout = Model::layout(c);
    for (const Model::Layer& at : layout.layers) {
      auto y = std::make_unique<Impl::Layer>();
      y->ln1_w = m.weight(at.ln1_w);
      y->ln2_w = m.weight(at.ln2_w);
      y->o_w = m.weight(at.o_w);
      y->proj_w = m.weight(at.proj_w);
      if (m.gpt2()) {
        y->ln1_b = m.weight(at.ln1_b);
        y->ln2_b = m.weight(at.ln2_b);
        y->qkv_w = m.weight(at.qkv_w);
        y->qkv_b = m.weight(at.qkv_b);
        y->o_b = m.weight(at.o_b);
        y->fc_w = m.weight(at.fc_w);
        y->fc_b = m.weight(at.fc_b);
        y->proj_b = m.weight(at.proj_b);
      } else {
        y->ln1_b = y->ln2_b = y->qkv_b = y->o_b = y->proj_b = nullptr;
        m.join(y->joined_qkv, {at.q, at.k, at.v});
        y->qkv_w = &y->joined_qkv;
        // Attention biases (llama's attention_bias, qwen2's q/k/v): joined like the weights,
        // and added by the products' epilogues.
        if (c.qkv_bias) {
          m.join(y->joined_qkv_b, {at.q_b, at.k_b, at.v_b});
          y->qkv_b = &y->joined_qkv_b;
        }
        if (c.o_bias) y->o_b = m.weight(at.o_b);
        if (c.qk_norm) {
          y->q_norm = m.weight(at.q_norm);
          y->k_norm = m.weight(at.k_norm);
        }
        m.join(y->joined_gate_up, {at.gate, at.up});
        y->gate_up = &y->joined_gate_up;
      }
      y->k_cache.reserve(cache);
      y->v_cache.reserve(cache);
      m.layers.push_back(std::move(y));
    }
    m.wte = m.weight(layout.wte);
    m.norm_w = m.weight(layout.norm_w);
    if (m.gpt2()) {
      m.wpe = m.weight(layout.wpe);
      m.norm_b = m.weight(layout.norm_b);
    }
    m.head = m.weight(layout.head);  // wte when tied
    check(cudaStreamSynchronize(m.stream), "synchronize");
  } catch (const std::exception& e) {
    return unavailable(e.what());
  }
  return dec;
}

Result<int> CudaDecoder::open() {
  auto& lengths = impl_->lengths;
  for (size_t s = 0; s < lengths.size(); ++s) {
    if (lengths[s] < 0) {
      lengths[s] = 0;
      return static_cast<int>(s);
    }
  }
  return resource_exhausted("all " + std::to_string(lengths.size()) + " cache slots are in use");
}

void CudaDecoder::close(int slot) {
  if (slot >= 0 && static_cast<size_t>(slot) < impl_->lengths.size()) {
    impl_->lengths[static_cast<size_t>(slot)] = -1;
  }
}

int64_t CudaDecoder::length(int slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= impl_->lengths.size()) return -1;
  return impl_->lengths[static_cast<size_t>(slot)];
}

Tensor CudaDecoder::step(const std::vector<Work>& work) {
  Impl& m = *impl_;
  if (work.empty()) return Tensor({0, m.config.vocab_size});
  // Everything is checked before anything runs.
  int64_t rows = 0;
  std::vector<bool> seen(m.lengths.size(), false);
  for (const Work& w : work) {
    if (w.slot < 0 || static_cast<size_t>(w.slot) >= m.lengths.size() ||
        m.lengths[static_cast<size_t>(w.slot)] < 0 || seen[static_cast<size_t>(w.slot)]) {
      throw ShapeError("cuda decoder: slot " + std::to_string(w.slot) +
                       " is not open, or appears twice in one step");
    }
    seen[static_cast<size_t>(w.slot)] = true;
    if (w.tokens.empty()) throw ShapeError("cuda decoder: a step needs at least one token");
    const int64_t length = m.lengths[static_cast<size_t>(w.slot)];
    if (length + static_cast<int64_t>(w.tokens.size()) > m.capacity) {
      throw ShapeError("cuda decoder: " + std::to_string(length) + " cached + " +
                       std::to_string(w.tokens.size()) + " new tokens exceed the slot's " +
                       std::to_string(m.capacity) + " positions");
    }
    for (int32_t id : w.tokens) {
      if (id < 0 || id >= m.config.vocab_size) {
        throw ShapeError("cuda decoder: token id " + std::to_string(id) + " outside [0, " +
                         std::to_string(m.config.vocab_size) + ")");
      }
    }
    rows += static_cast<int64_t>(w.tokens.size());
  }
  const auto sequences = static_cast<int64_t>(work.size());
  m.reserve(rows, sequences);
  int32_t* ids = m.host_ints.ptr;
  int32_t* positions = ids + rows;
  int32_t* slots = ids + 2 * rows;
  int32_t* last_rows = ids + 3 * rows;
  int64_t r = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    const int64_t length = m.lengths[static_cast<size_t>(work[i].slot)];
    for (size_t t = 0; t < work[i].tokens.size(); ++t, ++r) {
      ids[r] = work[i].tokens[t];
      positions[r] = static_cast<int32_t>(length + static_cast<int64_t>(t));
      slots[r] = work[i].slot;
    }
    last_rows[i] = static_cast<int32_t>(r - 1);
  }
  check(cudaMemcpyAsync(m.ints.ptr, m.host_ints.ptr,
                        static_cast<size_t>(3 * rows + sequences) * sizeof(int32_t),
                        cudaMemcpyHostToDevice, m.stream),
        "inputs to device");
  const bool single = rows == sequences;
  const auto key = std::make_pair(rows, sequences);
  if (m.options.graphs && single && m.graphs.contains(key)) {
    check(cudaGraphLaunch(m.graphs.at(key), m.stream), "graph launch");
  } else {
    m.forward(rows, sequences);
    if (m.options.graphs && single) {
      // Run once as it is (above: GEMM plans made, buffers in place), then capture for next time.
      check(cudaStreamSynchronize(m.stream), "synchronize");
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "capture");
      m.forward(rows, sequences);
      check(cudaStreamEndCapture(m.stream, &graph), "capture");
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      check(e, "graph instantiate");
      m.graphs.emplace(key, exec);
      // The capture recorded the step without running it: its result came from the run above,
      // and its cache rows were written there too (the replayed graph writes the same values).
    }
  }
  check(cudaStreamSynchronize(m.stream), "synchronize");
  for (const Work& w : work)
    m.lengths[static_cast<size_t>(w.slot)] += static_cast<int64_t>(w.tokens.size());
  Tensor out({sequences, m.config.vocab_size});
  std::copy_n(m.host_logits.ptr, out.numel(), out.data());
  return out;
}

namespace {

class DecoderRunner final : public SequenceRunner {
 public:
  explicit DecoderRunner(std::unique_ptr<CudaDecoder> d) : d_(std::move(d)) {}
  const ModelConfig& config() const override { return d_->config(); }
  int64_t max_sequences() const override { return d_->slots(); }
  Result<int64_t> open(int64_t) override {
    MH_ASSIGN_OR_RETURN(int slot, d_->open());
    return static_cast<int64_t>(slot);
  }
  void close(int64_t handle) override { d_->close(static_cast<int>(handle)); }
  int64_t length(int64_t handle) const override { return d_->length(static_cast<int>(handle)); }
  Tensor step(const std::vector<Work>& work) override {
    std::vector<CudaDecoder::Work> w;
    w.reserve(work.size());
    for (const Work& x : work) w.push_back({static_cast<int>(x.handle), *x.tokens});
    return d_->step(w);
  }

 private:
  std::unique_ptr<CudaDecoder> d_;
};

}  // namespace

std::unique_ptr<SequenceRunner> decoder_runner(std::unique_ptr<CudaDecoder> decoder) {
  return std::make_unique<DecoderRunner>(std::move(decoder));
}

}  // namespace mh::engine
