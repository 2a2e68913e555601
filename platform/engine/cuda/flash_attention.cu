// Tensor-core flash attention through WMMA (16 x 16 x 16 bf16 tiles, fp32 accumulators): sm_80
// and later. A block is four warps; each warp owns 16 rows of the block's 64 (queries in the
// forward and dq kernels, keys in the dk/dv kernel) and works on 64-wide tiles staged in shared
// memory. Softmax arithmetic is done by lane pairs, one row per pair, half its columns per lane.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "platform/engine/cuda/flash_attention.h"

namespace mh::engine::cuda {
namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // rows of queries or keys per block and per tile
constexpr int kWarps = 4;  // 16 rows each
constexpr int kRows = 16;  // per warp
constexpr int kThreads = kWarps * 32;
constexpr unsigned kAll = 0xffffffffu;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Leading dimensions of the shared tiles, padded (WMMA wants multiples of 8 bf16 or 4 floats,
// and fragments on 32-byte boundaries; the padding also spreads rows over the banks).
template <int HD>
struct Ld {
  static constexpr int kTileBf = HD + 8;    // [64][HD] bf16 tiles of q, k, v, dout
  static constexpr int kScore = kTile + 4;  // [16][64] fp32 scores per warp
  static constexpr int kProb = kTile + 8;   // [16][64] bf16 probabilities per warp
  static constexpr int kAcc = HD + 4;       // [16][HD] fp32 accumulators per warp
};

__host__ __device__ constexpr size_t round128(size_t bytes) { return (bytes + 127) / 128 * 128; }

// Arrays carved in order out of dynamic shared memory, each on a 128-byte boundary.
struct Carver {
  unsigned char* at;
  template <typename T>
  __device__ T* take(size_t count) {
    T* p = reinterpret_cast<T*>(at);
    at += round128(count * sizeof(T));
    return p;
  }
};
__device__ int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

// A [64][HD] bf16 tile of rows row0.. of a [rows, width] matrix, columns col0..col0 + HD, rows
// past the end zero; 16-byte loads.
template <int HD>
__device__ void load_tile(bf16* dst, const bf16* src, int64_t row0, int64_t rows, int64_t width,
                          int64_t col0) {
  constexpr int kVecs = HD / 8;
  for (int i = threadIdx.x; i < kTile * kVecs; i += kThreads) {
    const int r = i / kVecs, c = (i % kVecs) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < rows) {
      value = *reinterpret_cast<const uint4*>(src + (row0 + r) * width + col0 + c);
    }
    *reinterpret_cast<uint4*>(dst + r * Ld<HD>::kTileBf + c) = value;
  }
}

// acc[16][64] = A[16][HD] B^T, A a warp's rows of a tile, B a [64][HD] tile (so B^T is
// column-major), stored row-major into `out` (ld Ld::kScore).
template <int HD>
__device__ void rows_times_tile_t(const bf16* a, const bf16* b, float* out) {
  for (int n0 = 0; n0 < kTile; n0 += 16) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < HD; kk += 16) {
      FragA fa;
      FragBCol fb;
      wmma::load_matrix_sync(fa, a + kk, Ld<HD>::kTileBf);
      wmma::load_matrix_sync(fb, b + n0 * Ld<HD>::kTileBf + kk, Ld<HD>::kTileBf);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + n0, acc, Ld<HD>::kScore, wmma::mem_row_major);
  }
}

// acc[t] += P[16][64] B[64][HD] for the HD / 16 column tiles t, P (ld Ld::kProb) and B a tile.
template <int HD>
__device__ void probs_times_tile(const bf16* p, const bf16* b, FragC* acc) {
  for (int n0 = 0; n0 < HD; n0 += 16) {
    for (int kk = 0; kk < kTile; kk += 16) {
      FragA fa;
      FragBRow fb;
      wmma::load_matrix_sync(fa, p + kk, Ld<HD>::kProb);
      wmma::load_matrix_sync(fb, b + kk * Ld<HD>::kTileBf + n0, Ld<HD>::kTileBf);
      wmma::mma_sync(acc[n0 / 16], fa, fb, acc[n0 / 16]);
    }
  }
}

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(bf16* p, float v) { *p = __float2bfloat16_rn(v); }

// Writes a warp's [16][HD] accumulators to rows row0.. of a [rows, width] matrix (fp32 or
// bf16) at col0, through `stage` (16 x Ld::kAcc floats of shared memory); rows past the end are
// skipped.
template <int HD, typename G>
__device__ void store_rows(const FragC* acc, float* stage, G* dst, int64_t row0, int64_t rows,
                           int64_t width, int64_t col0) {
  for (int n0 = 0; n0 < HD; n0 += 16) {
    wmma::store_matrix_sync(stage + n0, acc[n0 / 16], Ld<HD>::kAcc, wmma::mem_row_major);
  }
  __syncwarp();
  const int lane = threadIdx.x % 32;
  for (int i = lane; i < kRows * HD; i += 32) {
    const int r = i / HD, c = i % HD;
    if (row0 + r < rows) put(dst + (row0 + r) * width + col0 + c, stage[r * Ld<HD>::kAcc + c]);
  }
  __syncwarp();
}

template <int HD>
size_t forward_smem() {
  return 3 * round128(kTile * Ld<HD>::kTileBf * sizeof(bf16)) +
         round128(kWarps * kRows * Ld<HD>::kScore * sizeof(float)) +
         round128(kWarps * kRows * Ld<HD>::kProb * sizeof(bf16)) +
         round128(kWarps * kRows * Ld<HD>::kAcc * sizeof(float));
}

// grid (query blocks, heads, batch); out fp32 or bf16.
template <int HD, typename Out>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(AttentionDims s, FlashStrides st, const bf16* q, const bf16* k,
                         const bf16* v, Out* out, float* lse, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Ld<HD>;
  Carver carve{smem};
  bf16* qs = carve.take<bf16>(kTile * L::kTileBf);
  bf16* ks = carve.take<bf16>(kTile * L::kTileBf);
  bf16* vs = carve.take<bf16>(kTile * L::kTileBf);
  float* scores = carve.take<float>(kWarps * kRows * L::kScore);
  bf16* probs = carve.take<bf16>(kWarps * kRows * L::kProb);
  float* accs = carve.take<float>(kWarps * kRows * L::kAcc);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sc = scores + warp * kRows * L::kScore;
  bf16* pr = probs + warp * kRows * L::kProb;
  float* o = accs + warp * kRows * L::kAcc;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t hk = h / (s.heads / s.kv_heads);
  const int64_t qw = s.heads * HD, offset = s.kv_len - s.q_len;
  const bf16* qb = q + b * s.q_len * st.q;
  const bf16* kb = k + b * s.kv_len * st.kv;
  const bf16* vb = v + b * s.kv_len * st.kv;

  load_tile<HD>(qs, qb, q0, s.q_len, st.q, h * HD);
  for (int i = lane; i < kRows * L::kAcc; i += 32) o[i] = 0.0f;
  const int r = lane / 2, half = lane % 2;
  const int64_t qi = q0 + warp * kRows + r;
  float m = -INFINITY, l = 0.0f;
  const int64_t last_query = smaller(q0 + kTile, s.q_len) - 1;
  const int64_t last_key = smaller(s.kv_len - 1, offset + last_query);
  const int64_t key_blocks = last_key / kTile + 1;
  const bf16* my_q = qs + warp * kRows * L::kTileBf;

  for (int64_t t = 0; t < key_blocks; ++t) {
    __syncthreads();  // everyone is done with the previous tiles
    load_tile<HD>(ks, kb, t * kTile, s.kv_len, st.kv, hk * HD);
    load_tile<HD>(vs, vb, t * kTile, s.kv_len, st.kv, hk * HD);
    __syncthreads();
    rows_times_tile_t<HD>(my_q, ks, sc);
    __syncwarp();
    // The online softmax on row r, this lane's 32 columns.
    float* row = sc + r * L::kScore;
    float mx = -INFINITY;
    for (int j = half * 32; j < half * 32 + 32; ++j) {
      const int64_t kj = t * kTile + j;
      const bool seen = qi < s.q_len && kj < s.kv_len && kj <= offset + qi;
      const float x = seen ? row[j] * scale : -INFINITY;
      row[j] = x;
      mx = fmaxf(mx, x);
    }
    mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, 1));
    const float m_new = fmaxf(m, mx);
    const float alpha = m_new == -INFINITY ? 1.0f : __expf(m - m_new);
    float sum = 0.0f;
    for (int j = half * 32; j < half * 32 + 32; ++j) {
      const float p = row[j] == -INFINITY ? 0.0f : __expf(row[j] - m_new);
      sum += p;
      pr[r * L::kProb + j] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(kAll, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); ++d) o[r * L::kAcc + d] *= alpha;
    __syncwarp();
    // o += p v, through the accumulator tiles in shared memory (rescaled above).
    for (int n0 = 0; n0 < HD; n0 += 16) {
      FragC acc;
      wmma::load_matrix_sync(acc, o + n0, L::kAcc, wmma::mem_row_major);
      for (int kk = 0; kk < kTile; kk += 16) {
        FragA fa;
        FragBRow fb;
        wmma::load_matrix_sync(fa, pr + kk, L::kProb);
        wmma::load_matrix_sync(fb, vs + kk * L::kTileBf + n0, L::kTileBf);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(o + n0, acc, L::kAcc, wmma::mem_row_major);
    }
    __syncwarp();
  }
  if (qi < s.q_len) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    Out* dst = out + (b * s.q_len + qi) * qw + h * HD;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); ++d) {
      put(dst + d, o[r * L::kAcc + d] * inv);
    }
    if (half == 0) lse[(b * s.heads + h) * s.q_len + qi] = m + logf(l);
  }
}

// delta[b, h, i] = sum_d dout[row, h, d] * out[row, h, d]: a warp per (row, head).
template <typename Out>
__global__ void delta_kernel(AttentionDims s, const float* dout, const Out* out, float* delta) {
  const int64_t warps = s.batch * s.q_len * s.heads;
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= warps) return;
  const int64_t h = w % s.heads, row = w / s.heads;
  const int64_t b = row / s.q_len, i = row % s.q_len;
  const float* g = dout + row * s.heads * s.head_dim + h * s.head_dim;
  const Out* o = out + row * s.heads * s.head_dim + h * s.head_dim;
  float acc = 0.0f;
  for (int64_t d = lane; d < s.head_dim; d += 32) acc += g[d] * widen(o[d]);
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(kAll, acc, off);
  if (lane == 0) delta[(b * s.heads + h) * s.q_len + i] = acc;
}

template <int HD>
size_t backward_smem() {
  // Four bf16 tiles, scores and their gradients (fp32), two bf16 probability tiles; the fp32
  // staging of the results reuses the scores.
  return 4 * round128(kTile * Ld<HD>::kTileBf * sizeof(bf16)) +
         2 * round128(kWarps * kRows * Ld<HD>::kScore * sizeof(float)) +
         2 * round128(kWarps * kRows * Ld<HD>::kProb * sizeof(bf16)) +
         2 * round128(kTile * sizeof(float));
}

// dq for a block of 64 queries: over the key blocks it sees, P = exp(q k^T * scale - lse),
// dP = dout v^T, dS = P (dP - delta) scale, dq += dS k. grid (query blocks, heads, batch).
template <int HD, typename G>
__global__ void __launch_bounds__(kThreads)
    flash_dq_kernel(AttentionDims s, FlashStrides st, const bf16* q, const bf16* k, const bf16* v,
                    const bf16* dout, const float* lse, const float* delta, G* dq, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Ld<HD>;
  Carver carve{smem};
  bf16* qs = carve.take<bf16>(kTile * L::kTileBf);
  bf16* gs = carve.take<bf16>(kTile * L::kTileBf);
  bf16* ks = carve.take<bf16>(kTile * L::kTileBf);
  bf16* vs = carve.take<bf16>(kTile * L::kTileBf);
  // scores and dscores are adjacent: together they stage the result.
  float* scores = carve.take<float>(kWarps * kRows * L::kScore);
  float* dscores = carve.take<float>(kWarps * kRows * L::kScore);
  bf16* ds_all = carve.take<bf16>(kWarps * kRows * L::kProb);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sc = scores + warp * kRows * L::kScore;
  float* dp = dscores + warp * kRows * L::kScore;
  bf16* ds = ds_all + warp * kRows * L::kProb;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t hk = h / (s.heads / s.kv_heads);
  const int64_t qw = s.heads * HD, offset = s.kv_len - s.q_len;
  load_tile<HD>(qs, q + b * s.q_len * st.q, q0, s.q_len, st.q, h * HD);
  load_tile<HD>(gs, dout + b * s.q_len * qw, q0, s.q_len, qw, h * HD);
  const int r = lane / 2, half = lane % 2;
  const int64_t qi = q0 + warp * kRows + r;
  const bool live = qi < s.q_len;
  const float row_lse = live ? lse[(b * s.heads + h) * s.q_len + qi] : 0.0f;
  const float row_delta = live ? delta[(b * s.heads + h) * s.q_len + qi] : 0.0f;
  FragC acc[HD / 16];
  for (auto& a : acc) wmma::fill_fragment(a, 0.0f);
  const int64_t last_query = smaller(q0 + kTile, s.q_len) - 1;
  const int64_t key_blocks = smaller(s.kv_len - 1, offset + last_query) / kTile + 1;
  const bf16* my_q = qs + warp * kRows * L::kTileBf;
  const bf16* my_g = gs + warp * kRows * L::kTileBf;

  for (int64_t t = 0; t < key_blocks; ++t) {
    __syncthreads();
    load_tile<HD>(ks, k + b * s.kv_len * st.kv, t * kTile, s.kv_len, st.kv, hk * HD);
    load_tile<HD>(vs, v + b * s.kv_len * st.kv, t * kTile, s.kv_len, st.kv, hk * HD);
    __syncthreads();
    rows_times_tile_t<HD>(my_q, ks, sc);
    rows_times_tile_t<HD>(my_g, vs, dp);
    __syncwarp();
    for (int j = half * 32; j < half * 32 + 32; ++j) {
      const int64_t kj = t * kTile + j;
      const bool seen = live && kj < s.kv_len && kj <= offset + qi;
      const float p = seen ? __expf(sc[r * L::kScore + j] * scale - row_lse) : 0.0f;
      ds[r * L::kProb + j] = __float2bfloat16_rn(p * (dp[r * L::kScore + j] - row_delta) * scale);
    }
    __syncwarp();
    probs_times_tile<HD>(ds, ks, acc);
  }
  __syncthreads();  // the scores are free: stage the result there
  store_rows<HD, G>(acc, scores + warp * kRows * L::kAcc, dq + b * s.q_len * st.dq,
                    q0 + warp * kRows, s.q_len, st.dq, h * HD);
}

// dk and dv for a block of 64 keys of one kv head, summed over the query heads that read it and
// the query blocks that see it: P^T = exp(k q^T * scale - lse), dv += P^T dout,
// dP^T = v dout^T, dS^T = P^T (dP^T - delta) scale, dk += dS^T q. grid (key blocks, kv heads,
// batch).
template <int HD, typename G>
__global__ void __launch_bounds__(kThreads)
    flash_dkv_kernel(AttentionDims s, FlashStrides st, const bf16* q, const bf16* k, const bf16* v,
                     const bf16* dout, const float* lse, const float* delta, G* dk, G* dv,
                     float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Ld<HD>;
  Carver carve{smem};
  bf16* ks = carve.take<bf16>(kTile * L::kTileBf);
  bf16* vs = carve.take<bf16>(kTile * L::kTileBf);
  bf16* qs = carve.take<bf16>(kTile * L::kTileBf);
  bf16* gs = carve.take<bf16>(kTile * L::kTileBf);
  float* scores = carve.take<float>(kWarps * kRows * L::kScore);
  float* dscores = carve.take<float>(kWarps * kRows * L::kScore);
  bf16* p_all = carve.take<bf16>(kWarps * kRows * L::kProb);
  bf16* ds_all = carve.take<bf16>(kWarps * kRows * L::kProb);
  float* lse_s = carve.take<float>(kTile);
  float* delta_s = carve.take<float>(kTile);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sc = scores + warp * kRows * L::kScore;
  float* dp = dscores + warp * kRows * L::kScore;
  bf16* pt = p_all + warp * kRows * L::kProb;
  bf16* dst = ds_all + warp * kRows * L::kProb;
  const int64_t b = blockIdx.z, hk = blockIdx.y, k0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t qw = s.heads * HD, offset = s.kv_len - s.q_len;
  load_tile<HD>(ks, k + b * s.kv_len * st.kv, k0, s.kv_len, st.kv, hk * HD);
  load_tile<HD>(vs, v + b * s.kv_len * st.kv, k0, s.kv_len, st.kv, hk * HD);
  const int r = lane / 2, half = lane % 2;
  const int64_t kj = k0 + warp * kRows + r;
  FragC acc_k[HD / 16], acc_v[HD / 16];
  for (auto& a : acc_k) wmma::fill_fragment(a, 0.0f);
  for (auto& a : acc_v) wmma::fill_fragment(a, 0.0f);
  const bf16* my_k = ks + warp * kRows * L::kTileBf;
  const bf16* my_v = vs + warp * kRows * L::kTileBf;
  // The first query that sees key k0 is k0 - offset.
  const int64_t first_block = (k0 - offset > 0 ? k0 - offset : 0) / kTile;
  const int64_t query_blocks = (s.q_len + kTile - 1) / kTile;

  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    for (int64_t t = first_block; t < query_blocks; ++t) {
      const int64_t i0 = t * kTile;
      __syncthreads();
      load_tile<HD>(qs, q + b * s.q_len * st.q, i0, s.q_len, st.q, h * HD);
      load_tile<HD>(gs, dout + b * s.q_len * qw, i0, s.q_len, qw, h * HD);
      for (int i = threadIdx.x; i < kTile; i += kThreads) {
        const bool live = i0 + i < s.q_len;
        lse_s[i] = live ? lse[(b * s.heads + h) * s.q_len + i0 + i] : 0.0f;
        delta_s[i] = live ? delta[(b * s.heads + h) * s.q_len + i0 + i] : 0.0f;
      }
      __syncthreads();
      rows_times_tile_t<HD>(my_k, qs, sc);  // [16 keys][64 queries]
      rows_times_tile_t<HD>(my_v, gs, dp);
      __syncwarp();
      for (int i = half * 32; i < half * 32 + 32; ++i) {
        const int64_t qi = i0 + i;
        const bool seen = qi < s.q_len && kj < s.kv_len && kj <= offset + qi;
        const float p = seen ? __expf(sc[r * L::kScore + i] * scale - lse_s[i]) : 0.0f;
        pt[r * L::kProb + i] = __float2bfloat16_rn(p);
        dst[r * L::kProb + i] =
            __float2bfloat16_rn(p * (dp[r * L::kScore + i] - delta_s[i]) * scale);
      }
      __syncwarp();
      probs_times_tile<HD>(pt, gs, acc_v);
      probs_times_tile<HD>(dst, qs, acc_k);
    }
  }
  __syncthreads();
  float* stage = scores + warp * kRows * L::kAcc;
  store_rows<HD, G>(acc_k, stage, dk + b * s.kv_len * st.dkv, k0 + warp * kRows, s.kv_len, st.dkv,
                    hk * HD);
  store_rows<HD, G>(acc_v, stage, dv + b * s.kv_len * st.dkv, k0 + warp * kRows, s.kv_len, st.dkv,
                    hk * HD);
}

cudaError_t launched() { return cudaGetLastError(); }

unsigned blocks_of(int64_t n) { return static_cast<unsigned>((n + kTile - 1) / kTile); }

template <int HD, typename Out>
cudaError_t forward(const AttentionDims& s, const FlashStrides& st, const bf16* q, const bf16* k,
                    const bf16* v, Out* out, float* lse, cudaStream_t stream) {
  const size_t smem = forward_smem<HD>();
  if (cudaError_t e =
          cudaFuncSetAttribute(flash_forward_kernel<HD, Out>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid(blocks_of(s.q_len), static_cast<unsigned>(s.heads),
                  static_cast<unsigned>(s.batch));
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  flash_forward_kernel<HD, Out><<<grid, kThreads, smem, stream>>>(s, st, q, k, v, out, lse, scale);
  return launched();
}

// Strides left 0 are the dense widths.
FlashStrides resolved(const AttentionDims& s, FlashStrides st) {
  if (st.q == 0) st.q = s.heads * s.head_dim;
  if (st.kv == 0) st.kv = s.kv_heads * s.head_dim;
  if (st.dq == 0) st.dq = s.heads * s.head_dim;
  if (st.dkv == 0) st.dkv = s.kv_heads * s.head_dim;
  return st;
}

template <typename Out>
cudaError_t forward_any(const AttentionDims& s, const uint16_t* q, const uint16_t* k,
                        const uint16_t* v, Out* out, float* lse, FlashStrides strides,
                        cudaStream_t stream) {
  if (s.window != 0 || s.scale != 0.0f || s.softcap != 0.0f) return cudaErrorInvalidValue;
  if (s.batch == 0 || s.q_len == 0) return cudaSuccess;
  const auto* qh = reinterpret_cast<const bf16*>(q);
  const auto* kh = reinterpret_cast<const bf16*>(k);
  const auto* vh = reinterpret_cast<const bf16*>(v);
  const FlashStrides st = resolved(s, strides);
  switch (s.head_dim) {
    case 32:
      return forward<32>(s, st, qh, kh, vh, out, lse, stream);
    case 64:
      return forward<64>(s, st, qh, kh, vh, out, lse, stream);
    case 128:
      return forward<128>(s, st, qh, kh, vh, out, lse, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template <int HD, typename G>
cudaError_t backward(const AttentionDims& s, const FlashStrides& st, const bf16* q, const bf16* k,
                     const bf16* v, const bf16* dout, const float* lse, const float* delta, G* dq,
                     G* dk, G* dv, cudaStream_t stream) {
  const size_t smem = backward_smem<HD>();
  for (const void* fn : {reinterpret_cast<const void*>(flash_dq_kernel<HD, G>),
                         reinterpret_cast<const void*>(flash_dkv_kernel<HD, G>)}) {
    if (cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem));
        e != cudaSuccess) {
      return e;
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  const dim3 dq_grid(blocks_of(s.q_len), static_cast<unsigned>(s.heads),
                     static_cast<unsigned>(s.batch));
  flash_dq_kernel<HD, G>
      <<<dq_grid, kThreads, smem, stream>>>(s, st, q, k, v, dout, lse, delta, dq, scale);
  if (cudaError_t e = launched(); e != cudaSuccess) return e;
  const dim3 kv_grid(blocks_of(s.kv_len), static_cast<unsigned>(s.kv_heads),
                     static_cast<unsigned>(s.batch));
  flash_dkv_kernel<HD, G>
      <<<kv_grid, kThreads, smem, stream>>>(s, st, q, k, v, dout, lse, delta, dk, dv, scale);
  return launched();
}

}  // namespace

bool flash_supported(int64_t head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128;
}

cudaError_t flash_attention(const AttentionDims& s, const uint16_t* q, const uint16_t* k,
                            const uint16_t* v, float* out, float* lse, cudaStream_t stream,
                            const FlashStrides& strides) {
  return forward_any(s, q, k, v, out, lse, strides, stream);
}

cudaError_t flash_attention(const AttentionDims& s, const uint16_t* q, const uint16_t* k,
                            const uint16_t* v, uint16_t* out, float* lse, cudaStream_t stream,
                            const FlashStrides& strides) {
  return forward_any(s, q, k, v, reinterpret_cast<bf16*>(out), lse, strides, stream);
}

namespace {

template <typename Out, typename G>
cudaError_t backward_any(const AttentionDims& s, const float* dout, const Out* out,
                         const uint16_t* q, const uint16_t* k, const uint16_t* v, const float* lse,
                         uint16_t* dout_bf16, float* delta, G* dq, G* dk, G* dv,
                         FlashStrides strides, cudaStream_t stream) {
  if (s.window != 0 || s.scale != 0.0f || s.softcap != 0.0f) return cudaErrorInvalidValue;
  if (s.batch == 0 || s.q_len == 0) return cudaSuccess;
  const int64_t n = s.batch * s.q_len * s.heads * s.head_dim;
  if (cudaError_t e = to_bf16(dout, n, dout_bf16, stream); e != cudaSuccess) return e;
  const int64_t warps = s.batch * s.q_len * s.heads;
  delta_kernel<Out>
      <<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, stream>>>(s, dout, out, delta);
  if (cudaError_t e = launched(); e != cudaSuccess) return e;
  const auto* qh = reinterpret_cast<const bf16*>(q);
  const auto* kh = reinterpret_cast<const bf16*>(k);
  const auto* vh = reinterpret_cast<const bf16*>(v);
  const auto* gh = reinterpret_cast<const bf16*>(dout_bf16);
  const FlashStrides st = resolved(s, strides);
  switch (s.head_dim) {
    case 32:
      return backward<32>(s, st, qh, kh, vh, gh, lse, delta, dq, dk, dv, stream);
    case 64:
      return backward<64>(s, st, qh, kh, vh, gh, lse, delta, dq, dk, dv, stream);
    case 128:
      return backward<128>(s, st, qh, kh, vh, gh, lse, delta, dq, dk, dv, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const float* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta, float* dq,
                                     float* dk, float* dv, cudaStream_t stream,
                                     const FlashStrides& strides) {
  return backward_any(s, dout, out, q, k, v, lse, dout_bf16, delta, dq, dk, dv, strides, stream);
}

cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const uint16_t* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta, float* dq,
                                     float* dk, float* dv, cudaStream_t stream,
                                     const FlashStrides& strides) {
  return backward_any(s, dout, reinterpret_cast<const bf16*>(out), q, k, v, lse, dout_bf16, delta,
                      dq, dk, dv, strides, stream);
}

cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const uint16_t* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta,
                                     uint16_t* dq, uint16_t* dk, uint16_t* dv, cudaStream_t stream,
                                     const FlashStrides& strides) {
  return backward_any(s, dout, reinterpret_cast<const bf16*>(out), q, k, v, lse, dout_bf16, delta,
                      reinterpret_cast<bf16*>(dq), reinterpret_cast<bf16*>(dk),
                      reinterpret_cast<bf16*>(dv), strides, stream);
}

}  // namespace mh::engine::cuda
