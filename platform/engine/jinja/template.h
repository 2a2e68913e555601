// Template: a Jinja template as Python's Jinja2 renders it for transformers' chat templates
// (trim_blocks, lstrip_blocks, the loopcontrols extension, `{% generation %}` blocks,
// raise_exception and strftime_now, and a tojson that writes as json.dumps does).
//
// It is an interpreter of the subset real chat templates use: if / for (loop.*, else, filters,
// unpacking) / set (namespaces, blocks) / macro / break / continue; expressions with Python's
// operators, slicing, method calls on strings and dicts, filters and tests. Anything else is
// refused when the template is parsed, naming what it used. Rendering is bounded (steps, output
// size, recursion), so a hostile template fails cleanly instead of hanging or exhausting a worker.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/jinja/value.h"

namespace mh::engine::jinja {

struct RenderLimits {
  int64_t max_steps = 2'000'000;        // expressions and statements evaluated
  size_t max_output = size_t{8} << 20;  // bytes rendered
  int64_t max_depth = 64;               // nested macro calls and expressions
};

struct Rendered {
  std::string text;
  // The byte ranges `{% generation %}` blocks wrote (an assistant's turns in transformers).
  std::vector<std::pair<size_t, size_t>> generation;
};

struct Node;

class Template {
 public:
  // kInvalidArgument naming the line and what is wrong or not implemented.
  static Result<Template> parse(std::string_view source);
  // Renders with `context` (name -> value). A template that calls raise_exception, or fails
  // as Jinja2 would (an undefined value used, a type error), or exceeds `limits` fails with
  // kInvalidArgument and the reason.
  Result<Rendered> render(const Dict& context, const RenderLimits& limits = {}) const;

  // Whether the template has `{% generation %}` blocks.
  bool has_generation() const { return has_generation_; }

 private:
  std::shared_ptr<const Node> root_;
  bool has_generation_ = false;
};

}  // namespace mh::engine::jinja
