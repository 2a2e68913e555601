// Rng: the engine's one source of randomness (initialisation, data order, sampling). Its
// draws are defined here rather than by the standard library's distributions, whose algorithms
// differ between implementations, so a seed means the same numbers everywhere; its state
// serialises into a checkpoint.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

namespace mh::engine {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : gen_(seed) {}

  uint64_t next() { return gen_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : static_cast<uint64_t>(uniform() * n) % n; }
  // Standard normal (Box-Muller; one draw per call, no cached spare to serialise).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  // The generator's full state as text, and back (false: not a state this wrote).
  std::string state() const {
    std::ostringstream out;
    out << gen_;
    return out.str();
  }
  bool set_state(const std::string& text) {
    std::istringstream in(text);
    std::mt19937_64 g;
    in >> g;
    if (in.fail()) return false;
    gen_ = g;
    return true;
  }

 private:
  std::mt19937_64 gen_;
};

}  // namespace mh::engine
