// The Jinja interpreter against Python's Jinja2 (tests/reference/render_chat.py, configured as
// transformers configures it): the chat templates Llama 3.1 and 3.2, Qwen2.5, Qwen3, Mistral and
// Gemma 3 publish, rendered for conversations with a system message, several turns, tools, tool
// calls and tool replies, byte for byte; the language features real templates use; and the
// refusals of templates that raise, run away or use what is not implemented.
#include <doctest/doctest.h>

#include "platform/engine/files.h"
#include "platform/engine/jinja/template.h"
#include "platform/engine/json.h"
#include "tests/engine/reference.h"
#include "tests/support/harness.h"

namespace mh::engine::jinja {
namespace {

namespace fs = std::filesystem;
using test::source_dir;

using test_reference::parse;
fs::path reference_dir() { return test_reference::dir(); }

// The published chat templates, by name (tests/reference/chat_templates.mjs).
Json published_templates(const test::TempDir& dir) {
  const fs::path node = test_reference::node();
  const fs::path out = dir.path() / "templates.json";
  auto run = test::run_process(
      {node.string(), (reference_dir() / "chat_templates.mjs").string(), out.string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto j = read_json_file(out);
  REQUIRE(j.ok());
  return *j;
}

struct Case {
  std::string name, template_text, context;  // context: a JSON object
};

// Renders every case with Python's Jinja2 and with this engine; the two agree on the text and
// the generation blocks, or both fail.
void compare_with_jinja2(const std::vector<Case>& cases) {
  test::TempDir dir;
  JsonArray list;
  for (const Case& c : cases) {
    list.push_back(Json(JsonObject{{"template", Json(c.template_text)}, {"context", parse(c.context)}}));
  }
  REQUIRE(write_file_atomically(dir.path() / "cases.json", to_json(Json(list))).ok());
  REQUIRE_MESSAGE(fs::exists("/usr/bin/python3"), "Debian's python3 is needed");
  auto run = test::run_process({"/usr/bin/python3", (reference_dir() / "render_chat.py").string(),
                                (dir.path() / "cases.json").string(),
                                (dir.path() / "out.json").string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto reference = read_json_file(dir.path() / "out.json");
  REQUIRE(reference.ok());
  REQUIRE(reference->as_array().size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Json& r = reference->as_array()[i];
    CAPTURE(c.name);
    auto t = Template::parse(c.template_text);
    Dict context = Value::from_json(parse(c.context)).as_dict();
    Result<Rendered> ours = t.ok() ? t->render(context) : Result<Rendered>(t.status());
    if (const Json* error = r.find("error")) {
      CHECK_MESSAGE(!ours.ok(), "Jinja2 failed (" << error->as_string() << ") but this engine rendered: "
                                                  << (ours.ok() ? ours->text : ""));
      continue;
    }
    REQUIRE_MESSAGE(ours.ok(), ours.status().to_string());
    CHECK(ours->text == r.find("text")->as_string());
    std::vector<std::string> spans;
    for (const auto& [b, e] : ours->generation) spans.push_back(ours->text.substr(b, e - b));
    std::vector<std::string> expected;
    for (const Json& s : r.find("generation")->as_array()) expected.push_back(s.as_string());
    CHECK(spans == expected);
  }
}

// Conversations in the shape OpenAI's chat API and transformers' apply_chat_template take.
const char* kWeatherTool = R"({"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"The city"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}})";

std::vector<std::pair<std::string, std::string>> conversations() {
  const std::string tools = std::string("[") + kWeatherTool + "]";
  return {
      {"one user message, generation prompt",
       R"({"messages":[{"role":"user","content":"Hello! How are you?"}],"add_generation_prompt":true})"},
      {"one user message, no generation prompt",
       R"({"messages":[{"role":"user","content":"  Trim me please.  \n"}],"add_generation_prompt":false})"},
      {"system message and several turns",
       R"({"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4."},{"role":"user","content":"And 3+3? Say \"six\" — or 'six'.\nThanks, ünïcödé 🤗"}],"add_generation_prompt":true})"},
      {"several turns ending with the assistant",
       R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there."},{"role":"user","content":"Bye"},{"role":"assistant","content":"Goodbye!"}],"add_generation_prompt":false})"},
      {"tools, a tool call with dict arguments and a tool reply",
       R"({"tools":)" + tools + R"(,"messages":[{"role":"system","content":"Use tools when useful."},{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}}]},{"role":"tool","tool_call_id":"call_1","content":"{\"temperature\": 21.5, \"sky\": \"clear\"}"},{"role":"assistant","content":"It is 21.5 °C and clear."}],"add_generation_prompt":false})"},
      {"tools and only a user message",
       R"({"tools":)" + tools + R"(,"messages":[{"role":"user","content":"Weather in Oslo, in fahrenheit?"}],"add_generation_prompt":true})"},
      {"a tool call with string arguments",
       R"({"tools":)" + tools + R"(,"messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Rome\"}"}}]},{"role":"tool","content":"sunny"}],"add_generation_prompt":true})"},
      {"roles out of order",
       R"({"messages":[{"role":"assistant","content":"I speak first."},{"role":"assistant","content":"Twice."}],"add_generation_prompt":true})"},
      {"a reasoning turn and thinking switched off",
       R"({"messages":[{"role":"user","content":"Think about it."},{"role":"assistant","content":"<think>\nSome thought.\n</think>\n\nThe answer."},{"role":"user","content":"Again?"}],"add_generation_prompt":true,"enable_thinking":false})"},
      {"no date given (strftime_now)",
       R"({"messages":[{"role":"user","content":"What day is it?"}],"add_generation_prompt":true})"},
  };
}

TEST_CASE("the published chat templates render byte for byte as Python's Jinja2 renders them") {
  test::TempDir dir;
  const Json templates = published_templates(dir);
  std::vector<Case> cases;
  for (const auto& [name, text] : templates.as_object()) {
    auto parsed = Template::parse(text.as_string());
    CHECK_MESSAGE(parsed.ok(), name << ": " << parsed.status().to_string());
    for (const auto& [what, context] : conversations()) {
      // Every template gets the special tokens transformers passes; the date is pinned but once.
      std::string ctx = context;
      ctx.insert(1, R"("bos_token":"<bos>","eos_token":"<eos>",)");
      if (what.find("strftime") == std::string::npos) ctx.insert(1, R"("date_string":"26 Jul 2024",)");
      cases.push_back({name + ": " + what, text.as_string(), ctx});
    }
  }
  CHECK(cases.size() >= 70);
  compare_with_jinja2(cases);
}

TEST_CASE("the Jinja features chat templates use render as Jinja2 renders them") {
  const std::string ctx =
      R"({"items":[3,1,2],"words":["b","A","c"],"d":{"x":1,"y":[1,2],"z":{"k":"v"}},"s":"  Hello, World  ","n":null,"f":2.5,"big":1e20,"small":0.00001,"t":true,"people":[{"name":"ann","age":30},{"name":"bob","age":25}]})";
  const std::vector<std::pair<std::string, std::string>> templates = {
      {"loop variables", "{% for i in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }} {% endfor %}"},
      {"loop previtem, nextitem, cycle", "{% for i in items %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a', 'b') }};{% endfor %}"},
      {"loop else and filter", "{% for i in items if i > 5 %}{{ i }}{% else %}none{% endfor %}|{% for i in items if i > 1 %}{{ i }}{{ loop.length }}{% endfor %}"},
      {"break and continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"},
      {"unpacking items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }}{% endfor %}"},
      {"scoping: set in a loop does not leak", "{% set c = 0 %}{% for i in items %}{% set c = c + i %}{{ c }},{% endfor %}{{ c }}"},
      {"namespace", "{% set ns = namespace(total=0, seen=[]) %}{% for i in items %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}"},
      {"macros with defaults and keywords", "{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('ann') }} {{ greet('bob', greeting='Yo') }} {{ greet(name='cy') }}"},
      {"set block", "{% set block %}a{{ items | length }}b{% endset %}[{{ block }}]"},
      {"slicing", "{{ items[::-1] }} {{ items[1:] }} {{ items[:-1] }} {{ s[2:7] }} {{ 'héllo'[::-1] }} {{ items[-1] }}"},
      {"printing values as Python does", "{{ n }} {{ t }} {{ f }} {{ big }} {{ small }} {{ d }} {{ items }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.0 }} {{ 1e5 }}"},
      {"string methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' H') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'x'.upper() }}{{ 'ABC'.lower() }}|{{ 'hello world'.title() }}|{{ 'hello'.capitalize() }}|{{ 'abc'.startswith('a') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aXbX'.replace('X', '-') }}|{{ 'abc'.find('c') }}|{{ '-'.join(words) }}"},
      {"filters", "{{ s | trim }}|{{ words | join(', ') }}|{{ words | first }}{{ words | last }}|{{ items | length }}|{{ words | sort }}|{{ items | sort(reverse=true) }}|{{ items | max }}{{ items | min }}{{ items | sum }}|{{ people | map(attribute='name') | join('+') }}|{{ people | selectattr('age', 'gt', 26) | map(attribute='name') | list }}|{{ items | reject('equalto', 1) | list }}|{{ items | select('odd') | list }}|{{ 'a\nb' | indent(2) }}|{{ undefined_thing | default('dflt') }}|{{ '' | default('e', true) }}|{{ 3.7 | int }}{{ '4' | int }}{{ 'x' | float }}|{{ items | unique | list }}|{{ 'é<>' | e }}|{{ 2.567 | round(1) }}"},
      {"tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ people | tojson(sort_keys=true) }}|{{ 'ünï \"q\" \n' | tojson }}|{{ [1.5, none, true] | tojson }}|{{ {'b': 1, 'a': 2} | tojson(separators=(',', ':')) }}"},
      {"tests", "{{ n is none }}{{ d is mapping }}{{ items is iterable }}{{ s is string }}{{ f is number }}{{ 3 is integer }}{{ f is float }}{{ t is boolean }}{{ nope is defined }}{{ nope is undefined }}{{ 4 is divisibleby 2 }}{{ 3 is odd }}{{ items is sequence }}{{ 'a' is in 'abc' }}{{ 'abc' is lower }}"},
      {"operators and conditions", "{{ 'a' in 'abc' }}{{ 'x' not in d }}{{ 1 < 2 < 3 }}{{ 1 == 1.0 }}{{ 'a' ~ 1 ~ none }}{{ 'yes' if t else 'no' }}{{ 'yes' if n }}|{{ n or 'fallback' }}|{{ t and 'both' }}|{{ not n }}|{{ [1] + [2] }}|{{ 'ab' * 3 }}|{{ -f }}"},
      {"whitespace control and trim_blocks", "a\n  {% if t %}\n    b\n  {%- endif %}\n{# a comment #}\nc {{- ' d ' -}} e\n{%+ if t %}x{% endif +%}\ny\n  {{ 'kept indent' }}\n"},
      {"dict access and undefined attributes", "{{ d.x }}{{ d['y'][1] }}{{ d.z.k }}{{ d.missing }}{{ d.get('x') }}{{ d.get('q', 9) }}{{ n.anything }}|{{ d.keys() | list }}{{ d.values() | list | length }}"},
      {"generation blocks", "{% for m in items %}<{% generation %}{{ m }}!{% endgeneration %}>{% endfor %}"},
      {"string escapes", "{{ 'tab\\there' }}|{{ \"q'uote\" }}|{{ 'u\\u00e9x\\x41' }}|{{ 'a' 'b' }}"},
      {"an undefined value used as a string fails", "{{ nope + 'x' }}"},
      {"iterating over None fails", "{% for x in n %}{{ x }}{% endfor %}"},
      {"raise_exception", "{{ raise_exception('custom failure') }}"},
  };
  std::vector<Case> cases;
  for (const auto& [name, text] : templates) cases.push_back({name, text, ctx});
  compare_with_jinja2(cases);
}

TEST_CASE("a template that raises, runs away or uses what is not implemented is refused clearly") {
  const Dict context;
  struct Bad {
    std::string text, message;
    bool at_parse;
  };
  for (const Bad& b : std::vector<Bad>{
           {"{{ raise_exception('roles must alternate') }}", "roles must alternate", false},
           {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps", false},
           {"{% for i in range(1000000) %}{% endfor %}", "range() is too big", false},
           {"{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "deep", false},
           {"{% set s = 'x' * 1000 %}{% for i in range(100000) %}{{ s }}{% endfor %}", "longer than", false},
           {"{% include 'other.jinja' %}", "the 'include' tag is not implemented", true},
           {"{% call f() %}x{% endcall %}", "the 'call' tag is not implemented", true},
           {"{{ x | wordwrap(10) }}", "the filter 'wordwrap' is not implemented", true},
           {"{{ x is escaped }}", "the test 'escaped' is not implemented", true},
           {"{% for x in y %}", "is not closed", true},
           {"{{ 'unterminated }}", "a string is not closed", true},
           {"{% if x %}{% endfor %}", "unexpected 'endfor'", true},
           {"{{ x.y.z }}", "'x' is undefined", false},
           {"{{ (1, 2) + 3 }}", "unsupported operand", false},
       }) {
    CAPTURE(b.text);
    auto t = Template::parse(b.text);
    if (b.at_parse) {
      REQUIRE_FALSE(t.ok());
      CHECK(t.status().code() == Code::kInvalidArgument);
      CHECK_MESSAGE(t.status().message().find(b.message) != std::string::npos, t.status().message());
      continue;
    }
    REQUIRE_MESSAGE(t.ok(), t.status().to_string());
    RenderLimits limits;
    limits.max_output = 1 << 20;
    auto r = t->render(context, limits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(r.status().message().find(b.message) != std::string::npos, r.status().message());
  }
}

}  // namespace
}  // namespace mh::engine::jinja
