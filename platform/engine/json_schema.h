// Structured outputs: JSON Schemas as grammars (grammar.h) of the compact JSON texts that
// validate against them, so that a decoder constrained by one writes only such texts.
//
// Supported: type (one or a list), properties, required (the others optional, written in the
// schema's order when written), additionalProperties (false, true or absent: only the listed
// properties are written; with no properties, any object), items, minItems, maxItems,
// minLength, maxLength, enum, const, anyOf, allOf of one schema, $ref to "#", "#/$defs/…" or
// "#/definitions/…" (recursion included), and the annotations (title, description, default,
// examples, $schema, $id, $comment, deprecated, readOnly, writeOnly). Anything else is refused
// by name with where it is, since a keyword left out would let outputs through that the schema
// forbids. Numbers are written with at most 16 digits before and after the point and a two-digit
// exponent; the text has no whitespace outside strings.
#pragma once

#include <string>

#include "platform/base/status.h"
#include "platform/engine/grammar.h"
#include "platform/engine/json.h"

namespace mh::engine {

// The grammar of the JSON texts valid against `schema`.
Result<Grammar> json_schema_grammar(const Json& schema);
// Adds the rules of `schema` to `grammar` (errors place keywords after `where`, its "#"), and
// returns the rule its valid texts match: for grammars that embed schemas (tool calls).
Result<int32_t> add_json_schema(Grammar& grammar, const Json& schema, const std::string& where);
// Any JSON object (OpenAI's json_object response format).
Grammar json_object_grammar();

}  // namespace mh::engine
