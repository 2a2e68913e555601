// Tensor: a dense, row-major float32 array with a shape. The CPU backend computes in fp32 (it is
// the reference the CUDA backend is checked against); bf16/f16 exist only at the edges
// (safetensors). Shapes are checked by every op, and nothing broadcasts implicitly.
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

// Throws ShapeError unless `t` has exactly `expected` ("what" names it in the message).
void expect_shape(const Tensor& t, const Shape& expected, const char* op, const char* what);

}  // namespace mh::engine
