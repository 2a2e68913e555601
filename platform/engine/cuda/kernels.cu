// The CUDA engine's fp32 kernels. Row ops take a warp per row; reductions over rows (parameter
// gradients) take a thread per column and add rows in order, as the CPU backend does, so the
// two differ by rounding alone. Attention keeps one query's (or one key's) running sums in
// registers and walks the other side 32 rows at a time, one row per lane: no row of scores is
// ever stored.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "platform/engine/cuda/kernels.h"

namespace mh::engine::cuda {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kAll = 0xffffffffu;
constexpr int kRowWarps = 8;        // rows per block in warp-per-row kernels
constexpr int kThreads = 256;       // elementwise and column kernels
constexpr int kAttentionWarps = 4;  // query (or key) rows per attention block
constexpr int kPerLane = kMaxHeadDim / kWarp;
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kAll, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kAll, v, o));
  return v;
}

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T narrow(float v);
template <>
__device__ __forceinline__ float narrow<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// A reduction over the whole block (blockDim.x a multiple of 32); every thread gets the total.
template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? warp_max(v) : warp_sum(v);
}

unsigned grid_for(int64_t n, int per_block) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 30));
}

// Grid-stride loop over [0, n).
#define MH_FOR_EACH(i, n)                                                                \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- norms ------------------------------------------------------------------------------------

template <typename T>
__global__ void layernorm_kernel(const float* x, const float* w, const float* b, float eps,
                                 int64_t rows, int64_t cols, T* out, float* mean, float* rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // uniform across the warp
  const float* xr = x + row * cols;
  float s = 0;
  for (int64_t i = lane; i < cols; i += kWarp) s += xr[i];
  const float m = warp_sum(s) / static_cast<float>(cols);
  float var = 0;
  for (int64_t i = lane; i < cols; i += kWarp) {
    const float d = xr[i] - m;
    var += d * d;
  }
  const float r = 1.0f / sqrtf(warp_sum(var) / static_cast<float>(cols) + eps);
  T* o = out + row * cols;
  for (int64_t i = lane; i < cols; i += kWarp) o[i] = narrow<T>((xr[i] - m) * r * w[i] + b[i]);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// residual_out = residual + branch, then its LayerNorm (kLayer, with mean) or RMSNorm into out:
// the residual add of one block and the next block's first norm in one pass over the row.
template <bool kLayer, typename T>
__global__ void add_norm_kernel(const float* residual, const float* branch, float* residual_out,
                                const float* w, const float* b, float eps, int64_t rows,
                                int64_t cols, T* out, float* mean, float* rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = residual + row * cols;
  const float* br = branch + row * cols;
  float* sr = residual_out + row * cols;
  float s = 0, ss = 0;
  for (int64_t i = lane; i < cols; i += kWarp) {
    const float v = xr[i] + br[i];
    sr[i] = v;
    s += v;
    ss += v * v;
  }
  __syncwarp();
  T* o = out + row * cols;
  if (kLayer) {
    const float m = warp_sum(s) / static_cast<float>(cols);
    float var = 0;
    for (int64_t i = lane; i < cols; i += kWarp) {
      const float d = sr[i] - m;
      var += d * d;
    }
    const float r = 1.0f / sqrtf(warp_sum(var) / static_cast<float>(cols) + eps);
    for (int64_t i = lane; i < cols; i += kWarp) o[i] = narrow<T>((sr[i] - m) * r * w[i] + b[i]);
    if (lane == 0) {
      mean[row] = m;
      rstd[row] = r;
    }
  } else {
    const float r = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(cols) + eps);
    for (int64_t i = lane; i < cols; i += kWarp) o[i] = narrow<T>(sr[i] * r * w[i]);
    if (lane == 0) rstd[row] = r;
  }
}

__global__ void layernorm_dx_kernel(const float* dout, const float* x, const float* w,
                                    const float* mean, const float* rstd, int64_t rows,
                                    int64_t cols, float* dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * cols;
  const float* g = dout + row * cols;
  const float m = mean[row], r = rstd[row];
  float sg = 0, sgx = 0;
  for (int64_t i = lane; i < cols; i += kWarp) {
    const float gw = g[i] * w[i];
    sg += gw;
    sgx += gw * (xr[i] - m) * r;
  }
  const float mean_g = warp_sum(sg) / static_cast<float>(cols);
  const float mean_gx = warp_sum(sgx) / static_cast<float>(cols);
  float* d = dx + row * cols;
  for (int64_t i = lane; i < cols; i += kWarp) {
    const float xhat = (xr[i] - m) * r;
    d[i] = (g[i] * w[i] - mean_g - xhat * mean_gx) * r;
  }
}

// Column sums over many rows: a block takes 32 columns (a warp's width, so every load is one
// 128-byte line) and kColumnWarps warps, warp w summing rows w, w + kColumnWarps, ...; then one
// warp adds the warps' partial sums in order. The order depends on the shape alone, so results
// are the same from run to run.
constexpr int kColumnWarps = 16;

// dw[c] += sum_r dout[r, c] * (x[r, c] - mean[r]) * rstd[r]; db[c] += sum_r dout[r, c].
// Without `mean` it is RMSNorm's dw (x * rstd), and db may be null.
__global__ void norm_dw_kernel(const float* dout, const float* x, const float* mean,
                               const float* rstd, int64_t rows, int64_t cols, float* dw,
                               float* db) {
  __shared__ float part_w[kColumnWarps][kWarp], part_b[kColumnWarps][kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarp + lane;
  float sw = 0, sb = 0;
  if (c < cols) {
    for (int64_t r = warp; r < rows; r += kColumnWarps) {
      const float g = dout[r * cols + c];
      const float centred = mean != nullptr ? x[r * cols + c] - mean[r] : x[r * cols + c];
      sw += g * centred * rstd[r];
      sb += g;
    }
  }
  part_w[warp][lane] = sw;
  part_b[warp][lane] = sb;
  __syncthreads();
  if (warp == 0 && c < cols) {
    float tw = dw[c], tb = db != nullptr ? db[c] : 0.0f;
    for (int w = 0; w < kColumnWarps; ++w) {
      tw += part_w[w][lane];
      tb += part_b[w][lane];
    }
    dw[c] = tw;
    if (db != nullptr) db[c] = tb;
  }
}

unsigned column_blocks(int64_t cols) { return grid_for(cols, kWarp); }

template <typename T>
__global__ void rmsnorm_kernel(const float* x, const float* w, float eps, int64_t rows,
                               int64_t cols, T* out, float* rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * cols;
  float ss = 0;
  for (int64_t i = lane; i < cols; i += kWarp) ss += xr[i] * xr[i];
  const float r = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(cols) + eps);
  T* o = out + row * cols;
  for (int64_t i = lane; i < cols; i += kWarp) o[i] = narrow<T>(xr[i] * r * w[i]);
  if (lane == 0) rstd[row] = r;
}

__global__ void rmsnorm_dx_kernel(const float* dout, const float* x, const float* w,
                                  const float* rstd, int64_t rows, int64_t cols, float* dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * cols;
  const float* g = dout + row * cols;
  float dot = 0;
  for (int64_t i = lane; i < cols; i += kWarp) dot += g[i] * w[i] * xr[i];
  const float s = rstd[row];
  const float k = warp_sum(dot) * s * s * s / static_cast<float>(cols);
  float* d = dx + row * cols;
  for (int64_t i = lane; i < cols; i += kWarp) d[i] = g[i] * w[i] * s - xr[i] * k;
}

// ---- elementwise ------------------------------------------------------------------------------

__device__ __forceinline__ float gelu_tanh(float v) {
  return 0.5f * v * (1.0f + tanhf(kGeluC * (v + 0.044715f * v * v * v)));
}
__device__ __forceinline__ float gelu_tanh_derivative(float v) {
  const float t = tanhf(kGeluC * (v + 0.044715f * v * v * v));
  const float du = kGeluC * (1.0f + 3.0f * 0.044715f * v * v);
  return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
}

template <typename T>
__global__ void gelu_kernel(const float* x, int64_t n, T* out) {
  MH_FOR_EACH(i, n) out[i] = narrow<T>(gelu_tanh(x[i]));
}

template <typename T>
__global__ void gelu_backward_kernel(const float* dout, const float* x, int64_t n, T* dx) {
  MH_FOR_EACH(i, n) dx[i] = narrow<T>(dout[i] * gelu_tanh_derivative(x[i]));
}

__global__ void gelu_glu_kernel(const float* gate, const float* up, int64_t n, float* out) {
  MH_FOR_EACH(i, n) out[i] = gelu_tanh(gate[i]) * up[i];
}

__global__ void gelu_glu_backward_kernel(const float* dout, const float* gate, const float* up,
                                         int64_t n, float* dgate, float* dup) {
  MH_FOR_EACH(i, n) {
    dup[i] = dout[i] * gelu_tanh(gate[i]);
    dgate[i] = dout[i] * up[i] * gelu_tanh_derivative(gate[i]);
  }
}

__global__ void scale_kernel(float* x, int64_t n, float alpha) {
  MH_FOR_EACH(i, n) x[i] *= alpha;
}

__global__ void softcap_kernel(float* x, int64_t n, float cap) {
  MH_FOR_EACH(i, n) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void softcap_backward_kernel(float* dy, const float* y, int64_t n, float cap) {
  MH_FOR_EACH(i, n) {
    const float t = y[i] / cap;
    dy[i] *= 1.0f - t * t;
  }
}

template <typename T>
__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, T* out) {
  MH_FOR_EACH(i, n) {
    const float g = gate[i];
    out[i] = narrow<T>(g / (1.0f + expf(-g)) * up[i]);
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const float* dout, const float* gate, const float* up,
                                       int64_t n, T* dgate, T* dup) {
  MH_FOR_EACH(i, n) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    dup[i] = narrow<T>(dout[i] * g * sig);
    dgate[i] = narrow<T>(dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig)));
  }
}

__global__ void embedding_kernel(const float* table, const int32_t* ids, int64_t n, int64_t cols,
                                 float* out) {
  MH_FOR_EACH(i, n * cols) {
    out[i] = table[static_cast<int64_t>(ids[i / cols]) * cols + i % cols];
  }
}

// A block per distinct id, threads across the columns, adding that id's rows in token order to
// the table's row: the CPU backend's order, so the result is bit-identical to it and needs no
// atomics.
__global__ void embedding_backward_kernel(const float* dout, const int32_t* group_ids,
                                          const int32_t* starts, const int32_t* rows, int64_t cols,
                                          float* dtable) {
  const int64_t g = blockIdx.x;
  float* row = dtable + static_cast<int64_t>(group_ids[g]) * cols;
  const int32_t begin = starts[g], end = starts[g + 1];
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float s = row[c];
    for (int32_t i = begin; i < end; ++i) s += dout[static_cast<int64_t>(rows[i]) * cols + c];
    row[c] = s;
  }
}

__global__ void add_kernel(const float* a, const float* b, int64_t n, float* out) {
  MH_FOR_EACH(i, n) { out[i] = a[i] + b[i]; }
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t rows, int64_t cols) {
  MH_FOR_EACH(i, rows * cols) { x[i] += bias[i % cols]; }
}

// dbias[c] += sum_r dout[r, c], in norm_dw_kernel's order; dout fp32 or bf16.
template <typename T>
__global__ void column_sum_kernel(const T* dout, int64_t rows, int64_t cols, float* dbias) {
  __shared__ float part[kColumnWarps][kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarp + lane;
  float s = 0;
  if (c < cols) {
    for (int64_t r = warp; r < rows; r += kColumnWarps) s += widen(dout[r * cols + c]);
  }
  part[warp][lane] = s;
  __syncthreads();
  if (warp == 0 && c < cols) {
    float t = dbias[c];
    for (int w = 0; w < kColumnWarps; ++w) t += part[w][lane];
    dbias[c] = t;
  }
}

// ---- cross-entropy ----------------------------------------------------------------------------

// A block per row, fp32 arithmetic on fp32 or bf16 logits.
template <typename T>
__global__ void cross_entropy_kernel(const T* logits, const int32_t* targets, int64_t vocab,
                                     float inv_denominator, float* loss, T* dlogits) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * vocab;
  T* d = dlogits + row * vocab;
  const int32_t t = targets[row];
  // The target's logit, read before any thread writes (dlogits may be logits).
  const float target_logit = t >= 0 ? widen(l[t]) : 0.0f;
  if (t < 0) {  // an ignored row: no loss, no gradient
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) d[i] = narrow<T>(0.0f);
    if (threadIdx.x == 0) loss[row] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, widen(l[i]));
  mx = block_reduce<true>(mx);
  float s = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(widen(l[i]) - mx);
  s = block_reduce<false>(s);
  const float lse = mx + logf(s);
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float p = expf(widen(l[i]) - lse);
    d[i] = narrow<T>((p - (i == t ? 1.0f : 0.0f)) * inv_denominator);
  }
  if (threadIdx.x == 0) loss[row] = lse - target_logit;
}

// ---- RoPE ------------------------------------------------------------------------------------

// Rotates the pair (x1, x2) = (x[i], x[i + head_dim / 2]) of a head at `position` by
// position * inv_freq, cos and sin times `factor` (YaRN's attention factor; 1 otherwise).
__device__ __forceinline__ void rotate(float& x1, float& x2, float inv_freq, int32_t position,
                                       float factor, float sign) {
  const float angle = static_cast<float>(position) * inv_freq;
  const float c = cosf(angle) * factor, s = sign * sinf(angle) * factor;
  const float a = x1, b = x2;
  x1 = a * c - b * s;
  x2 = b * c + a * s;
}

__global__ void rope_kernel(float* x, int64_t rows, int64_t width, int64_t head_dim,
                            const int32_t* positions, const float* inv_freq, float factor,
                            float sign) {
  const int64_t half = head_dim / 2, heads = width / head_dim;
  MH_FOR_EACH(idx, rows * heads * half) {
    const int64_t i = idx % half, h = (idx / half) % heads, r = idx / (half * heads);
    float* xh = x + r * width + h * head_dim;
    float x1 = xh[i], x2 = xh[i + half];
    rotate(x1, x2, inv_freq[i], positions[r], factor, sign);
    xh[i] = x1;
    xh[i + half] = x2;
  }
}

// ---- attention --------------------------------------------------------------------------------

// The first key query i (of q_len, after kv_len - q_len cached) sees.
__device__ __forceinline__ int64_t first_key(int64_t window, int64_t kv_len, int64_t q_len,
                                             int64_t i) {
  const int64_t pos = kv_len - q_len + i;
  return window > 0 && pos >= window ? pos - window + 1 : 0;
}

// One query's attention over keys lo .. n-1 (rows kw apart from kb and vb), by a warp: each lane
// scores one key of every 32, an online softmax keeps the running max m and sum l, and each lane
// accumulates its own output dimensions (lane, lane + 32, ...) in acc.
__device__ __forceinline__ void attend(const float* qs, const float* kb, const float* vb,
                                       int64_t kw, int64_t lo, int64_t n, int64_t d, float scale,
                                       float softcap, int lane, float (&acc)[kPerLane], float& m,
                                       float& l) {
  m = -INFINITY;
  l = 0.0f;
  for (int e = 0; e < kPerLane; ++e) acc[e] = 0.0f;
  for (int64_t j0 = lo; j0 < n; j0 += kWarp) {
    const int64_t j = j0 + lane;
    float score = -INFINITY;
    if (j < n) {
      const float* kj = kb + j * kw;
      float dot = 0;
      for (int64_t x = 0; x < d; ++x) dot += qs[x] * kj[x];
      score = dot * scale;
      if (softcap > 0.0f) score = softcap * tanhf(score / softcap);
    }
    const float m_new = fmaxf(m, warp_max(score));  // finite: lane 0's key is always seen
    const float p = j < n ? expf(score - m_new) : 0.0f;
    const float correction = expf(m - m_new);
    l = l * correction + warp_sum(p);
    for (int e = 0; e < kPerLane; ++e) acc[e] *= correction;
    const int count = static_cast<int>(n - j0 < kWarp ? n - j0 : kWarp);
    for (int src = 0; src < count; ++src) {
      const float ps = __shfl_sync(kAll, p, src);
      const float* vj = vb + (j0 + src) * kw;
      for (int e = 0; e < kPerLane; ++e) {
        const int64_t x = lane + kWarp * e;
        if (x < d) acc[e] += ps * vj[x];
      }
    }
    m = m_new;
  }
}

// A warp per (sequence, head, query row).
__global__ void attention_kernel(AttentionDims s, const float* q, const float* k, const float* v,
                                 float* out, float* lse, float scale) {
  __shared__ float qs[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + warp;
  if (t >= s.batch * s.heads * s.q_len) return;  // uniform across the warp
  const int64_t i = t % s.q_len, h = (t / s.q_len) % s.heads, b = t / (s.q_len * s.heads);
  const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
  const int64_t qw = s.heads * d, kw = s.kv_heads * d;
  const float* qi = q + (b * s.q_len + i) * qw + h * d;
  const float* kb = k + b * s.kv_len * kw + (h / group) * d;
  const float* vb = v + b * s.kv_len * kw + (h / group) * d;
  for (int64_t x = lane; x < d; x += kWarp) qs[warp][x] = qi[x];
  __syncwarp();
  float acc[kPerLane], m, l;
  attend(qs[warp], kb, vb, kw, first_key(s.window, s.kv_len, s.q_len, i), past + i + 1, d, scale,
         s.softcap, lane, acc, m, l);
  float* o = out + (b * s.q_len + i) * qw + h * d;
  for (int e = 0; e < kPerLane; ++e) {
    const int64_t x = lane + kWarp * e;
    if (x < d) o[x] = acc[e] / l;
  }
  if (lane == 0) lse[(b * s.heads + h) * s.q_len + i] = m + logf(l);
}

// p * (dout . v - delta) for a raw score, through the soft-cap where there is one: the gradient
// at the raw (scaled) score. *p (when given) receives p.
__device__ __forceinline__ float score_grad(float raw, float softcap, float lse, float g,
                                            float* p = nullptr) {
  float score = raw, capped = 1.0f;
  if (softcap > 0.0f) {
    const float t = tanhf(raw / softcap);
    score = softcap * t;
    capped = 1.0f - t * t;
  }
  const float pr = expf(score - lse);
  if (p != nullptr) *p = pr;
  return pr * g * capped;
}

// Backward, pass 1, a warp per query row: delta_i = dout_i . out_i, and
// dq_i = scale * sum_j ds_ij k_j with p_ij = exp(q_i . k_j * scale - lse_i),
// ds_ij = p_ij (dout_i . v_j - delta_i).
__global__ void attention_dq_kernel(AttentionDims s, const float* dout, const float* q,
                                    const float* k, const float* v, const float* out,
                                    const float* lse, float scale, float* delta, float* dq) {
  __shared__ float qs[kAttentionWarps][kMaxHeadDim];
  __shared__ float gs[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + warp;
  if (t >= s.batch * s.heads * s.q_len) return;
  const int64_t i = t % s.q_len, h = (t / s.q_len) % s.heads, b = t / (s.q_len * s.heads);
  const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
  const int64_t qw = s.heads * d, kw = s.kv_heads * d;
  const int64_t at = (b * s.q_len + i) * qw + h * d;
  const float* kb = k + b * s.kv_len * kw + (h / group) * d;
  const float* vb = v + b * s.kv_len * kw + (h / group) * d;
  float dd = 0;
  for (int64_t x = lane; x < d; x += kWarp) {
    qs[warp][x] = q[at + x];
    gs[warp][x] = dout[at + x];
    dd += dout[at + x] * out[at + x];
  }
  __syncwarp();
  const int64_t row = (b * s.heads + h) * s.q_len + i;
  const float di = warp_sum(dd);
  if (lane == 0) delta[row] = di;
  const float li = lse[row];
  float acc[kPerLane] = {};
  const int64_t n = past + i + 1;
  for (int64_t j0 = first_key(s.window, s.kv_len, s.q_len, i); j0 < n; j0 += kWarp) {
    const int64_t j = j0 + lane;
    float ds = 0;
    if (j < n) {
      const float* kj = kb + j * kw;
      const float* vj = vb + j * kw;
      float sd = 0, gd = 0;
      for (int64_t x = 0; x < d; ++x) {
        sd += qs[warp][x] * kj[x];
        gd += gs[warp][x] * vj[x];
      }
      ds = score_grad(sd * scale, s.softcap, li, gd - di);
    }
    const int count = static_cast<int>(n - j0 < kWarp ? n - j0 : kWarp);
    for (int src = 0; src < count; ++src) {
      const float dss = __shfl_sync(kAll, ds, src);
      const float* kj = kb + (j0 + src) * kw;
      for (int e = 0; e < kPerLane; ++e) {
        const int64_t x = lane + kWarp * e;
        if (x < d) acc[e] += dss * kj[x];
      }
    }
  }
  for (int e = 0; e < kPerLane; ++e) {
    const int64_t x = lane + kWarp * e;
    if (x < d) dq[at + x] = acc[e] * scale;
  }
}

// Backward, pass 2, a warp per key row: it gathers from every query head of its group and every
// query that sees it, so nothing is written twice: dk_j = scale * sum_i ds_ij q_i,
// dv_j = sum_i p_ij dout_i.
__global__ void attention_dkv_kernel(AttentionDims s, const float* dout, const float* q,
                                     const float* k, const float* v, const float* lse,
                                     const float* delta, float scale, float* dk, float* dv) {
  __shared__ float ks[kAttentionWarps][kMaxHeadDim];
  __shared__ float vs[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + warp;
  if (t >= s.batch * s.kv_heads * s.kv_len) return;
  const int64_t j = t % s.kv_len, g = (t / s.kv_len) % s.kv_heads, b = t / (s.kv_len * s.kv_heads);
  const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
  const int64_t qw = s.heads * d, kw = s.kv_heads * d;
  const int64_t kat = (b * s.kv_len + j) * kw + g * d;
  for (int64_t x = lane; x < d; x += kWarp) {
    ks[warp][x] = k[kat + x];
    vs[warp][x] = v[kat + x];
  }
  __syncwarp();
  float ak[kPerLane] = {}, av[kPerLane] = {};
  const int64_t first = j - past > 0 ? j - past : 0;  // the first query that sees key j
  // One past the last: queries at positions j .. j + window - 1 see it.
  const int64_t last =
      s.window > 0 && j + s.window - past < s.q_len ? j + s.window - past : s.q_len;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t i0 = first; i0 < last; i0 += kWarp) {
      const int64_t i = i0 + lane;
      float p = 0, ds = 0;
      if (i < last) {
        const float* qi = q + (b * s.q_len + i) * qw + h * d;
        const float* gi = dout + (b * s.q_len + i) * qw + h * d;
        float sd = 0, gd = 0;
        for (int64_t x = 0; x < d; ++x) {
          sd += qi[x] * ks[warp][x];
          gd += gi[x] * vs[warp][x];
        }
        const int64_t row = (b * s.heads + h) * s.q_len + i;
        ds = score_grad(sd * scale, s.softcap, lse[row], gd - delta[row], &p);
      }
      const int count = static_cast<int>(last - i0 < kWarp ? last - i0 : kWarp);
      for (int src = 0; src < count; ++src) {
        const float dss = __shfl_sync(kAll, ds, src);
        const float ps = __shfl_sync(kAll, p, src);
        const int64_t qat = (b * s.q_len + i0 + src) * qw + h * d;
        for (int e = 0; e < kPerLane; ++e) {
          const int64_t x = lane + kWarp * e;
          if (x < d) {
            ak[e] += dss * q[qat + x];
            av[e] += ps * dout[qat + x];
          }
        }
      }
    }
  }
  for (int e = 0; e < kPerLane; ++e) {
    const int64_t x = lane + kWarp * e;
    if (x < d) {
      dk[kat + x] = ak[e] * scale;
      dv[kat + x] = av[e];
    }
  }
}

// ---- decoding against device caches -------------------------------------------------------

__global__ void kv_append_kernel(CachedAttentionDims s, const float* k, const float* v,
                                 const int32_t* slot, const int32_t* position, float* k_cache,
                                 float* v_cache) {
  const int64_t kw = s.kv_heads * s.head_dim;
  MH_FOR_EACH(i, s.rows * kw) {
    const int64_t r = i / kw, c = i % kw;
    const int64_t at = (static_cast<int64_t>(slot[r]) * s.capacity + position[r]) * kw + c;
    k_cache[at] = k[i];
    v_cache[at] = v[i];
  }
}

// attention_kernel's online softmax, a warp per (row, head), over the row's own cache.
// The fused projection's rows (q heads, then k heads, then v heads): q out dense, k and v into
// their cache rows; q and k rotated first when inv_freq is given (a thread per rotated pair), else
// copied as they are (a thread per element).
__global__ void qkv_to_cache_kernel(CachedAttentionDims s, const float* qkv, const int32_t* slot,
                                    const int32_t* position, const float* inv_freq, float factor,
                                    float* q_out, float* k_cache, float* v_cache) {
  const int64_t hd = s.head_dim, qw = s.heads * hd, kw = s.kv_heads * hd;
  const int64_t width = qw + 2 * kw, heads = s.heads + 2 * s.kv_heads;
  // Where element c of head slot hs of row r goes.
  auto target = [&](int64_t r, int64_t hs, int64_t c) -> float* {
    if (hs < s.heads) return q_out + r * qw + hs * hd + c;
    const bool is_k = hs < s.heads + s.kv_heads;
    const int64_t kv = hs - s.heads - (is_k ? 0 : s.kv_heads);
    const int64_t at = (static_cast<int64_t>(slot[r]) * s.capacity + position[r]) * kw + kv * hd;
    return (is_k ? k_cache : v_cache) + at + c;
  };
  if (inv_freq != nullptr) {
    const int64_t half = hd / 2;
    MH_FOR_EACH(idx, s.rows * heads * half) {
      const int64_t i = idx % half, hs = (idx / half) % heads, r = idx / (half * heads);
      const float* src = qkv + r * width + hs * hd;
      float x1 = src[i], x2 = src[i + half];
      if (hs < s.heads + s.kv_heads) rotate(x1, x2, inv_freq[i], position[r], factor, 1.0f);
      *target(r, hs, i) = x1;
      *target(r, hs, i + half) = x2;
    }
  } else {
    MH_FOR_EACH(idx, s.rows * width) {
      const int64_t c = idx % width, r = idx / width;
      *target(r, c / hd, c % hd) = qkv[idx];
    }
  }
}

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, f + i]: the fused gate|up projection.
template <typename T>
__global__ void swiglu_fused_kernel(const float* gate_up, int64_t rows, int64_t f, T* out) {
  MH_FOR_EACH(idx, rows * f) {
    const int64_t r = idx / f, i = idx % f;
    const float g = gate_up[r * 2 * f + i];
    out[idx] = narrow<T>(g / (1.0f + expf(-g)) * gate_up[r * 2 * f + f + i]);
  }
}

// y[r, o] = dot(W[o, :], x[r, :]) (+ bias[o]) for a few rows r: a warp per output, its lanes
// streaming the weight row in 16-byte loads, several in flight, and summing every row's product
// as they go. Decoding at small batches reads each weight once; this keeps that read at the
// memory's pace.
template <int kRowsMax>
__global__ void gemv_kernel(const __nv_bfloat16* w, const __nv_bfloat16* x, int64_t rows, int64_t n,
                            int64_t k, const float* bias, float* y) {
  constexpr int kUnroll = 4;
  const int lane = threadIdx.x % kWarp;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (o >= n) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + o * k);
  const int64_t vecs = k / 8;
  float acc[kRowsMax] = {};
  for (int64_t base = 0; base < vecs; base += kWarp * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kWarp + lane;
      wv[u] = i < vecs ? wr[i] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kWarp + lane;
      if (i >= vecs) break;
      const __nv_bfloat16* wh = reinterpret_cast<const __nv_bfloat16*>(&wv[u]);
      for (int r = 0; r < kRowsMax; ++r) {
        if (r >= rows) break;
        const uint4 xv = reinterpret_cast<const uint4*>(x + r * k)[i];
        const __nv_bfloat16* xh = reinterpret_cast<const __nv_bfloat16*>(&xv);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[r] += __bfloat162float(wh[e]) * __bfloat162float(xh[e]);
      }
    }
  }
  for (int r = 0; r < kRowsMax; ++r) {
    if (r >= rows) break;
    const float total = warp_sum(acc[r]);
    if (lane == 0) y[r * n + o] = total + (bias != nullptr ? bias[o] : 0.0f);
  }
}

template <typename T>
__global__ void cached_attention_kernel(CachedAttentionDims s, const float* q, const float* k_cache,
                                        const float* v_cache, const int32_t* slot,
                                        const int32_t* position, T* out, float scale) {
  __shared__ float qs[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + warp;
  if (t >= s.rows * s.heads) return;
  const int64_t h = t % s.heads, r = t / s.heads;
  const int64_t d = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t qw = s.heads * d, kw = s.kv_heads * d;
  const float* qi = q + r * qw + h * d;
  const int64_t base = static_cast<int64_t>(slot[r]) * s.capacity * kw + (h / group) * d;
  const float* kb = k_cache + base;
  const float* vb = v_cache + base;
  for (int64_t x = lane; x < d; x += kWarp) qs[warp][x] = qi[x];
  __syncwarp();
  float acc[kPerLane], m, l;
  const int64_t n = static_cast<int64_t>(position[r]) + 1;
  attend(qs[warp], kb, vb, kw, first_key(s.window, n, 1, 0), n, d, scale, s.softcap, lane, acc, m,
         l);
  T* o = out + r * qw + h * d;
  for (int e = 0; e < kPerLane; ++e) {
    const int64_t x = lane + kWarp * e;
    if (x < d) o[x] = narrow<T>(acc[e] / l);
  }
}

// ---- optimizer and conversions ----------------------------------------------------------------

__global__ void adamw_kernel(float* w, const float* grad, float* m, float* v, int64_t n,
                             AdamWStep s, __nv_bfloat16* copy) {
  MH_FOR_EACH(i, n) {
    const float g = grad[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
    const float wi = w[i] * s.decay - s.step_size * mi / (sqrtf(vi) / s.bc2_sqrt + s.eps);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    if (copy != nullptr) copy[i] = __float2bfloat16_rn(wi);
  }
}

// Sums in double: each block a fixed stride of x, then one block the partial sums in order.
__global__ void partial_sum_kernel(const float* x, int64_t n, bool squares, double* partial) {
  __shared__ double warp_sums[kWarp];
  double acc = 0;
  MH_FOR_EACH(i, n) {
    const double v = x[i];
    acc += squares ? v * v : v;
  }
  for (int o = kWarp / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(kAll, acc, o);
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (unsigned w = 0; w < blockDim.x / kWarp; ++w) total += warp_sums[w];
    partial[blockIdx.x] = total;
  }
}

__global__ void final_sum_kernel(const double* partial, int blocks, double scale, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double total = 0;
    for (int b = 0; b < blocks; ++b) total += partial[b];
    *out += total * scale;
  }
}

__global__ void to_bf16_kernel(const float* in, int64_t n, __nv_bfloat16* out) {
  MH_FOR_EACH(i, n) { out[i] = __float2bfloat16_rn(in[i]); }
}

__global__ void from_bf16_kernel(const __nv_bfloat16* in, int64_t n, float* out) {
  MH_FOR_EACH(i, n) { out[i] = __bfloat162float(in[i]); }
}

cudaError_t launched() { return cudaGetLastError(); }

}  // namespace

cudaError_t layernorm(const float* x, const float* w, const float* b, float eps, int64_t rows,
                      int64_t cols, float* out, float* mean, float* rstd, cudaStream_t stream) {
  layernorm_kernel<float><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      x, w, b, eps, rows, cols, out, mean, rstd);
  return launched();
}

cudaError_t layernorm(const float* x, const float* w, const float* b, float eps, int64_t rows,
                      int64_t cols, uint16_t* out, float* mean, float* rstd, cudaStream_t stream) {
  layernorm_kernel<__nv_bfloat16><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      x, w, b, eps, rows, cols, reinterpret_cast<__nv_bfloat16*>(out), mean, rstd);
  return launched();
}

template <typename T>
cudaError_t add_norm_launch(const float* residual, const float* branch, float* residual_out,
                            const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                            T* out, float* mean, float* rstd, cudaStream_t stream) {
  if (b != nullptr) {
    add_norm_kernel<true, T><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
        residual, branch, residual_out, w, b, eps, rows, cols, out, mean, rstd);
  } else {
    add_norm_kernel<false, T><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
        residual, branch, residual_out, w, b, eps, rows, cols, out, mean, rstd);
  }
  return launched();
}

cudaError_t add_norm(const float* residual, const float* branch, float* residual_out,
                     const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                     float* out, float* mean, float* rstd, cudaStream_t stream) {
  return add_norm_launch(residual, branch, residual_out, w, b, eps, rows, cols, out, mean, rstd,
                         stream);
}

cudaError_t add_norm(const float* residual, const float* branch, float* residual_out,
                     const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                     uint16_t* out, float* mean, float* rstd, cudaStream_t stream) {
  return add_norm_launch(residual, branch, residual_out, w, b, eps, rows, cols,
                         reinterpret_cast<__nv_bfloat16*>(out), mean, rstd, stream);
}

cudaError_t layernorm_backward(const float* dout, const float* x, const float* w, const float* mean,
                               const float* rstd, int64_t rows, int64_t cols, float* dx, float* dw,
                               float* db, cudaStream_t stream) {
  layernorm_dx_kernel<<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      dout, x, w, mean, rstd, rows, cols, dx);
  norm_dw_kernel<<<column_blocks(cols), kColumnWarps * kWarp, 0, stream>>>(dout, x, mean, rstd,
                                                                           rows, cols, dw, db);
  return launched();
}

cudaError_t rmsnorm(const float* x, const float* w, float eps, int64_t rows, int64_t cols,
                    float* out, float* rstd, cudaStream_t stream) {
  rmsnorm_kernel<float><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      x, w, eps, rows, cols, out, rstd);
  return launched();
}

cudaError_t rmsnorm(const float* x, const float* w, float eps, int64_t rows, int64_t cols,
                    uint16_t* out, float* rstd, cudaStream_t stream) {
  rmsnorm_kernel<__nv_bfloat16><<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(
      x, w, eps, rows, cols, reinterpret_cast<__nv_bfloat16*>(out), rstd);
  return launched();
}

cudaError_t rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd,
                             int64_t rows, int64_t cols, float* dx, float* dw,
                             cudaStream_t stream) {
  rmsnorm_dx_kernel<<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(dout, x, w, rstd,
                                                                                 rows, cols, dx);
  norm_dw_kernel<<<column_blocks(cols), kColumnWarps * kWarp, 0, stream>>>(dout, x, nullptr, rstd,
                                                                           rows, cols, dw, nullptr);
  return launched();
}

cudaError_t gelu(const float* x, int64_t n, float* out, cudaStream_t stream) {
  gelu_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, out);
  return launched();
}

cudaError_t gelu(const float* x, int64_t n, uint16_t* out, cudaStream_t stream) {
  gelu_kernel<__nv_bfloat16>
      <<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, reinterpret_cast<__nv_bfloat16*>(out));
  return launched();
}

cudaError_t gelu_backward(const float* dout, const float* x, int64_t n, float* dx,
                          cudaStream_t stream) {
  gelu_backward_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(dout, x, n, dx);
  return launched();
}

cudaError_t gelu_backward(const float* dout, const float* x, int64_t n, uint16_t* dx,
                          cudaStream_t stream) {
  gelu_backward_kernel<__nv_bfloat16><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      dout, x, n, reinterpret_cast<__nv_bfloat16*>(dx));
  return launched();
}

cudaError_t swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  swiglu_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  return launched();
}

cudaError_t swiglu(const float* gate, const float* up, int64_t n, uint16_t* out,
                   cudaStream_t stream) {
  swiglu_kernel<__nv_bfloat16><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      gate, up, n, reinterpret_cast<__nv_bfloat16*>(out));
  return launched();
}

cudaError_t swiglu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                            float* dgate, float* dup, cudaStream_t stream) {
  swiglu_backward_kernel<float>
      <<<grid_for(n, kThreads), kThreads, 0, stream>>>(dout, gate, up, n, dgate, dup);
  return launched();
}

cudaError_t swiglu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                            uint16_t* dgate, uint16_t* dup, cudaStream_t stream) {
  swiglu_backward_kernel<__nv_bfloat16><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      dout, gate, up, n, reinterpret_cast<__nv_bfloat16*>(dgate),
      reinterpret_cast<__nv_bfloat16*>(dup));
  return launched();
}

cudaError_t embedding(const float* table, const int32_t* ids, int64_t n, int64_t cols, float* out,
                      cudaStream_t stream) {
  embedding_kernel<<<grid_for(n * cols, kThreads), kThreads, 0, stream>>>(table, ids, n, cols, out);
  return launched();
}

IdGroups group_by_id(const int32_t* ids, int64_t n) {
  std::vector<uint64_t> keyed(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    keyed[static_cast<size_t>(i)] =
        (static_cast<uint64_t>(static_cast<uint32_t>(ids[i])) << 32) | static_cast<uint64_t>(i);
  }
  std::sort(keyed.begin(), keyed.end());  // by id, then by row
  IdGroups g;
  g.rows.reserve(keyed.size());
  for (size_t i = 0; i < keyed.size(); ++i) {
    const auto id = static_cast<int32_t>(keyed[i] >> 32);
    if (g.ids.empty() || g.ids.back() != id) {
      g.ids.push_back(id);
      g.starts.push_back(static_cast<int32_t>(i));
    }
    g.rows.push_back(static_cast<int32_t>(keyed[i] & 0xffffffffu));
  }
  g.starts.push_back(static_cast<int32_t>(keyed.size()));
  return g;
}

cudaError_t embedding_backward(const float* dout, const int32_t* group_ids, const int32_t* starts,
                               const int32_t* rows, int64_t groups, int64_t cols, float* dtable,
                               cudaStream_t stream) {
  if (groups == 0) return cudaSuccess;
  embedding_backward_kernel<<<static_cast<unsigned>(groups), kThreads, 0, stream>>>(
      dout, group_ids, starts, rows, cols, dtable);
  return launched();
}

cudaError_t cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                          float inv_denominator, float* loss, float* dlogits, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  cross_entropy_kernel<float><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, targets, vocab, inv_denominator, loss, dlogits);
  return launched();
}

cudaError_t cross_entropy_bf16(const uint16_t* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float inv_denominator, float* loss, uint16_t* dlogits,
                               cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  cross_entropy_kernel<__nv_bfloat16><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(logits), targets, vocab, inv_denominator, loss,
      reinterpret_cast<__nv_bfloat16*>(dlogits));
  return launched();
}

cudaError_t add(const float* a, const float* b, int64_t n, float* out, cudaStream_t stream) {
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, b, n, out);
  return launched();
}

cudaError_t scale(float* x, int64_t n, float alpha, cudaStream_t stream) {
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, alpha);
  return launched();
}

cudaError_t softcap(float* x, int64_t n, float cap, cudaStream_t stream) {
  softcap_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, cap);
  return launched();
}

cudaError_t softcap_backward(float* dy, const float* y, int64_t n, float cap, cudaStream_t stream) {
  softcap_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dy, y, n, cap);
  return launched();
}

cudaError_t gelu_glu(const float* gate, const float* up, int64_t n, float* out,
                     cudaStream_t stream) {
  gelu_glu_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  return launched();
}

cudaError_t gelu_glu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                              float* dgate, float* dup, cudaStream_t stream) {
  gelu_glu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dout, gate, up, n,
                                                                          dgate, dup);
  return launched();
}

cudaError_t add_bias(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  add_bias_kernel<<<grid_for(rows * cols, kThreads), kThreads, 0, stream>>>(x, bias, rows, cols);
  return launched();
}

cudaError_t bias_backward(const float* dout, int64_t rows, int64_t cols, float* dbias,
                          cudaStream_t stream) {
  column_sum_kernel<float>
      <<<column_blocks(cols), kColumnWarps * kWarp, 0, stream>>>(dout, rows, cols, dbias);
  return launched();
}

cudaError_t bias_backward(const uint16_t* dout, int64_t rows, int64_t cols, float* dbias,
                          cudaStream_t stream) {
  column_sum_kernel<__nv_bfloat16><<<column_blocks(cols), kColumnWarps * kWarp, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(dout), rows, cols, dbias);
  return launched();
}

cudaError_t rope(float* x, int64_t rows, int64_t width, int64_t head_dim, const int32_t* positions,
                 const float* inv_freq, float factor, float sign, cudaStream_t stream) {
  const int64_t n = rows * (width / head_dim) * (head_dim / 2);
  rope_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, rows, width, head_dim, positions,
                                                              inv_freq, factor, sign);
  return launched();
}

cudaError_t attention(const AttentionDims& s, const float* q, const float* k, const float* v,
                      float* out, float* lse, cudaStream_t stream) {
  if (s.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const float scale = s.scale > 0.0f ? s.scale : 1.0f / sqrtf(static_cast<float>(s.head_dim));
  attention_kernel<<<grid_for(s.batch * s.heads * s.q_len, kAttentionWarps),
                     kAttentionWarps * kWarp, 0, stream>>>(s, q, k, v, out, lse, scale);
  return launched();
}

cudaError_t attention_backward(const AttentionDims& s, const float* dout, const float* q,
                               const float* k, const float* v, const float* out, const float* lse,
                               float* delta, float* dq, float* dk, float* dv, cudaStream_t stream) {
  if (s.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const float scale = s.scale > 0.0f ? s.scale : 1.0f / sqrtf(static_cast<float>(s.head_dim));
  attention_dq_kernel<<<grid_for(s.batch * s.heads * s.q_len, kAttentionWarps),
                        kAttentionWarps * kWarp, 0, stream>>>(s, dout, q, k, v, out, lse, scale,
                                                              delta, dq);
  attention_dkv_kernel<<<grid_for(s.batch * s.kv_heads * s.kv_len, kAttentionWarps),
                         kAttentionWarps * kWarp, 0, stream>>>(s, dout, q, k, v, lse, delta, scale,
                                                               dk, dv);
  return launched();
}

cudaError_t kv_append(const CachedAttentionDims& s, const float* k, const float* v,
                      const int32_t* slot, const int32_t* position, float* k_cache, float* v_cache,
                      cudaStream_t stream) {
  kv_append_kernel<<<grid_for(s.rows * s.kv_heads * s.head_dim, kThreads), kThreads, 0, stream>>>(
      s, k, v, slot, position, k_cache, v_cache);
  return launched();
}

cudaError_t qkv_to_cache(const CachedAttentionDims& s, const float* qkv, const int32_t* slot,
                         const int32_t* position, const float* inv_freq, float factor,
                         float* q_out, float* k_cache, float* v_cache, cudaStream_t stream) {
  const int64_t heads = s.heads + 2 * s.kv_heads;
  const int64_t n =
      inv_freq != nullptr ? s.rows * heads * (s.head_dim / 2) : s.rows * heads * s.head_dim;
  qkv_to_cache_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      s, qkv, slot, position, inv_freq, factor, q_out, k_cache, v_cache);
  return launched();
}

cudaError_t swiglu_fused(const float* gate_up, int64_t rows, int64_t f, float* out,
                         cudaStream_t stream) {
  swiglu_fused_kernel<float>
      <<<grid_for(rows * f, kThreads), kThreads, 0, stream>>>(gate_up, rows, f, out);
  return launched();
}

cudaError_t swiglu_fused(const float* gate_up, int64_t rows, int64_t f, uint16_t* out,
                         cudaStream_t stream) {
  swiglu_fused_kernel<__nv_bfloat16><<<grid_for(rows * f, kThreads), kThreads, 0, stream>>>(
      gate_up, rows, f, reinterpret_cast<__nv_bfloat16*>(out));
  return launched();
}

template <typename T>
cudaError_t cached_attention_launch(const CachedAttentionDims& s, const float* q,
                                    const float* k_cache, const float* v_cache, const int32_t* slot,
                                    const int32_t* position, T* out, cudaStream_t stream) {
  if (s.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const float scale = s.scale > 0.0f ? s.scale : 1.0f / sqrtf(static_cast<float>(s.head_dim));
  cached_attention_kernel<T>
      <<<grid_for(s.rows * s.heads, kAttentionWarps), kAttentionWarps * kWarp, 0, stream>>>(
          s, q, k_cache, v_cache, slot, position, out, scale);
  return launched();
}

cudaError_t gemv_bf16(const uint16_t* w, const uint16_t* x, int64_t rows, int64_t n, int64_t k,
                      const float* bias, float* y, cudaStream_t stream) {
  if (rows < 1 || rows > kGemvRows || k % 8 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  constexpr int kWarpsPerBlock = 8;
  gemv_kernel<kGemvRows><<<grid_for(n, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(w), reinterpret_cast<const __nv_bfloat16*>(x), rows, n,
      k, bias, y);
  return launched();
}

cudaError_t cached_attention(const CachedAttentionDims& s, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* slot, const int32_t* position,
                             float* out, cudaStream_t stream) {
  return cached_attention_launch(s, q, k_cache, v_cache, slot, position, out, stream);
}

cudaError_t cached_attention(const CachedAttentionDims& s, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* slot, const int32_t* position,
                             uint16_t* out, cudaStream_t stream) {
  return cached_attention_launch(s, q, k_cache, v_cache, slot, position,
                                 reinterpret_cast<__nv_bfloat16*>(out), stream);
}

cudaError_t adamw(float* w, const float* grad, float* m, float* v, int64_t n, const AdamWStep& s,
                  uint16_t* bf16_copy, cudaStream_t stream) {
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      w, grad, m, v, n, s, reinterpret_cast<__nv_bfloat16*>(bf16_copy));
  return launched();
}

cudaError_t sum(const float* x, int64_t n, bool squares, double scale, double* partial, double* out,
                cudaStream_t stream) {
  partial_sum_kernel<<<kSumBlocks, kThreads, 0, stream>>>(x, n, squares, partial);
  if (cudaError_t e = launched(); e != cudaSuccess) return e;
  final_sum_kernel<<<1, kWarp, 0, stream>>>(partial, kSumBlocks, scale, out);
  return launched();
}

cudaError_t to_bf16(const float* in, int64_t n, uint16_t* out, cudaStream_t stream) {
  to_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      in, n, reinterpret_cast<__nv_bfloat16*>(out));
  return launched();
}

cudaError_t from_bf16(const uint16_t* in, int64_t n, float* out, cudaStream_t stream) {
  from_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(in), n, out);
  return launched();
}

}  // namespace mh::engine::cuda
