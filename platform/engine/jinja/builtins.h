// The filters, tests and methods templates may use (render.cpp implements them); the parser
// refuses a template that names a filter or test outside these lists.
#pragma once

#include <string_view>

namespace mh::engine::jinja {

bool is_filter(std::string_view name);
bool is_test(std::string_view name);

}  // namespace mh::engine::jinja
