#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "platform/engine/backend.h"

#ifdef MH_ENGINE_OPENBLAS
#include <cblas.h>
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

int64_t rows_of(const Tensor& t) { return t.numel() / std::max<int64_t>(1, t.dim(-1)); }

void expect_same(const Tensor& a, const Tensor& b, const char* op, const char* what) {
  expect_shape(b, a.shape(), op, what);
}

// Output tensors are (re)shaped by the op when they do not have the right shape yet.
void shape_output(Tensor& out, const Shape& shape) {
  if (out.shape() != shape) out = Tensor(shape);
}

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads)
      : pool_(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())) {
#ifdef MH_ENGINE_OPENBLAS
    openblas_set_num_threads(pool_.size());
#endif
  }
  const char* name() const override { return "cpu"; }

  void gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
            Tensor& c) override {
    if (a.rank() != 2 || b.rank() != 2) {
      throw ShapeError("gemm: a " + shape_string(a.shape()) + " and b " + shape_string(b.shape()) +
                       " must be 2-D");
    }
    const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
    const int64_t kb = tb ? b.dim(1) : b.dim(0), n = tb ? b.dim(0) : b.dim(1);
    if (k != kb) {
      throw ShapeError("gemm: op(a) is [" + std::to_string(m) + ", " + std::to_string(k) +
                       "] but op(b) is [" + std::to_string(kb) + ", " + std::to_string(n) + "]");
    }
    if (beta == 0.0f) {
      shape_output(c, {m, n});
    } else {
      expect_shape(c, {m, n}, "gemm", "c");
    }
#ifdef MH_ENGINE_OPENBLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a.data(),
                static_cast<int>(a.dim(1)), b.data(), static_cast<int>(b.dim(1)), beta, c.data(),
                static_cast<int>(n));
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
    elementwise(x.numel(), [&](int64_t i) {
      const float v = x[i];
      out[i] = 0.5f * v * (1.0f + std::tanh(kGeluC * (v + 0.044715f * v * v * v)));
    });
  }
  void gelu_backward(const Tensor& dout, const Tensor& x, Tensor& dx) override {
    expect_same(x, dout, "gelu_backward", "dout");
    shape_output(dx, x.shape());
    elementwise(x.numel(), [&](int64_t i) {
      const float v = x[i];
      const float u = kGeluC * (v + 0.044715f * v * v * v);
      const float t = std::tanh(u);
      const float du = kGeluC * (1.0f + 3.0f * 0.044715f * v * v);
      dx[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
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

  float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                      Tensor& dlogits) override {
    if (logits.rank() != 2) throw ShapeError("cross_entropy: logits must be [N, V]");
    const int64_t n = logits.dim(0), v = logits.dim(1);
    if (static_cast<int64_t>(targets.size()) != n) {
      throw ShapeError("cross_entropy: " + std::to_string(targets.size()) + " targets for " +
                       std::to_string(n) + " rows");
    }
    shape_output(dlogits, logits.shape());
    int64_t counted = 0;
    for (int32_t t : targets) {
      if (t >= 0) {
        check_id(t, v, "cross_entropy");
        ++counted;
      }
    }
    std::vector<double> losses(static_cast<size_t>(n), 0.0);
    const float scale = counted > 0 ? 1.0f / static_cast<float>(counted) : 0.0f;
    pool_.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* z = logits.data() + r * v;
        float* d = dlogits.data() + r * v;
        if (targets[static_cast<size_t>(r)] < 0) {
          std::fill(d, d + v, 0.0f);
          continue;
        }
        const float mx = *std::max_element(z, z + v);
        double sum = 0;
        for (int64_t j = 0; j < v; ++j) sum += std::exp(static_cast<double>(z[j] - mx));
        const double log_sum = std::log(sum);
        const int32_t t = targets[static_cast<size_t>(r)];
        losses[static_cast<size_t>(r)] = log_sum - (z[t] - mx);
        for (int64_t j = 0; j < v; ++j) {
          d[j] = static_cast<float>(std::exp(z[j] - mx - log_sum)) * scale;
        }
        d[t] -= scale;
      }
    });
    double total = 0;
    for (double l : losses) total += l;  // in row order: independent of the thread count
    return counted > 0 ? static_cast<float>(total / static_cast<double>(counted)) : 0.0f;
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    expect_same(a, b, "add", "b");
    shape_output(out, a.shape());
    elementwise(a.numel(), [&](int64_t i) { out[i] = a[i] + b[i]; });
  }

 private:
  template <typename Fn>
  void elementwise(int64_t n, Fn fn) {
    pool_.parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(i);
    });
  }
  static void check_id(int32_t id, int64_t size, const char* op) {
    if (id < 0 || id >= size) {
      throw ShapeError(std::string(op) + ": id " + std::to_string(id) + " outside [0, " +
                       std::to_string(size) + ")");
    }
  }

  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace mh::engine
