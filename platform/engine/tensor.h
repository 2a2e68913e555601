// Tensor: a dense, row-major float32 array with a shape. The CPU backend computes in fp32 (it is
// the reference the CUDA backend is checked against). HalfTensor holds weights at the 16 bits
// (bf16 or f16) their file stores them in, for inference: the ops that take one convert its
// values to fp32 as they read them, so a model costs its file's size in memory. Shapes are
// checked by every op, and nothing broadcasts implicitly.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace mh::engine {

// Thrown by ops given tensors whose shapes do not fit: a bug in the caller, not bad input
// (inputs from outside are validated, with a Status, before they become tensors).
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);  // "[2, 3]"
// Dimension i of `shape`; negative counts from the end (-1: the last). ShapeError past its rank.
int64_t dim_of(const Shape& shape, int i);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float fill = 0.0f);
  // Takes `values` as the row-major contents; their count must match the shape.
  static Tensor of(Shape shape, std::vector<float> values);

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Dimension i; negative counts from the end (-1: the last).
  int64_t dim(int i) const;
  int64_t numel() const { return static_cast<int64_t>(data_.size()); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float& operator[](int64_t i) { return data_[static_cast<size_t>(i)]; }
  float operator[](int64_t i) const { return data_[static_cast<size_t>(i)]; }
  std::vector<float>& values() { return data_; }
  const std::vector<float>& values() const { return data_; }

  // The same values with another shape of the same element count.
  Tensor reshaped(Shape shape) const;
  // Gives this tensor another shape of the same element count, in place.
  void reshape(Shape shape);
  void fill(float value);

 private:
  Shape shape_;
  std::vector<float> data_;
};

// float <-> bfloat16 / float16, round to nearest even.
uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_f16(float f);
float f16_to_float(uint16_t h);

class HalfTensor {
 public:
  enum class Format { kBF16, kF16 };

  HalfTensor() = default;
  HalfTensor(Shape shape, Format format);
  // The values of `t` rounded to `format`.
  static HalfTensor of(const Tensor& t, Format format);

  Format format() const { return format_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;
  int64_t numel() const { return static_cast<int64_t>(bits_.size()); }
  bool empty() const { return bits_.empty(); }
  uint16_t* data() { return bits_.data(); }
  const uint16_t* data() const { return bits_.data(); }

  float at(int64_t i) const {
    const uint16_t h = bits_[static_cast<size_t>(i)];
    return format_ == Format::kBF16 ? bf16_to_float(h) : f16_to_float(h);
  }
  // Writes `count` values from element `begin` on as floats into out.
  void read(int64_t begin, int64_t count, float* out) const;
  Tensor to_float() const;

 private:
  Shape shape_;
  Format format_ = Format::kBF16;
  std::vector<uint16_t> bits_;
};

// Whether this CPU has AVX2, FMA and F16C, which the 16-bit weight kernels use when it does.
bool cpu_has_avx2_fma_f16c();

// Converts n 16-bit values of `format` to floats (vector instructions where the CPU has them).
void half_to_float(HalfTensor::Format format, const uint16_t* in, int64_t n, float* out);

// Throws ShapeError unless `t` has exactly `expected` ("what" names it in the message).
void expect_shape(const Tensor& t, const Shape& expected, const char* op, const char* what);

}  // namespace mh::engine
