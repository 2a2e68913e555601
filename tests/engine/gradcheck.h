// Helpers shared by the engine's tests: random tensors, and a gradient check against central
// finite differences.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "platform/engine/tensor.h"

namespace mh::engine {

inline Tensor random_tensor(Shape shape, std::mt19937& rng, float scale = 1.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> dist(0.0f, scale);
  for (auto& v : t.values()) v = dist(rng);
  return t;
}

inline double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Checks `analytic` (dL/d`input`) against central differences of L = loss(), perturbing each
// element of `input` in place.
inline void check_gradient(const char* what, Tensor& input, const Tensor& analytic,
                           const std::function<double()>& loss, float eps = 1e-2f) {
  REQUIRE(analytic.shape() == input.shape());
  for (int64_t i = 0; i < input.numel(); ++i) {
    const float saved = input[i];
    input[i] = saved + eps;
    const double up = loss();
    input[i] = saved - eps;
    const double down = loss();
    input[i] = saved;
    const double numeric = (up - down) / (2.0 * eps);
    const std::string name = what;
    CAPTURE(name);
    CAPTURE(i);
    CHECK(std::fabs(analytic[i] - numeric) <= 2e-3 + 1e-2 * std::fabs(numeric));
  }
}

}  // namespace mh::engine
