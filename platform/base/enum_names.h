// An enum's names on the wire and in the store, indexed by its values (0, 1, …): one table,
// read both ways.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace mh {

template <typename Enum, size_t N>
class EnumNames {
 public:
  constexpr explicit EnumNames(std::array<std::string_view, N> names) : names_(names) {}

  std::string_view name(Enum value) const { return names_.at(static_cast<size_t>(value)); }
  // The value named `name`; nullopt for a name that is none.
  std::optional<Enum> parse(std::string_view name) const {
    for (size_t i = 0; i < N; ++i) {
      if (names_[i] == name) return static_cast<Enum>(i);
    }
    return std::nullopt;
  }

 private:
  std::array<std::string_view, N> names_;
};

}  // namespace mh
