#include "licensing/armor.h"

#include <fmt/format.h>

namespace mh::licensing {

std::string encode_armor(std::string_view kind, const ArmorFields& fields) {
  std::string out = fmt::format("-----BEGIN MACROHARD {}-----\n", kind);
  for (const auto& [name, value] : fields) out += fmt::format("{}: {}\n", name, value);
  out += fmt::format("-----END MACROHARD {}-----\n", kind);
  return out;
}

Result<std::vector<std::string>> decode_armor(std::string_view text, std::string_view kind,
                                              std::span<const std::string_view> names) {
  const std::string what = fmt::format("not a Macrohard {} file", kind);
  auto take_line = [&](std::string_view* line) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    *line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    return true;
  };
  std::string_view line;
  if (!take_line(&line) || line != fmt::format("-----BEGIN MACROHARD {}-----", kind)) {
    return invalid_argument(what + ": the first line must be '-----BEGIN MACROHARD " +
                            std::string(kind) + "-----'");
  }
  std::vector<std::string> values;
  for (std::string_view name : names) {
    if (!take_line(&line) || !line.starts_with(name) || line.size() < name.size() + 2 ||
        line.substr(name.size(), 2) != ": ") {
      return invalid_argument(
          fmt::format("{}: expected the field '{}: …' on line {}", what, name, values.size() + 2));
    }
    std::string_view value = line.substr(name.size() + 2);
    if (value.empty()) return invalid_argument(fmt::format("{}: '{}' is empty", what, name));
    for (char c : value) {
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
        return invalid_argument(
            fmt::format("{}: '{}' holds a space, control or non-ASCII character", what, name));
      }
    }
    values.emplace_back(value);
  }
  if (!take_line(&line) || line != fmt::format("-----END MACROHARD {}-----", kind)) {
    return invalid_argument(fmt::format("{}: expected '-----END MACROHARD {}-----' on line {}",
                                        what, kind, names.size() + 2));
  }
  if (!text.empty()) return invalid_argument(what + ": there is text after the END line");
  return values;
}

}  // namespace mh::licensing
