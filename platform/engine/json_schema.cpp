#include "platform/engine/json_schema.h"

#include <algorithm>
#include <map>
#include <string>

namespace mh::engine {

namespace {

using Sequence = Grammar::Sequence;

// Bounds on what a schema may ask for, so that a request cannot build a grammar without end.
constexpr int64_t kMaxCount = 1000;  // minItems, maxItems, minLength, maxLength
constexpr size_t kMaxRules = 50000;

constexpr std::string_view kAnnotations[] = {"title",    "description", "default",  "examples",
                                             "$schema",  "$id",         "$comment", "deprecated",
                                             "readOnly", "writeOnly",   "$defs",    "definitions"};
constexpr std::string_view kConstraints[] = {
    "type",      "properties", "required",   "additionalProperties",
    "items",     "minItems",   "maxItems",   "minLength",
    "maxLength", "enum",       "const",      "anyOf",
    "allOf",     "$ref",       "uniqueItems"};

template <size_t N>
bool among(const std::string_view (&list)[N], std::string_view key) {
  return std::find(std::begin(list), std::end(list), key) != std::end(list);
}

bool has_type(const Json& value, std::string_view type) {
  switch (value.type()) {
    case Json::Type::kNull:
      return type == "null";
    case Json::Type::kBool:
      return type == "boolean";
    case Json::Type::kInt:
      return type == "integer" || type == "number";
    case Json::Type::kDouble:
      return type == "number";
    case Json::Type::kString:
      return type == "string";
    case Json::Type::kArray:
      return type == "array";
    case Json::Type::kObject:
      return type == "object";
  }
  return false;
}

class SchemaCompiler {
 public:
  SchemaCompiler(Grammar& g, const Json& root) : g_(g), root_(root) {}

  Result<int32_t> compile(const std::string& where) {
    const size_t before = g_.rules();
    MH_ASSIGN_OR_RETURN(int32_t body, schema(root_, where));
    if (g_.rules() - before > kMaxRules) {
      return invalid_argument("the schema is too large for structured outputs");
    }
    return body;
  }

  int32_t any_object() {
    any_value();
    return shared("object") - 1;
  }

 private:
  static Status unsupported(std::string_view what, const std::string& where) {
    return invalid_argument(std::string(what) + " is not supported in structured outputs (at " +
                            where + ")");
  }

  Result<int64_t> count(const Json& s, std::string_view key, int64_t absent,
                        const std::string& where) {
    const Json* v = s.find(key);
    if (v == nullptr) return absent;
    if (!v->is_int() || v->as_int() < 0 || v->as_int() > kMaxCount) {
      return invalid_argument("'" + std::string(key) + "' must be an integer from 0 to " +
                              std::to_string(kMaxCount) + " (at " + where + ")");
    }
    return v->as_int();
  }

  // The rule for the values valid against `s` (a schema found at `where`).
  Result<int32_t> schema(const Json& s, const std::string& where) {
    if (auto it = rules_.find(&s); it != rules_.end()) return it->second;
    if (s.is_bool()) {
      if (!s.as_bool())
        return invalid_argument("the schema 'false' admits nothing (at " + where + ")");
      return any_value();
    }
    if (!s.is_object()) return invalid_argument("a schema must be an object (at " + where + ")");
    // Declared first, so that a schema that refers back to itself finds its rule.
    const int32_t rule = g_.declare(where);
    rules_.emplace(&s, rule);
    MH_ASSIGN_OR_RETURN(auto alternatives, body(s, where));
    g_.define(rule, std::move(alternatives));
    return rule;
  }

  Result<std::vector<Sequence>> body(const Json& s, const std::string& where) {
    size_t constraints = 0;
    for (const auto& [key, value] : s.as_object()) {
      if (among(kConstraints, key)) {
        ++constraints;
      } else if (!among(kAnnotations, key)) {
        return unsupported("'" + key + "'", where);
      }
    }
    if (const Json* unique = s.find("uniqueItems");
        unique && !(unique->is_bool() && !unique->as_bool())) {
      return unsupported("'uniqueItems'", where);
    }
    const bool lone = constraints == 1;
    if (const Json* ref = s.find("$ref")) {
      if (!lone) return unsupported("'$ref' beside other constraints", where);
      MH_ASSIGN_OR_RETURN(const Json* target, resolve(*ref, where));
      MH_ASSIGN_OR_RETURN(int32_t r, schema(*target, ref->as_string()));
      return std::vector<Sequence>{{Grammar::ref(r)}};
    }
    for (const char* combinator : {"anyOf", "allOf"}) {
      const Json* list = s.find(combinator);
      if (list == nullptr) continue;
      const std::string at = where + "/" + combinator;
      if (!lone)
        return unsupported("'" + std::string(combinator) + "' beside other constraints", where);
      if (!list->is_array() || list->as_array().empty()) {
        return invalid_argument("'" + std::string(combinator) + "' must be a non-empty array (at " +
                                where + ")");
      }
      if (std::string_view(combinator) == "allOf" && list->as_array().size() != 1) {
        return unsupported("'allOf' of more than one schema", where);
      }
      std::vector<Sequence> out;
      for (size_t i = 0; i < list->as_array().size(); ++i) {
        MH_ASSIGN_OR_RETURN(int32_t r, schema(list->as_array()[i], at + "/" + std::to_string(i)));
        out.push_back({Grammar::ref(r)});
      }
      return out;
    }
    std::vector<std::string> types;
    if (const Json* type = s.find("type")) {
      if (type->is_string()) {
        types.push_back(type->as_string());
      } else if (type->is_array()) {
        for (const Json& t : type->as_array()) {
          if (!t.is_string()) return invalid_argument("'type' must name types (at " + where + ")");
          types.push_back(t.as_string());
        }
      } else {
        return invalid_argument("'type' must be a string or an array of strings (at " + where +
                                ")");
      }
    }
    for (const char* key : {"enum", "const"}) {
      const Json* values = s.find(key);
      if (values == nullptr) continue;
      if (constraints > (s.find("type") ? 2u : 1u)) {
        return unsupported("'" + std::string(key) + "' beside constraints other than 'type'",
                           where);
      }
      std::vector<Json> listed = std::string_view(key) == "const" ? std::vector<Json>{*values}
                                 : values->is_array()             ? values->as_array()
                                                                  : std::vector<Json>{};
      std::vector<Sequence> out;
      for (const Json& v : listed) {
        const bool typed = types.empty() || std::any_of(types.begin(), types.end(),
                                                        [&](auto& t) { return has_type(v, t); });
        if (typed) out.push_back(Grammar::literal(to_json(v)));
      }
      if (out.empty()) {
        return invalid_argument("'" + std::string(key) +
                                "' lists no value of the schema's type (at " + where + ")");
      }
      return out;
    }
    if (types.empty()) {
      // No type: what the keywords imply, else any value.
      if (s.find("properties") || s.find("required") || s.find("additionalProperties")) {
        types.push_back("object");
      } else if (s.find("items") || s.find("minItems") || s.find("maxItems")) {
        types.push_back("array");
      } else if (s.find("minLength") || s.find("maxLength")) {
        types.push_back("string");
      } else {
        return std::vector<Sequence>{{Grammar::ref(any_value())}};
      }
    }
    std::vector<Sequence> out;
    for (const std::string& type : types) {
      MH_ASSIGN_OR_RETURN(Sequence one, typed(s, type, where));
      out.push_back(std::move(one));
    }
    return out;
  }

  Result<Sequence> typed(const Json& s, const std::string& type, const std::string& where) {
    if (type == "string") {
      MH_ASSIGN_OR_RETURN(int64_t min, count(s, "minLength", 0, where));
      MH_ASSIGN_OR_RETURN(int64_t max, count(s, "maxLength", -1, where));
      if (max >= 0 && min > max)
        return invalid_argument("'minLength' exceeds 'maxLength' (at " + where + ")");
      if (min == 0 && max < 0) return Sequence{Grammar::ref(any_string())};
      const int32_t chars = g_.repeat(where + "/chars", {Grammar::ref(character())}, min, max);
      return Grammar::join({Grammar::literal("\""), {Grammar::ref(chars)}, Grammar::literal("\"")});
    }
    if (type == "integer") return Sequence{Grammar::ref(integer())};
    if (type == "number") return Sequence{Grammar::ref(number())};
    if (type == "boolean") return Sequence{Grammar::ref(boolean())};
    if (type == "null") return Grammar::literal("null");
    if (type == "object") return object(s, where);
    if (type == "array") return array(s, where);
    return invalid_argument("'type' \"" + type + "\" is not a JSON Schema type (at " + where + ")");
  }

  Result<Sequence> object(const Json& s, const std::string& where) {
    const Json* properties = s.find("properties");
    if (properties && !properties->is_object()) {
      return invalid_argument("'properties' must be an object (at " + where + ")");
    }
    const Json* extra = s.find("additionalProperties");
    if (extra && !extra->is_bool()) return unsupported("'additionalProperties' as a schema", where);
    std::vector<std::string> required;
    if (const Json* r = s.find("required")) {
      if (!r->is_array()) return invalid_argument("'required' must be an array (at " + where + ")");
      for (const Json& name : r->as_array()) {
        if (!name.is_string() || !properties || !properties->find(name.as_string())) {
          return unsupported("a required property not in 'properties'", where);
        }
        required.push_back(name.as_string());
      }
    }
    if (!properties || properties->as_object().empty()) {
      if (extra && !extra->as_bool()) return Grammar::literal("{}");
      return Sequence{Grammar::ref(any_object())};
    }
    // Properties in the schema's order, each optional one skippable: first_i writes the first
    // of properties i.. (no comma before it), next_i the ones after something was written.
    const auto& members = properties->as_object();
    const int32_t empty = g_.rule(where + "/end", {{}});
    int32_t first = empty, next = empty;
    for (size_t i = members.size(); i-- > 0;) {
      const auto& [name, sub] = members[i];
      MH_ASSIGN_OR_RETURN(int32_t value, schema(sub, where + "/properties/" + name));
      std::string key;
      append_json_string(key, name);
      const Sequence member = Grammar::join({Grammar::literal(key + ":"), {Grammar::ref(value)}});
      const bool needed = std::find(required.begin(), required.end(), name) != required.end();
      Sequence with = Grammar::join({Grammar::literal(","), member, {Grammar::ref(next)}});
      Sequence start = Grammar::join({member, {Grammar::ref(next)}});
      std::vector<Sequence> next_alternatives{std::move(with)};
      std::vector<Sequence> first_alternatives{std::move(start)};
      if (!needed) {
        next_alternatives.push_back({Grammar::ref(next)});
        first_alternatives.push_back({Grammar::ref(first)});
      }
      next = g_.rule(where + "/next" + std::to_string(i), std::move(next_alternatives));
      first = g_.rule(where + "/first" + std::to_string(i), std::move(first_alternatives));
    }
    return Grammar::join({Grammar::literal("{"), {Grammar::ref(first)}, Grammar::literal("}")});
  }

  Result<Sequence> array(const Json& s, const std::string& where) {
    int32_t item = -1;
    if (const Json* items = s.find("items")) {
      MH_ASSIGN_OR_RETURN(item, schema(*items, where + "/items"));
    } else {
      item = any_value();
    }
    MH_ASSIGN_OR_RETURN(int64_t min, count(s, "minItems", 0, where));
    MH_ASSIGN_OR_RETURN(int64_t max, count(s, "maxItems", -1, where));
    if (max >= 0 && min > max)
      return invalid_argument("'minItems' exceeds 'maxItems' (at " + where + ")");
    if (max == 0) return Grammar::literal("[]");
    // The first item, then the others each after a comma.
    const Sequence more = Grammar::join({Grammar::literal(","), {Grammar::ref(item)}});
    const int32_t rest =
        g_.repeat(where + "/more", more, std::max<int64_t>(min - 1, 0), max < 0 ? -1 : max - 1);
    Sequence items{Grammar::ref(item), Grammar::ref(rest)};
    if (min == 0) items = {Grammar::ref(g_.rule(where + "/items?", {{}, std::move(items)}))};
    return Grammar::join({Grammar::literal("["), std::move(items), Grammar::literal("]")});
  }

  // "#", "#/$defs/name" or "#/definitions/name" (a JSON pointer, ~0 and ~1 escaped).
  Result<const Json*> resolve(const Json& ref, const std::string& where) {
    if (!ref.is_string() || !ref.as_string().starts_with("#")) {
      return unsupported("'$ref' outside the schema", where);
    }
    const Json* at = &root_;
    std::string_view path = std::string_view(ref.as_string()).substr(1);
    while (!path.empty()) {
      if (path[0] != '/') return unsupported("'$ref' " + ref.as_string(), where);
      path.remove_prefix(1);
      const size_t end = std::min(path.find('/'), path.size());
      std::string token;
      for (size_t i = 0; i < end; ++i) {
        if (path[i] == '~' && i + 1 < end && (path[i + 1] == '0' || path[i + 1] == '1')) {
          token += path[++i] == '0' ? '~' : '/';
        } else {
          token += path[i];
        }
      }
      path.remove_prefix(end);
      at = at->find(token);
      if (at == nullptr) {
        return invalid_argument("'$ref' " + ref.as_string() + " names nothing (at " + where + ")");
      }
    }
    return at;
  }

  // The shared rules of JSON's lexical forms, made once each.
  int32_t& shared(std::string_view name) { return shared_[std::string(name)]; }

  int32_t character() {
    int32_t& r = shared("char");
    if (r) return r - 1;
    const ByteSet plain =
        ByteSet::range(0x20, 0x21).add(ByteSet::range(0x23, 0x5b)).add(ByteSet::range(0x5d, 0x7f));
    const ByteSet hex =
        ByteSet::range('0', '9').add(ByteSet::range('a', 'f')).add(ByteSet::range('A', 'F'));
    const ByteSet tail = ByteSet::range(0x80, 0xbf);
    auto b = [](ByteSet s) { return Grammar::bytes(s); };
    auto one = [](uint8_t c) { return Grammar::bytes(ByteSet::range(c, c)); };
    // \u escapes of anything but a lone surrogate half; UTF-8 as RFC 3629 defines it.
    const ByteSet not_d = ByteSet::range('0', '9')
                              .add(ByteSet::range('a', 'c'))
                              .add(ByteSet::range('A', 'C'))
                              .add(ByteSet::of("eEfF"));
    r = 1 +
        g_.rule("char",
                {
                    {b(plain)},
                    Grammar::join({Grammar::literal("\\"), {b(ByteSet::of("\"\\/bfnrt"))}}),
                    Grammar::join({Grammar::literal("\\u"), {b(not_d), b(hex), b(hex), b(hex)}}),
                    Grammar::join(
                        {Grammar::literal("\\u"),
                         {b(ByteSet::of("dD")), b(ByteSet::range('0', '7')), b(hex), b(hex)}}),
                    {b(ByteSet::range(0xc2, 0xdf)), b(tail)},
                    {one(0xe0), b(ByteSet::range(0xa0, 0xbf)), b(tail)},
                    {b(ByteSet::range(0xe1, 0xec)), b(tail), b(tail)},
                    {one(0xed), b(ByteSet::range(0x80, 0x9f)), b(tail)},
                    {b(ByteSet::range(0xee, 0xef)), b(tail), b(tail)},
                    {one(0xf0), b(ByteSet::range(0x90, 0xbf)), b(tail), b(tail)},
                    {b(ByteSet::range(0xf1, 0xf3)), b(tail), b(tail), b(tail)},
                    {one(0xf4), b(ByteSet::range(0x80, 0x8f)), b(tail), b(tail)},
                });
    return r - 1;
  }

  int32_t any_string() {
    int32_t& r = shared("string");
    if (r) return r - 1;
    const int32_t chars = g_.repeat("string/chars", {Grammar::ref(character())});
    r = 1 + g_.rule("string",
                    {Grammar::join(
                        {Grammar::literal("\""), {Grammar::ref(chars)}, Grammar::literal("\"")})});
    return r - 1;
  }

  Sequence digits(int64_t min, int64_t max, const std::string& name) {
    return {Grammar::ref(g_.repeat(name, {Grammar::bytes(ByteSet::range('0', '9'))}, min, max))};
  }

  int32_t integer() {
    int32_t& r = shared("integer");
    if (r) return r - 1;
    const int32_t sign = g_.rule("integer/sign", {{}, Grammar::literal("-")});
    const int32_t magnitude =
        g_.rule("integer/digits",
                {Grammar::literal("0"), Grammar::join({{Grammar::bytes(ByteSet::range('1', '9'))},
                                                       digits(0, 15, "integer/more")})});
    r = 1 + g_.rule("integer", {{Grammar::ref(sign), Grammar::ref(magnitude)}});
    return r - 1;
  }

  int32_t number() {
    int32_t& r = shared("number");
    if (r) return r - 1;
    const int32_t fraction = g_.rule(
        "number/fraction", {{}, Grammar::join({Grammar::literal("."), digits(1, 16, "number/f")})});
    const int32_t exponent = g_.rule(
        "number/exponent",
        {{},
         Grammar::join(
             {{Grammar::bytes(ByteSet::of("eE"))},
              {Grammar::ref(g_.rule("number/esign", {{}, {Grammar::bytes(ByteSet::of("+-"))}}))},
              digits(1, 2, "number/e")})});
    r = 1 + g_.rule("number",
                    {{Grammar::ref(integer()), Grammar::ref(fraction), Grammar::ref(exponent)}});
    return r - 1;
  }

  int32_t boolean() {
    int32_t& r = shared("boolean");
    if (r) return r - 1;
    r = 1 + g_.rule("boolean", {Grammar::literal("true"), Grammar::literal("false")});
    return r - 1;
  }

  // Any JSON value, object and array: one recursive set of rules.
  int32_t any_value() {
    int32_t& r = shared("value");
    if (r) return r - 1;
    const int32_t value = g_.declare("value");
    r = 1 + value;
    const int32_t string = any_string();
    const Sequence member =
        Grammar::join({{Grammar::ref(string)}, Grammar::literal(":"), {Grammar::ref(value)}});
    const int32_t members =
        g_.repeat("object/more", Grammar::join({Grammar::literal(","), member}));
    const int32_t object = g_.rule(
        "object",
        {Grammar::literal("{}"),
         Grammar::join(
             {Grammar::literal("{"), member, {Grammar::ref(members)}, Grammar::literal("}")})});
    const int32_t elements =
        g_.repeat("array/more", Grammar::join({Grammar::literal(","), {Grammar::ref(value)}}));
    const int32_t array =
        g_.rule("array", {Grammar::literal("[]"), Grammar::join({Grammar::literal("["),
                                                                 {Grammar::ref(value)},
                                                                 {Grammar::ref(elements)},
                                                                 Grammar::literal("]")})});
    shared("object") = 1 + object;
    g_.define(value, {{Grammar::ref(object)},
                      {Grammar::ref(array)},
                      {Grammar::ref(string)},
                      {Grammar::ref(number())},
                      {Grammar::ref(boolean())},
                      Grammar::literal("null")});
    return value;
  }

  Grammar& g_;
  const Json& root_;
  std::map<const Json*, int32_t> rules_;
  std::map<std::string, int32_t> shared_;  // rule + 1; 0: not made yet
};

}  // namespace

Result<int32_t> add_json_schema(Grammar& grammar, const Json& schema, const std::string& where) {
  return SchemaCompiler(grammar, schema).compile(where);
}

Result<Grammar> json_schema_grammar(const Json& schema) {
  Grammar g;
  const int32_t start = g.declare("root");
  MH_ASSIGN_OR_RETURN(int32_t body, add_json_schema(g, schema, "#"));
  g.define(start, {{Grammar::ref(body)}});
  return g;
}

Grammar json_object_grammar() {
  Grammar g;
  const int32_t start = g.declare("root");
  const Json none;
  g.define(start, {{Grammar::ref(SchemaCompiler(g, none).any_object())}});
  return g;
}

}  // namespace mh::engine
