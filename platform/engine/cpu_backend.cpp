#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <tuple>

#include "platform/engine/backend.h"
#include "platform/engine/backend_checks.h"

#ifdef MH_ENGINE_OPENBLAS
#include <cblas.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mh::engine {
namespace {

// A fixed pool running parallel_for over index ranges; the caller's thread takes a share.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over [0, n) in contiguous pieces; small n runs inline.
  void parallel_for(int64_t n, int64_t min_per_task,
                    const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t tasks =
        std::min<int64_t>(size(), std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_task)));
    if (tasks <= 1) {
      if (n > 0) fn(0, n);
      return;
    }
    std::unique_lock lock(mutex_);
    fn_ = &fn;
    n_ = n;
    tasks_ = tasks;
    next_ = 1;  // task 0 is the caller's
    pending_ = tasks - 1;
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    run_task(0);
    lock.lock();
    while (next_ < tasks_) {  // help with what the workers have not picked up
      const int64_t t = next_++;
      lock.unlock();
      run_task(t);
      lock.lock();
      --pending_;
    }
    done_.wait(lock, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void run_task(int64_t t) {
    const int64_t begin = n_ * t / tasks_, end = n_ * (t + 1) / tasks_;
    if (begin < end) (*fn_)(begin, end);
  }
  void work() {
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || (generation_ != seen && next_ < tasks_); });
      if (stop_) return;
      seen = generation_;
      while (next_ < tasks_) {
        const int64_t t = next_++;
        lock.unlock();
        run_task(t);
        lock.lock();
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, tasks_ = 0, next_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)

float gelu_tanh(float v) { return 0.5f * v * (1.0f + std::tanh(kGeluC * (v + 0.044715f * v * v * v))); }
float gelu_tanh_derivative(float v) {
  const float t = std::tanh(kGeluC * (v + 0.044715f * v * v * v));
  const float du = kGeluC * (1.0f + 3.0f * 0.044715f * v * v);
  return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
}
constexpr int64_t kAttentionBlock = 64;        // query rows per block of scores

// Dot product with eight independent partial sums, which the compiler keeps in vector lanes.
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// sum a[i] * b[i] over n values, b 16-bit. No library multiplies fp32 by bf16 or f16 (OpenBLAS's
// sbgemv wants both operands in bf16, which would round the activations): where the CPU has
// AVX2, FMA and F16C the weights are widened in registers; elsewhere a piece at a time.
#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) inline __m256 widen(const uint16_t* p, bool bf16) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
              : _mm256_cvtph_ps(h);
}

__attribute__((target("avx2,fma,f16c"))) float dot_half_avx2(const float* a, const uint16_t* b,
                                                             int64_t n, bool bf16) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), widen(b + i, bf16), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), widen(b + i + 8, bf16), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), widen(b + i + 16, bf16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), widen(b + i + 24, bf16), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), widen(b + i, bf16), acc0);
  const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  float s = _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
  for (; i < n; ++i) s += a[i] * (bf16 ? bf16_to_float(b[i]) : f16_to_float(b[i]));
  return s;
}

#endif

float dot_half(HalfTensor::Format format, const float* a, const uint16_t* b, int64_t n) {
#if defined(__x86_64__)
  if (cpu_has_avx2_fma_f16c()) return dot_half_avx2(a, b, n, format == HalfTensor::Format::kBF16);
#endif
  constexpr int64_t kPiece = 256;
  float wide[kPiece];
  float s = 0;
  for (int64_t i = 0; i < n; i += kPiece) {
    const int64_t len = std::min(kPiece, n - i);
    half_to_float(format, b + i, len, wide);
    s += dot(a + i, wide, len);
  }
  return s;
}

// y += alpha * b over n values, b 16-bit, widened a piece at a time.
void axpy_half(HalfTensor::Format format, float alpha, const uint16_t* b, float* y, int64_t n) {
  constexpr int64_t kPiece = 256;
  float wide[kPiece];
  for (int64_t i = 0; i < n; i += kPiece) {
    const int64_t len = std::min(kPiece, n - i);
    half_to_float(format, b + i, len, wide);
    axpy(alpha, wide, y + i, len);
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads)
      : pool_(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())) {
#ifdef MH_ENGINE_OPENBLAS
    // One set of threads: OpenBLAS runs single-threaded inside this backend's pool, which
    // splits each GEMM into blocks (OpenBLAS's own threads would spin beside ours).
    openblas_set_num_threads(1);
#endif
  }
  const char* name() const override { return "cpu"; }

  void gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
            Tensor& c) override {
    int64_t m, n, k;  // not a structured binding: lambdas below capture them
    std::tie(m, n, k) = check_gemm(ta, tb, a, b, beta, c);
#ifdef MH_ENGINE_OPENBLAS
    // Blocks of C's rows (or, for few rows, of its columns), one SGEMM each.
    const int lda = static_cast<int>(a.dim(1)), ldb = static_cast<int>(b.dim(1));
    const auto op_a = ta ? CblasTrans : CblasNoTrans, op_b = tb ? CblasTrans : CblasNoTrans;
    const int64_t threads = pool_.size();
    if (m <= 4 && !ta && beta == 0.0f) {
      // A few rows (decoding): matrix-vector products over column blocks of C. SGEMM would
      // first copy all of B into its packed layout, which costs more than the product.
      const int64_t blocks = std::min<int64_t>(threads, (n + 63) / 64);
      pool_.parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const int64_t j0 = n * blk / blocks, j1 = n * (blk + 1) / blocks;
          for (int64_t i = 0; i < m; ++i) {
            // c[i, j0:j1] = alpha * op(B)[:, j0:j1]^T a[i]
            if (tb) {
              cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(j1 - j0),
                          static_cast<int>(k), alpha, b.data() + j0 * ldb, ldb, a.data() + i * lda,
                          1, 0.0f, c.data() + i * n + j0, 1);
            } else {
              cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), static_cast<int>(j1 - j0),
                          alpha, b.data() + j0, ldb, a.data() + i * lda, 1, 0.0f,
                          c.data() + i * n + j0, 1);
            }
          }
        }
      });
    } else if (m >= 32 * threads || m >= n) {
      const int64_t blocks = std::min<int64_t>(threads, (m + 15) / 16);
      pool_.parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const int64_t i0 = m * blk / blocks / 16 * 16;
          const int64_t i1 = blk + 1 == blocks ? m : m * (blk + 1) / blocks / 16 * 16;
          if (i1 <= i0) continue;
          cblas_sgemm(CblasRowMajor, op_a, op_b, static_cast<int>(i1 - i0), static_cast<int>(n),
                      static_cast<int>(k), alpha, a.data() + (ta ? i0 : i0 * lda), lda, b.data(),
                      ldb, beta, c.data() + i0 * n, static_cast<int>(n));
        }
      });
    } else {
      const int64_t blocks = std::min<int64_t>(threads, (n + 15) / 16);
      pool_.parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const int64_t j0 = n * blk / blocks / 16 * 16;
          const int64_t j1 = blk + 1 == blocks ? n : n * (blk + 1) / blocks / 16 * 16;
          if (j1 <= j0) continue;
          cblas_sgemm(CblasRowMajor, op_a, op_b, static_cast<int>(m), static_cast<int>(j1 - j0),
                      static_cast<int>(k), alpha, a.data(), lda, b.data() + (tb ? j0 * ldb : j0),
                      ldb, beta, c.data() + j0, static_cast<int>(n));
        }
      });
    }
#else
    const float* A = a.data();
    const float* B = b.data();
    float* C = c.data();
    const int64_t lda = a.dim(1), ldb = b.dim(1);
    pool_.parallel_for(m, 4, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(n));
      for (int64_t i = begin; i < end; ++i) {
        std::fill(row.begin(), row.end(), 0.0f);
        for (int64_t p = 0; p < k; ++p) {
          const float av = ta ? A[p * lda + i] : A[i * lda + p];
          if (tb) {
            for (int64_t j = 0; j < n; ++j) row[j] += av * B[j * ldb + p];
          } else {
            const float* brow = B + p * ldb;
            for (int64_t j = 0; j < n; ++j) row[j] += av * brow[j];
          }
        }
        for (int64_t j = 0; j < n; ++j) {
          C[i * n + j] = alpha * row[j] + (beta == 0.0f ? 0.0f : beta * C[i * n + j]);
        }
      }
    });
#endif
  }

  // Few rows (decoding): each weight row (or row piece) is widened as a dot product or an axpy
  // reads it, so the weights are read once at their own width. More rows: the weights are
  // widened a panel of 64 columns of op(b) at a time, and each panel goes through SGEMM.
  // Row by row, in one pass over every slice's rows: a decode step's rows each read their own
  // adapter (a few small products), which a gemm call per slice would spend more in calling than
  // in multiplying.
  void lora_rows(const Tensor& x, const std::vector<LoraSlice>& slices, Tensor& y) override {
    const int64_t in = x.dim(1), out = y.dim(1);
    std::vector<std::pair<const LoraSlice*, int64_t>> rows;
    for (const LoraSlice& s : slices) {
      for (int64_t i = s.begin; i < s.end; ++i) rows.emplace_back(&s, i);
    }
    pool_.parallel_for(static_cast<int64_t>(rows.size()), 1, [&](int64_t begin, int64_t end) {
      std::vector<float> u;
      for (int64_t k = begin; k < end; ++k) {
        const auto [s, i] = rows[static_cast<size_t>(k)];
        const bool half = s->a_half != nullptr;
        const int64_t rank = half ? s->a_half->dim(0) : s->a->dim(0);
        const float* xi = x.data() + i * in;
        float* yi = y.data() + i * out;
        u.resize(static_cast<size_t>(rank));
        for (int64_t r = 0; r < rank; ++r) {
          u[static_cast<size_t>(r)] =
              s->scale * (half ? dot_half(s->a_half->format(), xi, s->a_half->data() + r * in, in)
                               : dot(xi, s->a->data() + r * in, in));
        }
        for (int64_t r = 0; r < rank; ++r) {
          if (half) {
            axpy_half(s->bt_half->format(), u[static_cast<size_t>(r)],
                      s->bt_half->data() + r * out, yi, out);
          } else {
            axpy(u[static_cast<size_t>(r)], s->bt->data() + r * out, yi, out);
          }
        }
      }
    });
  }

  void gemm_half(bool tb, float alpha, const Tensor& a, const HalfTensor& b, float beta,
                 Tensor& c) override {
    int64_t m, n, k;
    std::tie(m, n, k) = check_gemm_half(tb, a, b, beta, c);
    const HalfTensor::Format f = b.format();
    const auto out = [&](int64_t i, int64_t j, float v) {
      float& o = c.data()[i * n + j];
      o = alpha * v + (beta == 0.0f ? 0.0f : beta * o);
    };
    if (m <= 8) {
      const int64_t blocks = std::min<int64_t>(pool_.size(), (n + 63) / 64);
      pool_.parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const int64_t j0 = n * blk / blocks, j1 = n * (blk + 1) / blocks;
          if (tb) {
            for (int64_t j = j0; j < j1; ++j) {
              for (int64_t i = 0; i < m; ++i) out(i, j, dot_half(f, a.data() + i * k, b.data() + j * k, k));
            }
            continue;
          }
          // b is [k, n]: row p of b, widened over [j0, j1), is added into each row's sums.
          const int64_t w = j1 - j0;
          std::vector<float> sums(static_cast<size_t>(m * w)), wide(static_cast<size_t>(w));
          for (int64_t p = 0; p < k; ++p) {
            half_to_float(f, b.data() + p * n + j0, w, wide.data());
            for (int64_t i = 0; i < m; ++i) axpy(a[i * k + p], wide.data(), sums.data() + i * w, w);
          }
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = j0; j < j1; ++j) out(i, j, sums[static_cast<size_t>(i * w + j - j0)]);
          }
        }
      });
      return;
    }
    constexpr int64_t kPanel = 64;
    const int64_t panels = (n + kPanel - 1) / kPanel;
    const auto widen_panel = [&](int64_t j0, int64_t w, Tensor& panel) {
      if (tb) {  // rows j0 .. j0 + w of b [n, k]: panel [w, k]
        shape_output(panel, {w, k});
        b.read(j0 * k, w * k, panel.data());
      } else {  // columns j0 .. j0 + w of b [k, n]: panel [k, w]
        shape_output(panel, {k, w});
        for (int64_t p = 0; p < k; ++p) b.read(p * n + j0, w, panel.data() + p * w);
      }
    };
#ifdef MH_ENGINE_OPENBLAS
    pool_.parallel_for(panels, 1, [&](int64_t begin, int64_t end) {
      Tensor panel;
      for (int64_t pn = begin; pn < end; ++pn) {
        const int64_t j0 = pn * kPanel, w = std::min(kPanel, n - j0);
        widen_panel(j0, w, panel);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<int>(m), static_cast<int>(w), static_cast<int>(k), alpha, a.data(),
                    static_cast<int>(k), panel.data(), static_cast<int>(panel.dim(1)), beta,
                    c.data() + j0, static_cast<int>(n));
      }
    });
#else
    Tensor panel, part;
    for (int64_t pn = 0; pn < panels; ++pn) {
      const int64_t j0 = pn * kPanel, w = std::min(kPanel, n - j0);
      widen_panel(j0, w, panel);
      gemm(false, tb, 1.0f, a, panel, 0.0f, part);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < w; ++j) out(i, j0 + j, part[i * w + j]);
      }
    }
#endif
  }

  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out,
                 Tensor& mean, Tensor& rstd) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(w, {c}, "layernorm", "w");
    expect_shape(b, {c}, "layernorm", "b");
    shape_output(out, x.shape());
    shape_output(mean, {rows});
    shape_output(rstd, {rows});
    pool_.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x.data() + r * c;
        float* o = out.data() + r * c;
        double sum = 0;
        for (int64_t i = 0; i < c; ++i) sum += xr[i];
        const float m = static_cast<float>(sum / static_cast<double>(c));
        double var = 0;
        for (int64_t i = 0; i < c; ++i) var += static_cast<double>(xr[i] - m) * (xr[i] - m);
        const float s = 1.0f / std::sqrt(static_cast<float>(var / static_cast<double>(c)) + eps);
        for (int64_t i = 0; i < c; ++i) o[i] = (xr[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
      }
    });
  }

  void layernorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dw, Tensor& db) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_same(x, dout, "layernorm_backward", "dout");
    expect_shape(dw, {c}, "layernorm_backward", "dw");
    expect_shape(db, {c}, "layernorm_backward", "db");
    shape_output(dx, x.shape());
    // dw and db sum over rows: serial in row order, so results do not depend on thread count.
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * c;
      const float* g = dout.data() + r * c;
      for (int64_t i = 0; i < c; ++i) {
        dw[i] += g[i] * (xr[i] - mean[r]) * rstd[r];
        db[i] += g[i];
      }
    }
    pool_.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x.data() + r * c;
        const float* g = dout.data() + r * c;
        float* d = dx.data() + r * c;
        float mean_g = 0, mean_gx = 0;
        for (int64_t i = 0; i < c; ++i) {
          const float xhat = (xr[i] - mean[r]) * rstd[r];
          const float gw = g[i] * w[i];
          mean_g += gw;
          mean_gx += gw * xhat;
        }
        mean_g /= static_cast<float>(c);
        mean_gx /= static_cast<float>(c);
        for (int64_t i = 0; i < c; ++i) {
          const float xhat = (xr[i] - mean[r]) * rstd[r];
          d[i] = (g[i] * w[i] - mean_g - xhat * mean_gx) * rstd[r];
        }
      }
    });
  }

  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out, Tensor& rstd) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(w, {c}, "rmsnorm", "w");
    shape_output(out, x.shape());
    shape_output(rstd, {rows});
    pool_.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x.data() + r * c;
        double ss = 0;
        for (int64_t i = 0; i < c; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(c)) + eps);
        for (int64_t i = 0; i < c; ++i) out[r * c + i] = xr[i] * s * w[i];
        rstd[r] = s;
      }
    });
  }

  void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor& dx, Tensor& dw) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_same(x, dout, "rmsnorm_backward", "dout");
    expect_shape(dw, {c}, "rmsnorm_backward", "dw");
    shape_output(dx, x.shape());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < c; ++i) dw[i] += dout[r * c + i] * x[r * c + i] * rstd[r];
    }
    pool_.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x.data() + r * c;
        const float* g = dout.data() + r * c;
        float dot = 0;
        for (int64_t i = 0; i < c; ++i) dot += g[i] * w[i] * xr[i];
        const float s = rstd[r];
        const float k = dot * s * s * s / static_cast<float>(c);
        for (int64_t i = 0; i < c; ++i) dx[r * c + i] = g[i] * w[i] * s - xr[i] * k;
      }
    });
  }

  void gelu(const Tensor& x, Tensor& out) override {
    shape_output(out, x.shape());
    elementwise(x.numel(), [&](int64_t i) { out[i] = gelu_tanh(x[i]); });
  }
  void gelu_backward(const Tensor& dout, const Tensor& x, Tensor& dx) override {
    expect_same(x, dout, "gelu_backward", "dout");
    shape_output(dx, x.shape());
    elementwise(x.numel(), [&](int64_t i) { dx[i] = dout[i] * gelu_tanh_derivative(x[i]); });
  }

  void gelu_glu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    expect_same(gate, up, "gelu_glu", "up");
    shape_output(out, gate.shape());
    elementwise(gate.numel(), [&](int64_t i) { out[i] = gelu_tanh(gate[i]) * up[i]; });
  }
  void gelu_glu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                         Tensor& dup) override {
    expect_same(gate, up, "gelu_glu_backward", "up");
    expect_same(gate, dout, "gelu_glu_backward", "dout");
    shape_output(dgate, gate.shape());
    shape_output(dup, gate.shape());
    elementwise(gate.numel(), [&](int64_t i) {
      dup[i] = dout[i] * gelu_tanh(gate[i]);
      dgate[i] = dout[i] * up[i] * gelu_tanh_derivative(gate[i]);
    });
  }

  void scale(Tensor& x, float alpha) override {
    elementwise(x.numel(), [&](int64_t i) { x[i] *= alpha; });
  }
  void softcap(Tensor& x, float cap) override {
    elementwise(x.numel(), [&](int64_t i) { x[i] = cap * std::tanh(x[i] / cap); });
  }
  void softcap_backward(Tensor& dy, const Tensor& y, float cap) override {
    expect_same(y, dy, "softcap_backward", "dy");
    elementwise(y.numel(), [&](int64_t i) {
      const float t = y[i] / cap;
      dy[i] *= 1.0f - t * t;
    });
  }

  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override {
    expect_same(gate, up, "swiglu", "up");
    shape_output(out, gate.shape());
    elementwise(gate.numel(), [&](int64_t i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    });
  }
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                       Tensor& dup) override {
    expect_same(gate, up, "swiglu_backward", "up");
    expect_same(gate, dout, "swiglu_backward", "dout");
    shape_output(dgate, gate.shape());
    shape_output(dup, gate.shape());
    elementwise(gate.numel(), [&](int64_t i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      dup[i] = dout[i] * g * sig;
      dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    });
  }

  void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) override {
    if (table.rank() != 2) throw ShapeError("embedding: table must be 2-D");
    const int64_t c = table.dim(1);
    shape_output(out, {static_cast<int64_t>(ids.size()), c});
    for (size_t i = 0; i < ids.size(); ++i) {
      check_id(ids[i], table.dim(0), "embedding");
      std::copy_n(table.data() + ids[i] * c, c, out.data() + static_cast<int64_t>(i) * c);
    }
  }
  void embedding_backward(const Tensor& dout, const std::vector<int32_t>& ids,
                          Tensor& dtable) override {
    const int64_t c = dtable.dim(1);
    expect_shape(dout, {static_cast<int64_t>(ids.size()), c}, "embedding_backward", "dout");
    for (size_t i = 0; i < ids.size(); ++i) {
      check_id(ids[i], dtable.dim(0), "embedding_backward");
      float* row = dtable.data() + ids[i] * c;
      const float* g = dout.data() + static_cast<int64_t>(i) * c;
      for (int64_t j = 0; j < c; ++j) row[j] += g[j];
    }
  }

  float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, Tensor& dlogits,
                      int64_t denominator) override {
    denominator = check_cross_entropy(logits, targets, dlogits, denominator);
    const int64_t n = logits.dim(0), v = logits.dim(1);
    std::vector<double> losses(static_cast<size_t>(n), 0.0);
    const float scale = denominator > 0 ? 1.0f / static_cast<float>(denominator) : 0.0f;
    pool_.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* z = logits.data() + r * v;
        float* d = dlogits.data() + r * v;
        if (targets[static_cast<size_t>(r)] < 0) {
          std::fill(d, d + v, 0.0f);
          continue;
        }
        const float mx = *std::max_element(z, z + v);
        // One exponential per logit, kept in dlogits and scaled once the sum is known.
        double sum = 0;
        for (int64_t j = 0; j < v; ++j) {
          d[j] = std::exp(z[j] - mx);
          sum += d[j];
        }
        const int32_t t = targets[static_cast<size_t>(r)];
        losses[static_cast<size_t>(r)] = std::log(sum) - (z[t] - mx);
        const float k = static_cast<float>(scale / sum);
        for (int64_t j = 0; j < v; ++j) d[j] *= k;
        d[t] -= scale;
      }
    });
    double total = 0;
    for (double l : losses) total += l;  // in row order: independent of the thread count
    return denominator > 0 ? static_cast<float>(total / static_cast<double>(denominator)) : 0.0f;
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    expect_same(a, b, "add", "b");
    shape_output(out, a.shape());
    elementwise(a.numel(), [&](int64_t i) { out[i] = a[i] + b[i]; });
  }

  void add_bias(Tensor& x, const Tensor& bias) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(bias, {c}, "add_bias", "bias");
    pool_.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) axpy(1.0f, bias.data(), x.data() + r * c, c);
    });
  }
  void bias_backward(const Tensor& dout, Tensor& dbias) override {
    const int64_t c = dout.dim(-1), rows = rows_of(dout);
    expect_shape(dbias, {c}, "bias_backward", "dbias");
    for (int64_t r = 0; r < rows; ++r) axpy(1.0f, dout.data() + r * c, dbias.data(), c);
  }

  void rope(Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions,
            const Rope& rope) override {
    rotate(x, head_dim, positions, rope, 1.0f, "rope");
  }
  void rope_backward(Tensor& dx, int64_t head_dim, const std::vector<int32_t>& positions,
                     const Rope& rope) override {
    rotate(dx, head_dim, positions, rope, -1.0f, "rope_backward");
  }

  void attention(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor& out, Tensor& lse) override {
    check_attention(s, q, k, v, "attention");
    shape_output(out, q.shape());
    shape_output(lse, {s.batch, s.heads, s.q_len});
#ifdef MH_ENGINE_OPENBLAS
    if (s.q_len >= kAttentionBlock / 4) {
      attention_blocked(s, q, k, v, out, lse);
      return;
    }
#endif
    const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
    const int64_t qw = s.heads * d, kw = s.kv_heads * d;
    const float scale = s.score_scale(), cap = s.softcap;
    // One task per (sequence, head, query row); each keeps one row of scores.
    pool_.parallel_for(s.batch * s.heads * s.q_len, 8, [&](int64_t begin, int64_t end) {
      std::vector<float> p(static_cast<size_t>(s.kv_len));
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i = t % s.q_len, h = (t / s.q_len) % s.heads, b = t / (s.q_len * s.heads);
        const float* qi = q.data() + (b * s.q_len + i) * qw + h * d;
        const float* kb = k.data() + b * s.kv_len * kw + (h / group) * d;
        const float* vb = v.data() + b * s.kv_len * kw + (h / group) * d;
        const int64_t lo = s.first_key(i), n = past + i + 1;
        float mx = -INFINITY;
        for (int64_t j = lo; j < n; ++j) {
          p[j] = dot(qi, kb + j * kw, d) * scale;
          if (cap > 0.0f) p[j] = cap * std::tanh(p[j] / cap);
          mx = std::max(mx, p[j]);
        }
        float sum = 0;
        for (int64_t j = lo; j < n; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        float* o = out.data() + (b * s.q_len + i) * qw + h * d;
        std::fill(o, o + d, 0.0f);
        for (int64_t j = lo; j < n; ++j) axpy(p[j] / sum, vb + j * kw, o, d);
        lse[(b * s.heads + h) * s.q_len + i] = mx + std::log(sum);
      }
    });
  }

  void attention_backward(const AttentionShape& s, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          Tensor& dq, Tensor& dk, Tensor& dv) override {
    check_attention(s, q, k, v, "attention_backward");
    expect_same(q, dout, "attention_backward", "dout");
    expect_same(q, out, "attention_backward", "out");
    expect_shape(lse, {s.batch, s.heads, s.q_len}, "attention_backward", "lse");
    shape_output(dq, q.shape());
    shape_output(dk, k.shape());
    shape_output(dv, v.shape());
    dk.fill(0.0f);
    dv.fill(0.0f);
#ifdef MH_ENGINE_OPENBLAS
    if (s.q_len >= kAttentionBlock / 4) {
      attention_backward_blocked(s, dout, q, k, v, out, lse, dq, dk, dv);
      return;
    }
#endif
    const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
    const int64_t qw = s.heads * d, kw = s.kv_heads * d;
    const float scale = s.score_scale(), cap = s.softcap;
    // delta[b, h, i] = dout_i . out_i, the softmax backward's row term.
    std::vector<float> delta(static_cast<size_t>(s.batch * s.heads * s.q_len));
    // Probabilities are recomputed from the saved log-sum-exp: p_ij = exp(score_ij - lse_i);
    // ds_ij = p_ij * (dout_i . v_j - delta_i), times the soft-cap's derivative where there is one.
    auto prob = [&](int64_t b, int64_t h, int64_t i, int64_t j, float* ds) {
      const int64_t row = (b * s.heads + h) * s.q_len + i;
      const float* qi = q.data() + (b * s.q_len + i) * qw + h * d;
      const int64_t kv = b * s.kv_len * kw + (h / group) * d + j * kw;
      float score = dot(qi, k.data() + kv, d) * scale, capped = 1.0f;
      if (cap > 0.0f) {
        const float th = std::tanh(score / cap);
        score = cap * th;
        capped = 1.0f - th * th;
      }
      const float p = std::exp(score - lse[row]);
      const float* gi = dout.data() + (b * s.q_len + i) * qw + h * d;
      *ds = p * (dot(gi, v.data() + kv, d) - delta[static_cast<size_t>(row)]) * capped;
      return p;
    };
    // Pass 1, one task per query row: delta, then dq_i = scale * sum_j ds_ij k_j.
    pool_.parallel_for(s.batch * s.heads * s.q_len, 8, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i = t % s.q_len, h = (t / s.q_len) % s.heads, b = t / (s.q_len * s.heads);
        const int64_t at = (b * s.q_len + i) * qw + h * d;
        delta[static_cast<size_t>(t)] = dot(dout.data() + at, out.data() + at, d);
        float* dqi = dq.data() + at;
        std::fill(dqi, dqi + d, 0.0f);
        for (int64_t j = s.first_key(i); j <= past + i; ++j) {
          float ds;
          prob(b, h, i, j, &ds);
          axpy(ds * scale, k.data() + b * s.kv_len * kw + (h / group) * d + j * kw, dqi, d);
        }
      }
    });
    // Pass 2, one task per key row: it gathers from every query head of its group and every
    // query that sees it, in a fixed order (no atomics, no dependence on the thread count).
    pool_.parallel_for(s.batch * s.kv_heads * s.kv_len, 8, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t j = t % s.kv_len, g = (t / s.kv_len) % s.kv_heads,
                      b = t / (s.kv_len * s.kv_heads);
        float* dkj = dk.data() + (b * s.kv_len + j) * kw + g * d;
        float* dvj = dv.data() + (b * s.kv_len + j) * kw + g * d;
        // Queries at positions j .. j + window - 1 see key j.
        const int64_t last = s.window > 0 ? std::min(s.q_len, j + s.window - past) : s.q_len;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t i = std::max<int64_t>(0, j - past); i < last; ++i) {
            float ds;
            const float p = prob(b, h, i, j, &ds);
            const int64_t at = (b * s.q_len + i) * qw + h * d;
            axpy(ds * scale, q.data() + at, dkj, d);
            axpy(p, dout.data() + at, dvj, d);
          }
        }
      }
    });
  }

 private:
  template <typename Fn>
  void elementwise(int64_t n, Fn fn) {
    pool_.parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(i);
    });
  }
#ifdef MH_ENGINE_OPENBLAS
  // Attention over blocks of query rows with SGEMM: scores for a block of rows against the keys
  // they may see (from the block's first row's first key), softmax in place, then the block's
  // output; memory is one block of scores.
  void attention_blocked(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                         Tensor& out, Tensor& lse) {
    const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
    const int qw = static_cast<int>(s.heads * d), kw = static_cast<int>(s.kv_heads * d);
    const float scale = s.score_scale(), cap = s.softcap;
    const int64_t blocks = (s.q_len + kAttentionBlock - 1) / kAttentionBlock;
    pool_.parallel_for(s.batch * s.heads * blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> p(static_cast<size_t>(kAttentionBlock * s.kv_len));
      for (int64_t t = begin; t < end; ++t) {
        const int64_t blk = t % blocks, h = (t / blocks) % s.heads, b = t / (blocks * s.heads);
        const int64_t i0 = blk * kAttentionBlock, i1 = std::min(s.q_len, i0 + kAttentionBlock);
        const int64_t c0 = s.first_key(i0);
        const int rows = static_cast<int>(i1 - i0), cols = static_cast<int>(past + i1 - c0);
        const float* qb = q.data() + (b * s.q_len + i0) * qw + h * d;
        const float* kb = k.data() + (b * s.kv_len + c0) * kw + (h / group) * d;
        const float* vb = v.data() + (b * s.kv_len + c0) * kw + (h / group) * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, static_cast<int>(d), scale,
                    qb, qw, kb, kw, 0.0f, p.data(), cols);
        for (int r = 0; r < rows; ++r) {
          float* row = p.data() + static_cast<int64_t>(r) * cols;
          // The keys this query sees, as columns.
          const int64_t lo = s.first_key(i0 + r) - c0, n = past + i0 + r + 1 - c0;
          if (cap > 0.0f) {
            for (int64_t j = lo; j < n; ++j) row[j] = cap * std::tanh(row[j] / cap);
          }
          const float mx = *std::max_element(row + lo, row + n);
          float sum = 0;
          for (int64_t j = lo; j < n; ++j) {
            row[j] = std::exp(row[j] - mx);
            sum += row[j];
          }
          const float inv = 1.0f / sum;
          for (int64_t j = lo; j < n; ++j) row[j] *= inv;
          std::fill(row, row + lo, 0.0f);
          std::fill(row + n, row + cols, 0.0f);
          lse[(b * s.heads + h) * s.q_len + i0 + r] = mx + std::log(sum);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, static_cast<int>(d), cols,
                    1.0f, p.data(), cols, vb, kw, 0.0f,
                    out.data() + (b * s.q_len + i0) * qw + h * d, qw);
      }
    });
  }

  // One task per (sequence, key/value head): it owns that head's dk and dv, and the dq of the
  // query heads that share it, so nothing is written by two threads and the order is fixed.
  void attention_backward_blocked(const AttentionShape& s, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& out,
                                  const Tensor& lse, Tensor& dq, Tensor& dk, Tensor& dv) {
    const int64_t d = s.head_dim, group = s.heads / s.kv_heads, past = s.kv_len - s.q_len;
    const int qw = static_cast<int>(s.heads * d), kw = static_cast<int>(s.kv_heads * d);
    const float scale = s.score_scale(), cap = s.softcap;
    const int64_t blocks = (s.q_len + kAttentionBlock - 1) / kAttentionBlock;
    pool_.parallel_for(s.batch * s.kv_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> p(static_cast<size_t>(kAttentionBlock * s.kv_len));
      std::vector<float> dp(p.size());
      for (int64_t t = begin; t < end; ++t) {
        const int64_t g = t % s.kv_heads, b = t / s.kv_heads;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t blk = 0; blk < blocks; ++blk) {
            const int64_t i0 = blk * kAttentionBlock, i1 = std::min(s.q_len, i0 + kAttentionBlock);
            const int64_t c0 = s.first_key(i0);
            const int rows = static_cast<int>(i1 - i0), cols = static_cast<int>(past + i1 - c0);
            const int64_t at = (b * s.q_len + i0) * qw + h * d;
            const int64_t kv_at = (b * s.kv_len + c0) * kw + g * d;
            const float* kb = k.data() + kv_at;
            const float* vb = v.data() + kv_at;
            const float* qb = q.data() + at;
            const float* gb = dout.data() + at;
            // p = softmax probabilities from the saved log-sum-exp; dp = dout v^T.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, static_cast<int>(d),
                        scale, qb, qw, kb, kw, 0.0f, p.data(), cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, static_cast<int>(d),
                        1.0f, gb, qw, vb, kw, 0.0f, dp.data(), cols);
            for (int r = 0; r < rows; ++r) {
              float* pr = p.data() + static_cast<int64_t>(r) * cols;
              float* dr = dp.data() + static_cast<int64_t>(r) * cols;
              const int64_t lo = s.first_key(i0 + r) - c0, n = past + i0 + r + 1 - c0;
              const float l = lse[(b * s.heads + h) * s.q_len + i0 + r];
              const float delta = dot(gb + static_cast<int64_t>(r) * qw,
                                      out.data() + at + static_cast<int64_t>(r) * qw, d);
              for (int64_t j = lo; j < n; ++j) {
                float score = pr[j], capped = 1.0f;
                if (cap > 0.0f) {
                  const float th = std::tanh(score / cap);
                  score = cap * th;
                  capped = 1.0f - th * th;
                }
                pr[j] = std::exp(score - l);
                dr[j] = pr[j] * (dr[j] - delta) * capped;  // ds
              }
              std::fill(pr, pr + lo, 0.0f);
              std::fill(dr, dr + lo, 0.0f);
              std::fill(pr + n, pr + cols, 0.0f);
              std::fill(dr + n, dr + cols, 0.0f);
            }
            // dq = scale * ds k; dk += scale * ds^T q; dv += p^T dout.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, static_cast<int>(d), cols,
                        scale, dp.data(), cols, kb, kw, 0.0f, dq.data() + at, qw);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, static_cast<int>(d), rows,
                        scale, dp.data(), cols, qb, qw, 1.0f, dk.data() + kv_at, kw);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, static_cast<int>(d), rows,
                        1.0f, p.data(), cols, gb, qw, 1.0f, dv.data() + kv_at, kw);
          }
        }
      }
    });
  }
#endif

  // Rotates each head's halves (x1, x2) by angle pos * inv_freq[i]: (x1 cos - x2 sin,
  // x2 cos + x1 sin), cos and sin times the attention factor; sign -1 rotates back.
  void rotate(Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions, const Rope& rope,
              float sign, const char* op) {
    check_rope(x, head_dim, positions, rope, op);
    const int64_t half = head_dim / 2, heads = x.dim(1) / head_dim;
    const float f = rope.attention_factor;
    pool_.parallel_for(x.dim(0), 4, [&](int64_t begin, int64_t end) {
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t i = 0; i < half; ++i) {
          // As Hugging Face computes it: the angle in float, then cos and sin times the factor.
          const float angle = static_cast<float>(positions[static_cast<size_t>(r)]) *
                              rope.inv_freq[static_cast<size_t>(i)];
          cs[static_cast<size_t>(i)] = std::cos(angle) * f;
          sn[static_cast<size_t>(i)] = sign * std::sin(angle) * f;
        }
        for (int64_t h = 0; h < heads; ++h) {
          float* xh = x.data() + r * x.dim(1) + h * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            const float x1 = xh[i], x2 = xh[i + half];
            xh[i] = x1 * cs[static_cast<size_t>(i)] - x2 * sn[static_cast<size_t>(i)];
            xh[i + half] = x2 * cs[static_cast<size_t>(i)] + x1 * sn[static_cast<size_t>(i)];
          }
        }
      }
    });
  }

  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace mh::engine
