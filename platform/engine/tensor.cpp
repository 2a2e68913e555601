#include "platform/engine/tensor.h"

#include <algorithm>

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

}  // namespace

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

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int at = i < 0 ? r + i : i;
  if (at < 0 || at >= r) {
    throw ShapeError("dimension " + std::to_string(i) + " of a tensor of shape " +
                     shape_string(shape_));
  }
  return shape_[static_cast<size_t>(at)];
}

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

void expect_shape(const Tensor& t, const Shape& expected, const char* op, const char* what) {
  if (t.shape() != expected) {
    throw ShapeError(std::string(op) + ": " + what + " has shape " + shape_string(t.shape()) +
                     ", expected " + shape_string(expected));
  }
}

}  // namespace mh::engine
