// Fields of a JSON request body, for the protocols: each refusal is invalid_argument naming the
// field, so the client's error carries it as "param".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

#include "platform/api/transport.h"
#include "platform/base/status.h"

namespace mh::api {

// Absent or null: nullopt. Present with another type: refused.
Result<std::optional<std::string>> optional_string(const boost::json::object& body,
                                                   std::string_view key);
Result<std::optional<double>> optional_number(const boost::json::object& body,
                                              std::string_view key);
Result<std::optional<int64_t>> optional_integer(const boost::json::object& body,
                                                std::string_view key);
// Present and a string, or refused with `what` ("must be the license file's text").
Result<std::string> required_string(const boost::json::object& body, std::string_view key,
                                    std::string_view what = "must be a string");

// The request's JSON object; an empty body is an empty object (calls such as suspend and revoke
// whose fields are all optional).
Result<boost::json::object> body_or_empty(const Request& request);

}  // namespace mh::api
