// Armor: the strict text envelope of license and key files.
//
//   -----BEGIN MACROHARD LICENSE-----
//   Key-Id: staff-2026
//   Payload: eyJ2ZXJzaW9uIjoxLC…
//   Signature: 3q2+7w…
//   -----END MACROHARD LICENSE-----
//
// Fields come in a fixed order, one per line, "Name: value", lines end in "\n" and the file ends
// after the END line's "\n". Nothing else is accepted, so a file has exactly one meaning and any
// changed byte either changes a field's value or makes the file unreadable.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/base/status.h"

namespace mh::licensing {

using ArmorFields = std::vector<std::pair<std::string, std::string>>;

std::string encode_armor(std::string_view kind, const ArmorFields& fields);
// The values of `names`, in that order, from an armored text of `kind` ("LICENSE").
Result<std::vector<std::string>> decode_armor(std::string_view text, std::string_view kind,
                                              std::span<const std::string_view> names);

}  // namespace mh::licensing
