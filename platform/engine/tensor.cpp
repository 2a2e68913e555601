#include "platform/engine/tensor.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace mh::engine {
namespace {

int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw ShapeError("negative dimension in " + shape_string(shape));
    n *= d;
  }
  return n;
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__)
// Eight values at a time: bf16 is the top half of a float; F16C converts f16.
__attribute__((target("avx2,f16c"))) int64_t half_to_float_avx2(HalfTensor::Format format,
                                                                 const uint16_t* in, int64_t n,
                                                                 float* out) {
  int64_t i = 0;
  if (format == HalfTensor::Format::kBF16) {
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
      _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
  }
  return i;
}

#endif

}  // namespace

bool cpu_has_avx2_fma_f16c() {
#if defined(__x86_64__)
  // AVX2 through the compiler (it checks that the OS saves the vector registers); FMA and F16C
  // from CPUID leaf 1 (ECX bits 12 and 29), which not every compiler's builtin names.
  static const bool have = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__builtin_cpu_supports("avx2") || !__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c & (1u << 12)) != 0 && (c & (1u << 29)) != 0;
  }();
  return have;
#else
  return false;
#endif
}

// Dimension i of `shape`; negative counts from the end.
int64_t dim_of(const Shape& shape, int i) {
  const int r = static_cast<int>(shape.size());
  const int at = i < 0 ? r + i : i;
  if (at < 0 || at >= r) {
    throw ShapeError("dimension " + std::to_string(i) + " of a tensor of shape " +
                     shape_string(shape));
  }
  return shape[static_cast<size_t>(at)];
}

std::string shape_string(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

Tensor::Tensor(Shape shape, float fill)
    : shape_(std::move(shape)), data_(static_cast<size_t>(count(shape_)), fill) {}

Tensor Tensor::of(Shape shape, std::vector<float> values) {
  if (count(shape) != static_cast<int64_t>(values.size())) {
    throw ShapeError("Tensor::of: shape " + shape_string(shape) + " needs " +
                     std::to_string(count(shape)) + " values, given " +
                     std::to_string(values.size()));
  }
  Tensor t;
  t.shape_ = std::move(shape);
  t.data_ = std::move(values);
  return t;
}

int64_t Tensor::dim(int i) const { return dim_of(shape_, i); }

Tensor Tensor::reshaped(Shape shape) const {
  if (count(shape) != numel()) {
    throw ShapeError("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

void Tensor::reshape(Shape shape) {
  if (count(shape) != numel()) {
    throw ShapeError("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
  }
  shape_ = std::move(shape);
}

void Tensor::fill(float value) { std::fill(data_.begin(), data_.end(), value); }

HalfTensor::HalfTensor(Shape shape, Format format)
    : shape_(std::move(shape)), format_(format), bits_(static_cast<size_t>(count(shape_))) {}

HalfTensor HalfTensor::of(const Tensor& t, Format format) {
  HalfTensor h(t.shape(), format);
  for (int64_t i = 0; i < t.numel(); ++i) {
    h.bits_[static_cast<size_t>(i)] =
        format == Format::kBF16 ? float_to_bf16(t[i]) : float_to_f16(t[i]);
  }
  return h;
}

int64_t HalfTensor::dim(int i) const { return dim_of(shape_, i); }

void HalfTensor::read(int64_t begin, int64_t n, float* out) const {
  if (begin < 0 || n < 0 || begin + n > numel()) {
    throw ShapeError("HalfTensor::read: [" + std::to_string(begin) + ", " +
                     std::to_string(begin + n) + ") is outside " + shape_string(shape_));
  }
  half_to_float(format_, bits_.data() + begin, n, out);
}

Tensor HalfTensor::to_float() const {
  Tensor t(shape_);
  read(0, numel(), t.data());
  return t;
}

void half_to_float(HalfTensor::Format format, const uint16_t* in, int64_t n, float* out) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (cpu_has_avx2_fma_f16c()) i = half_to_float_avx2(format, in, n, out);
#endif
  if (format == HalfTensor::Format::kBF16) {
    for (; i < n; ++i) out[i] = bf16_to_float(in[i]);
  } else {
    for (; i < n; ++i) out[i] = f16_to_float(in[i]);
  }
}

void expect_shape(const Tensor& t, const Shape& expected, const char* op, const char* what) {
  if (t.shape() != expected) {
    throw ShapeError(std::string(op) + ": " + what + " has shape " + shape_string(t.shape()) +
                     ", expected " + shape_string(expected));
  }
}

uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // Subnormal: normalise.
    exp = 1;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ff;
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
  }
  if (exp == 31) return bits_float(sign | 0x7f800000 | (mant << 13));
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;   // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00;  // rounds past 65504: infinity
  if (abs < 0x38800000) {                       // below F16's smallest normal: a subnormal or zero
    if (abs < 0x33000000) return sign;          // under half the smallest subnormal
    // value = mant * 2^(e - 150) and a subnormal h stands for h * 2^-24: h = mant >> (126 - e).
    const uint32_t mant = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - (abs >> 23);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t v = abs - 0x38000000;  // rebias 127 -> 15
  v += 0xfff + ((v >> 13) & 1);
  return sign | static_cast<uint16_t>(v >> 13);
}

}  // namespace mh::engine
