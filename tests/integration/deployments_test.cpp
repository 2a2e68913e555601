// Deployments on a real daemon: replicas (mh-worker serve processes) come up ready and answer
// OpenAI-style completions through the daemon, streamed or not; a replica killed is restarted; a
// client that goes away mid-stream stops its generation; license limits refuse what they forbid;
// a daemon killed with SIGKILL brings its deployments back.
#include <doctest/doctest.h>

#include <signal.h>
#include <limits>

#include <atomic>
#include <cmath>
#include <fstream>
#include <macrohard/macrohard.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "tests/integration/sdk_client.h"
#include "tests/integration/serving_platform.h"

namespace mh::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The JSON objects of a server-sent event stream, and whether it ended with [DONE].
std::vector<json::object> sse_events(const std::string& body, bool* done) {
  std::vector<json::object> out;
  *done = false;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    const std::string data = body.substr(at + 6, end - at - 6);
    if (data == "[DONE]") {
      *done = true;
    } else {
      out.push_back(json::parse(data).as_object());
    }
    at = end + 2;
  }
  return out;
}

TEST_CASE("a deployment answers completions and chat completions, streamed or not") {
  ServingPlatform p;
  const std::string id = p.create_ready();

  SUBCASE("completions") {
    RawResponse r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                                   {"prompt", "the cat"},
                                                   {"max_tokens", 5},
                                                   {"ignore_eos", true},
                                                   {"temperature", 0}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json::object c = json::parse(r.body).as_object();
    CHECK(c.at("object") == "text_completion");
    CHECK(c.at("model") == "custom:tiny");
    CHECK(c.at("choices").at(0).at("finish_reason") == "length");
    CHECK(c.at("usage").at("completion_tokens") == 5);
    CHECK(c.at("usage").at("prompt_tokens").as_int64() > 0);
    // Greedy decoding is deterministic: the same request by deployment id gives the same text.
    RawResponse again = p.complete("/v1/completions", {{"model", id},
                                                       {"prompt", "the cat"},
                                                       {"max_tokens", 5},
                                                       {"ignore_eos", true},
                                                       {"temperature", 0}});
    REQUIRE(again.status == 200);
    CHECK(json::parse(again.body).at("choices").at(0).at("text") ==
          c.at("choices").at(0).at("text"));
  }
  SUBCASE("chat completions") {
    RawResponse r =
        p.complete("/v1/chat/completions",
                   {{"model", "custom:tiny"},
                    {"messages", json::array{json::object{{"role", "user"}, {"content", "hello"}}}},
                    {"max_tokens", 4},
                    {"ignore_eos", true}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json::object c = json::parse(r.body).as_object();
    CHECK(c.at("object") == "chat.completion");
    CHECK(std::string(c.at("id").as_string()).starts_with("chatcmpl-"));
    CHECK(c.at("choices").at(0).at("message").at("role") == "assistant");
    CHECK(c.at("choices").at(0).at("message").at("content").is_string());
    CHECK(c.at("usage").at("completion_tokens") == 4);
    CHECK(c.at("usage").at("total_tokens").as_int64() ==
          c.at("usage").at("prompt_tokens").as_int64() + 4);
  }
  SUBCASE("a streamed chat completion arrives as server-sent events ending in [DONE]") {
    RawResponse r =
        p.complete("/v1/chat/completions",
                   {{"model", "custom:tiny"},
                    {"messages", json::array{json::object{{"role", "user"}, {"content", "hello"}}}},
                    {"max_tokens", 6},
                    {"ignore_eos", true},
                    {"stream", true},
                    {"stream_options", {{"include_usage", true}}}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(r.header("content-type").starts_with("text/event-stream"));
    bool done = false;
    auto events = sse_events(r.body, &done);
    CHECK(done);
    REQUIRE(events.size() >= 3);
    CHECK(events.front().at("object") == "chat.completion.chunk");
    CHECK(events.front().at("choices").at(0).at("delta").at("role") == "assistant");
    const json::object& usage = events.back();
    CHECK(usage.at("choices").as_array().empty());
    CHECK(usage.at("usage").at("completion_tokens") == 6);
    CHECK(events[events.size() - 2].at("choices").at(0).at("finish_reason") == "length");
  }
  SUBCASE("a json_schema response format constrains the answer to the schema") {
    const json::value schema = json::parse(R"({"type":"object","properties":{
        "answer":{"enum":["yes","no"]},"count":{"type":"integer"},
        "words":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":3}},
        "required":["answer","count","words"],"additionalProperties":false})");
    for (bool stream : {false, true}) {
      CAPTURE(stream);
      RawResponse r = p.complete(
          "/v1/chat/completions",
          {{"model", "custom:tiny"},
           {"messages", json::array{json::object{{"role", "user"}, {"content", "the cat?"}}}},
           {"max_tokens", 200},
           {"seed", 3},
           {"stream", stream},
           {"response_format",
            {{"type", "json_schema"},
             {"json_schema", {{"name", "verdict"}, {"strict", true}, {"schema", schema}}}}}});
      REQUIRE_MESSAGE(r.status == 200, r.body);
      std::string text, finish;
      if (stream) {
        bool done = false;
        for (const auto& e : sse_events(r.body, &done)) {
          const auto& choice = e.at("choices").at(0).as_object();
          if (const auto* c = choice.at("delta").as_object().if_contains("content")) {
            text += c->as_string();
          }
          if (!choice.at("finish_reason").is_null())
            finish = choice.at("finish_reason").as_string();
        }
      } else {
        const json::value body = json::parse(r.body);
        const auto& choice = body.at("choices").at(0);
        text = choice.at("message").at("content").as_string();
        finish = choice.at("finish_reason").as_string();
      }
      CAPTURE(text);
      CHECK(finish == "stop");
      const json::object answer = json::parse(text).as_object();
      CHECK(answer.size() == 3);
      CHECK((answer.at("answer") == "yes" || answer.at("answer") == "no"));
      CHECK(answer.at("count").is_int64());
      CHECK(answer.at("words").as_array().size() <= 3);
    }
  }

  SUBCASE("n choices, log-probabilities and echo") {
    const json::array hello{json::object{{"role", "user"}, {"content", "the cat"}}};
    // Three choices of one prompt, each its own sample; usage counts the prompt once.
    RawResponse r = p.complete("/v1/chat/completions", {{"model", "custom:tiny"},
                                                        {"messages", hello},
                                                        {"n", 3},
                                                        {"max_tokens", 8},
                                                        {"ignore_eos", true},
                                                        {"seed", 5},
                                                        {"logprobs", true},
                                                        {"top_logprobs", 2}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json::object c = json::parse(r.body).as_object();
    REQUIRE(c.at("choices").as_array().size() == 3);
    std::set<std::string> texts;
    for (int64_t i = 0; i < 3; ++i) {
      const auto& choice = c.at("choices").at(i).as_object();
      CHECK(choice.at("index") == i);
      texts.insert(std::string(choice.at("message").at("content").as_string()));
      const auto& content = choice.at("logprobs").at("content").as_array();
      CHECK(content.size() == 8);
      for (const auto& e : content) {
        CHECK(e.at("logprob").as_double() <= 0);
        const auto& top = e.at("top_logprobs").as_array();
        REQUIRE(top.size() == 2);
        CHECK(top[0].at("logprob").as_double() >= top[1].at("logprob").as_double());
        CHECK(e.at("logprob").as_double() <= top[0].at("logprob").as_double() + 1e-6);
      }
    }
    CHECK(texts.size() == 3);
    CHECK(c.at("usage").at("completion_tokens") == 24);
    const int64_t prompt_tokens = c.at("usage").at("prompt_tokens").as_int64();

    // Streamed: every choice's deltas under its index, each with its own finish.
    r = p.complete("/v1/chat/completions", {{"model", "custom:tiny"},
                                            {"messages", hello},
                                            {"n", 2},
                                            {"max_tokens", 4},
                                            {"ignore_eos", true},
                                            {"stream", true},
                                            {"stream_options", {{"include_usage", true}}}});
    REQUIRE(r.status == 200);
    bool done = false;
    std::map<int64_t, int> finishes;
    json::object last;
    for (const auto& e : sse_events(r.body, &done)) {
      for (const auto& choice : e.at("choices").as_array()) {
        if (!choice.at("finish_reason").is_null()) ++finishes[choice.at("index").as_int64()];
      }
      last = e;
    }
    CHECK(done);
    CHECK(finishes == std::map<int64_t, int>{{0, 1}, {1, 1}});
    CHECK(last.at("usage").at("prompt_tokens") == prompt_tokens);
    CHECK(last.at("usage").at("completion_tokens") == 8);

    // Completions: the legacy log-probability shape, the top ones by logprobs; echo puts the
    // prompt first.
    r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                       {"prompt", "the cat"},
                                       {"max_tokens", 3},
                                       {"ignore_eos", true},
                                       {"temperature", 0},
                                       {"logprobs", 3}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    c = json::parse(r.body).as_object();
    const auto& lp = c.at("choices").at(0).at("logprobs").as_object();
    CHECK(lp.at("tokens").as_array().size() == 3);
    CHECK(lp.at("token_logprobs").as_array().size() == 3);
    CHECK(lp.at("top_logprobs").at(0).as_object().size() <= 3);
    CHECK(lp.at("text_offset").at(0) == 0);
    const std::string text(c.at("choices").at(0).at("text").as_string());
    r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                       {"prompt", "the cat"},
                                       {"max_tokens", 3},
                                       {"ignore_eos", true},
                                       {"temperature", 0},
                                       {"echo", true}});
    REQUIRE(r.status == 200);
    CHECK(json::parse(r.body).at("choices").at(0).at("text").as_string() == "the cat" + text);
    // The values are the model's own: the log-softmax of its logits after the prompt.
    r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                       {"prompt", json::array{5, 6, 7}},
                                       {"max_tokens", 1},
                                       {"temperature", 0},
                                       {"logprobs", 2}});
    REQUIRE(r.status == 200);
    const json::value served = json::parse(r.body).at("choices").at(0).at("logprobs");
    {
      auto cpu = engine::make_cpu_backend(1);
      auto model = engine::Model::load(p.work.path() / "tiny", *cpu);
      REQUIRE(model.ok());
      const std::vector<int32_t> prompt = {5, 6, 7};
      (*model)->forward(prompt, 1, 3, {});
      const engine::Tensor logits = (*model)->logits();
      const float* last = logits.data() + 2 * 300;
      const double most = *std::max_element(last, last + 300);
      double sum = 0;
      for (int t = 0; t < 300; ++t) sum += std::exp(last[t] - most);
      const auto best = std::max_element(last, last + 300) - last;
      CHECK(served.at("token_logprobs").at(0).as_double() ==
            doctest::Approx(last[best] - most - std::log(sum)).epsilon(1e-4));
    }
    r = p.complete(
        "/v1/completions",
        {{"model", "custom:tiny"}, {"prompt", "the cat"}, {"echo", true}, {"logprobs", 1}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body).at("error").at("param") == "echo");
  }

  SUBCASE("a repeated prompt reuses its cached blocks, and says how many") {
    std::string system = "You are a careful assistant.";
    for (int i = 0; i < 20; ++i) system += " The cat sat on the mat, the cat sat on the hat.";
    const json::array messages{json::object{{"role", "system"}, {"content", system}},
                               json::object{{"role", "user"}, {"content", "And the dog?"}}};
    const json::object body{{"model", "custom:tiny"},
                            {"messages", messages},
                            {"max_tokens", 4},
                            {"ignore_eos", true},
                            {"temperature", 0}};
    RawResponse first = p.complete("/v1/chat/completions", body);
    REQUIRE_MESSAGE(first.status == 200, first.body);
    RawResponse again = p.complete("/v1/chat/completions", body);
    REQUIRE(again.status == 200);
    const json::value one = json::parse(first.body), two = json::parse(again.body);
    const int64_t prompt = two.at("usage").at("prompt_tokens").as_int64();
    CHECK(one.at("usage").at("prompt_tokens_details").at("cached_tokens") == 0);
    const int64_t cached =
        two.at("usage").at("prompt_tokens_details").at("cached_tokens").as_int64();
    CHECK(cached == (prompt - 1) / 16 * 16);  // whole blocks, the last token computed
    CHECK(cached > 100);
    // The same answer either way.
    CHECK(one.at("choices").at(0).at("message") == two.at("choices").at(0).at("message"));
  }

  SUBCASE("bad requests are refused with a clear error") {
    RawResponse r = p.complete("/v1/completions", {{"model", "custom:nope"}, {"prompt", "x"}});
    CHECK(r.status == 404);
    CHECK(r.body.find("no deployment serves 'custom:nope'") != std::string::npos);
    r = p.complete("/v1/completions", {{"prompt", "x"}});
    CHECK(r.status == 400);
    r = p.complete("/v1/completions",
                   {{"model", "custom:tiny"}, {"prompt", "x"}, {"temperature", 7}});
    CHECK(r.status == 400);
    CHECK(r.body.find("temperature") != std::string::npos);
    r = p.complete("/v1/chat/completions", {{"model", "custom:tiny"}, {"messages", "hi"}});
    CHECK(r.status == 400);
    r = p.complete("/v1/completions",
                   {{"model", "custom:tiny"}, {"prompt", "x"}, {"max_tokens", 5000}});
    CHECK(r.status == 400);
    CHECK(r.body.find("context is 4096 tokens") != std::string::npos);
    // A max_tokens that would overflow an addition is refused alone; the replica serves on.
    r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                       {"prompt", "x"},
                                       {"max_tokens", std::numeric_limits<int64_t>::max()}});
    CHECK(r.status == 400);
    // What the server does not honour is refused by name, never ignored.
    const json::array hello{json::object{{"role", "user"}, {"content", "hi"}}};
    for (const auto& [path, field, value, param] :
         {std::tuple{"/v1/chat/completions", "response_format",
                     json::value(json::object{{"type", "grammar"}}), "response_format.type"},
          std::tuple{"/v1/chat/completions", "response_format",
                     json::value(json::object{
                         {"type", "json_schema"},
                         {"json_schema",
                          {{"name", "s"}, {"schema", {{"type", "string"}, {"pattern", "^a+$"}}}}}}),
                     "response_format.json_schema.schema"},
          std::tuple{"/v1/completions", "response_format",
                     json::value(json::object{{"type", "json_object"}}), "response_format"},
          std::tuple{"/v1/chat/completions", "tools", json::value(json::array{}), "tools"},
          // This model's chat format (the built-in one) lays out no tools.
          std::tuple{"/v1/chat/completions", "tools",
                     json::value(
                         json::array{{{"type", "function"}, {"function", {{"name", "get_time"}}}}}),
                     "tools"},
          std::tuple{"/v1/chat/completions", "tool_choice", json::value("required"), "tool_choice"},
          std::tuple{"/v1/chat/completions", "logit_bias",
                     json::value(json::object{{"not-a-token", 1}}), "logit_bias"},
          std::tuple{"/v1/chat/completions", "frequency_penalty", json::value(3),
                     "frequency_penalty"},
          std::tuple{"/v1/chat/completions", "top_logprobs", json::value(2), "top_logprobs"},
          std::tuple{"/v1/chat/completions", "stream_options",
                     json::value(json::object{{"include_obfuscation", true}}),
                     "stream_options.include_obfuscation"},
          std::tuple{"/v1/completions", "top_logprobs", json::value(2), "top_logprobs"},
          std::tuple{"/v1/completions", "logprobs", json::value(6), "logprobs"},
          std::tuple{"/v1/chat/completions", "n", json::value(0), "n"},
          std::tuple{"/v1/completions", "suffix", json::value("end"), "suffix"},
          std::tuple{"/v1/completions", "best_of", json::value(2), "best_of"}}) {
      CAPTURE(field);
      json::object body{{"model", "custom:tiny"}, {field, value}};
      if (std::string_view(path) == "/v1/completions") {
        body["prompt"] = "x";
      } else {
        body["messages"] = hello;
      }
      r = p.complete(path, body);
      CHECK(r.status == 400);
      CHECK(json::parse(r.body).at("error").at("param") == param);
    }
    r = p.complete("/v1/chat/completions",
                   {{"model", "custom:tiny"},
                    {"messages", json::array{json::object{{"role", "assistant"},
                                                          {"content", "x"},
                                                          {"tool_calls", json::array{}}}}}});
    CHECK(r.status == 400);
    CHECK(json::parse(r.body).at("error").at("param") == "messages[0].tool_calls");
    r = p.complete("/v1/completions",
                   {{"model", "custom:tiny"}, {"prompt", "x"}, {"max_tokens", 2}});
    CHECK_MESSAGE(r.status == 200, r.body);
    // logit_bias, as OpenAI shapes it, is honoured: a token biased by 100 is all there is.
    r = p.complete("/v1/completions", {{"model", "custom:tiny"},
                                       {"prompt", json::array{5, 6}},
                                       {"max_tokens", 3},
                                       {"ignore_eos", true},
                                       {"temperature", 0},
                                       {"presence_penalty", 0.5},
                                       {"logit_bias", json::object{{"42", 100}}}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto tok = engine::Tokenizer::load(p.dir.path() / "data" / "models" / "acme" / "tiny");
    REQUIRE(tok.ok());
    const std::vector<int32_t> forced = {42, 42, 42};
    CHECK(json::parse(r.body).at("choices").at(0).at("text").as_string() ==
          engine::unicode::valid_utf8(tok->decode(forced).value()));
    // Another tenant cannot reach acme's deployment, by id or by model.
    r = p.as("globex", "POST", "/v1/completions",
             json::serialize(json::object{{"model", id}, {"prompt", "x"}}));
    CHECK(r.status == 404);
    CHECK(p.as("globex", "GET", "/v1/deployments/" + id).status == 404);
  }
  SUBCASE("scale, list and delete") {
    RawResponse r = p.as("acme", "PATCH", "/v1/deployments/" + id,
                         json::serialize(json::object{{"replicas", 2}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json::object d = p.wait_ready(id, 2);
    CHECK(d.at("ready_replicas") == 2);
    json::object list = json::parse(p.as("acme", "GET", "/v1/deployments").body).as_object();
    REQUIRE(list.at("data").as_array().size() == 1);
    CHECK(list.at("data").at(0).at("id").as_string() == id);
    r = p.as("acme", "DELETE", "/v1/deployments/" + id);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(json::parse(r.body).at("deleted") == true);
    CHECK(p.as("acme", "GET", "/v1/deployments/" + id).status == 404);
    r = p.complete("/v1/completions", {{"model", "custom:tiny"}, {"prompt", "x"}});
    CHECK(r.status == 404);
  }
  SUBCASE("tokens and device-seconds go to the usage ledger") {
    RawResponse r = p.complete(
        "/v1/completions",
        {{"model", "custom:tiny"}, {"prompt", "the cat"}, {"max_tokens", 7}, {"ignore_eos", true}});
    REQUIRE(r.status == 200);
    const int64_t prompt = json::parse(r.body).at("usage").at("prompt_tokens").as_int64();
    json::object totals;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      totals = json::parse(p.as("acme", "GET", "/v1/usage?bucket_width=total").body)
                   .at("totals")
                   .as_object();
      if (totals.contains("output_tokens")) break;
      std::this_thread::sleep_for(200ms);
    }
    REQUIRE_MESSAGE(totals.contains("output_tokens"), json::serialize(totals));
    CHECK(totals.at("output_tokens").to_number<double>() == 7);
    CHECK(totals.at("input_tokens").to_number<double>() == static_cast<double>(prompt));
    CHECK(totals.at("gpu_seconds").to_number<double>() > 0);
  }
}

TEST_CASE("a custom model's own chat template prompts its chat completions") {
  ServingPlatform p;
  // custom:templated: the tiny model with a tokenizer_config.json whose template frames each
  // turn with <|endoftext|> and refuses a conversation that does not start with the user.
  const std::string chat_template =
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('the user must speak first') }}"
      "{% endif %}{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] | trim }}"
      "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}";
  const std::string config = json::serialize(
      json::object{{"eos_token", "<|endoftext|>"}, {"chat_template", chat_template}});
  auto files = tiny_model_files(p.work.path() / "templated", 64, 4096);
  files["tokenizer_config.json"] = config;
  RawResponse r = p.register_model("acme", "templated", p.upload_model("acme", files));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(json::parse(r.body).at("files").as_object().contains("tokenizer_config.json"));
  r = p.deploy({{"model", "custom:templated"}, {"replicas", 1}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  REQUIRE(p.wait_ready(id).at("status") == "ready");

  // usage.prompt_tokens is the token count of the template's rendering.
  const json::array messages{json::object{{"role", "user"}, {"content", "  the cat sat  "}},
                             json::object{{"role", "assistant"}, {"content", "on the mat"}},
                             json::object{{"role", "user"}, {"content", "and then?"}}};
  r = p.complete("/v1/chat/completions", {{"model", "custom:templated"},
                                          {"messages", messages},
                                          {"max_tokens", 3},
                                          {"ignore_eos", true}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto tokenizer = engine::Tokenizer::load(p.work.path() / "templated");
  REQUIRE(tokenizer.ok());
  const std::string rendering =
      "USER: the cat sat<|endoftext|>ASSISTANT: on the mat<|endoftext|>USER: and then?"
      "<|endoftext|>ASSISTANT:";
  CHECK(json::parse(r.body).at("usage").at("prompt_tokens").as_int64() ==
        static_cast<int64_t>(tokenizer->encode(rendering).size()));
  // The template's refusal is the request's 400, with its message.
  r = p.complete("/v1/chat/completions",
                 {{"model", "custom:templated"},
                  {"messages", json::array{json::object{{"role", "assistant"}, {"content", "hi"}}}},
                  {"max_tokens", 3}});
  CHECK(r.status == 400);
  CHECK(r.body.find("the user must speak first") != std::string::npos);
  // A template that uses what the engine does not implement is refused at registration.
  files["tokenizer_config.json"] =
      json::serialize(json::object{{"chat_template", "{% include 'x' %}"}});
  r = p.register_model("acme", "unsupported", p.upload_model("acme", files));
  CHECK(r.status == 400);
  CHECK(r.body.find("'include' tag is not implemented") != std::string::npos);
  // generation_config.json: what it does not implement is refused by name at registration;
  // what it says becomes the defaults of requests that do not say.
  files["tokenizer_config.json"] = config;
  files["generation_config.json"] = R"({"num_beams":4})";
  r = p.register_model("acme", "beams", p.upload_model("acme", files));
  CHECK(r.status == 400);
  CHECK(r.body.find("\\\"num_beams\\\" is set") != std::string::npos);
  files["generation_config.json"] = R"({"do_sample":false,"max_new_tokens":2})";
  r = p.register_model("acme", "brief", p.upload_model("acme", files));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(json::parse(r.body).at("files").as_object().contains("generation_config.json"));
  r = p.deploy({{"model", "custom:brief"}, {"replicas", 1}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  REQUIRE(p.wait_ready(std::string(json::parse(r.body).at("id").as_string())).at("status") ==
          "ready");
  const json::object ask{{"model", "custom:brief"}, {"messages", messages}, {"ignore_eos", true}};
  r = p.complete("/v1/chat/completions", ask);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const json::value first = json::parse(r.body);
  CHECK(first.at("usage").at("completion_tokens").as_int64() == 2);  // max_new_tokens
  CHECK(first.at("choices").at(0).at("finish_reason") == "length");
  // do_sample false: greedy, so the same answer every time; a request's own settings win.
  r = p.complete("/v1/chat/completions", ask);
  CHECK(json::parse(r.body).at("choices").at(0).at("message") ==
        first.at("choices").at(0).at("message"));
  json::object longer = ask;
  longer["max_tokens"] = 3;
  r = p.complete("/v1/chat/completions", longer);
  CHECK(json::parse(r.body).at("usage").at("completion_tokens").as_int64() == 3);
}

TEST_CASE("a replica that dies is restarted and serves again") {
  ServingPlatform p;
  const std::string id = p.create_ready();
  json::object d = p.deployment(id);
  const int64_t pid = d.at("replica_status").at(0).at("pid").as_int64();
  REQUIRE(::kill(static_cast<pid_t>(pid), SIGKILL) == 0);
  d = p.wait_until(id, [&](const json::object& v) {
    const auto& r = v.at("replica_status").at(0);
    return r.at("restarts") == 1 && r.at("state") == "ready";
  });
  const auto& replica = d.at("replica_status").at(0);
  REQUIRE_MESSAGE(replica.at("state") == "ready", json::serialize(d));
  CHECK(replica.at("pid").as_int64() != pid);
  CHECK(std::string(replica.at("last_exit").as_string()).find("signal 9") != std::string::npos);
  RawResponse r = p.complete("/v1/completions",
                             {{"model", "custom:tiny"}, {"prompt", "the"}, {"max_tokens", 2}});
  CHECK_MESSAGE(r.status == 200, r.body);
}

TEST_CASE("a client that goes away mid-stream stops its generation on the replica") {
  ServingPlatform p;
  const std::string id = p.create_ready();
  {
    RawConnection conn(p.daemon->port());
    const std::string body = json::serialize(json::object{{"model", "custom:tiny"},
                                                          {"prompt", "the cat"},
                                                          {"max_tokens", 4000},
                                                          {"ignore_eos", true},
                                                          {"stream", true}});
    conn.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              p.owners.at("acme") + "\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n\r\n" + body);
    REQUIRE(conn.read_until("data: ", 5));
  }  // the connection closes here, a few tokens in
  json::object d = p.wait_until(id, [](const json::object& v) {
    const auto& stats = v.at("replica_status").at(0).at("stats").as_object();
    return stats.contains("cancelled") && stats.at("cancelled") == 1 && stats.at("active") == 0;
  });
  const auto& stats = d.at("replica_status").at(0).at("stats");
  REQUIRE_MESSAGE(stats.as_object().contains("cancelled"), json::serialize(d));
  CHECK(stats.at("cancelled") == 1);
  CHECK(stats.at("active") == 0);
  // It stopped well short of the 4000 tokens asked for.
  CHECK(stats.at("generated_tokens").as_int64() < 2000);
  MESSAGE("tokens generated before the replica noticed: ", stats.at("generated_tokens"));
}

TEST_CASE("a licence binds running replicas: revoked, they stop and free their devices") {
  ServingPlatform p;
  const std::string id = p.create_ready();
  auto free_devices = [&] {
    return json::parse(p.admin("GET", "/v1/admin/pools", "").body)
        .at("data")
        .at(0)
        .at("free")
        .as_int64();
  };
  const int64_t free_while_serving = free_devices();
  const auto revoked = std::chrono::steady_clock::now();
  RawResponse r =
      p.admin("POST", "/v1/admin/licenses/lic_acme_1/revoke", R"({"reason":"non-payment"})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  // Within the bound: the replica's process is stopped and its device is free again.
  for (int i = 0; i < 300 && free_devices() == free_while_serving; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(free_devices() == free_while_serving + 1);
  CHECK(std::chrono::steady_clock::now() - revoked < 15s);
  // The deployment says why, and takes no requests.
  const json::object d = p.deployment(id);
  CHECK(d.at("status") == "stopped");
  CHECK_MESSAGE(d.at("error").as_string().find("revoked") != std::string::npos, json::serialize(d));
  CHECK(
      p.complete("/v1/completions", {{"model", id}, {"prompt", "hi"}, {"max_tokens", 2}}).status !=
      200);
  // A new licence lets it run again: the replica starts and serves.
  p.license_models("acme", {"deploy", "custom_models"});
  json::object ready = p.wait_ready(id);
  CHECK_MESSAGE(ready.at("status") == "ready", json::serialize(ready));
  CHECK(
      p.complete("/v1/completions", {{"model", id}, {"prompt", "hi"}, {"max_tokens", 2}}).status ==
      200);
}

TEST_CASE("a model a deployment serves cannot be deleted from under it") {
  ServingPlatform p;
  const std::string id = p.create_ready();
  RawResponse r = p.as("acme", "DELETE", "/v1/models/custom:tiny");
  CHECK(r.status == 409);
  CHECK(r.body.find(id) != std::string::npos);
  CHECK(p.as("acme", "GET", "/v1/models/custom:tiny").status == 200);
  REQUIRE(p.as("acme", "DELETE", "/v1/deployments/" + id).status == 200);
  CHECK(p.as("acme", "DELETE", "/v1/models/custom:tiny").status == 200);
}

TEST_CASE("parallel creations never pass max_deployments: the count and the insert are one") {
  ServingPlatform p;
  licensing::Limits limits;
  limits.seats = 1;
  limits.max_model_params = 1'000'000;
  limits.max_gpus = 4;
  limits.max_deployments = 1;
  limits.gpu_hours_per_month = 10;
  p.relicense("acme", {"deploy", "custom_models"}, limits);
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    std::vector<std::thread> threads;
    std::atomic<int> created{0}, refused{0}, other{0};
    std::vector<std::string> ids(10);
    for (int i = 0; i < 10; ++i) {
      threads.emplace_back([&, i] {
        RawResponse r = p.deploy({{"model", "custom:tiny"}});
        if (r.status == 200) {
          ++created;
          ids[static_cast<size_t>(i)] = std::string(json::parse(r.body).at("id").as_string());
        } else if (r.status == 403) {
          ++refused;
        } else {
          ++other;
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(created == 1);
    CHECK(refused == 9);
    CHECK(other == 0);
    CHECK(json::parse(p.as("acme", "GET", "/v1/deployments").body).at("data").as_array().size() ==
          1);
    for (const std::string& id : ids) {
      if (!id.empty()) REQUIRE(p.as("acme", "DELETE", "/v1/deployments/" + id).status == 200);
    }
  }
}

TEST_CASE("license limits refuse deployments, naming the limit and by how much") {
  ServingPlatform p;
  SUBCASE("max_deployments") {
    p.create_ready();
    p.create_ready();
    RawResponse r = p.deploy({{"model", "custom:tiny"}});
    CHECK(r.status == 403);
    CHECK(r.body.find("max_deployments") != std::string::npos);
    CHECK(r.body.find("1 over") != std::string::npos);
    CHECK(r.body.find("permission_denied") != std::string::npos);
  }
  SUBCASE("max_deployments counts what serves: one scaled to zero frees its place") {
    const std::string a = p.create_ready();
    const std::string b = p.create_ready();
    RawResponse r = p.as("acme", "PATCH", "/v1/deployments/" + a,
                         json::serialize(json::object{{"replicas", 0}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const std::string c = p.create_ready();
    // Scaling the stopped one up again would be a third that serves.
    r = p.as("acme", "PATCH", "/v1/deployments/" + a,
             json::serialize(json::object{{"replicas", 1}}));
    CHECK(r.status == 403);
    CHECK(r.body.find("max_deployments") != std::string::npos);
    CHECK(p.deployment(a).at("replicas") == 0);
    // b scaled within its own place is no new deployment.
    r = p.as("acme", "PATCH", "/v1/deployments/" + b,
             json::serialize(json::object{{"replicas", 2}}));
    CHECK_MESSAGE(r.status == 200, r.body);
    (void)c;
  }
  SUBCASE("several devices per replica without the multi_gpu feature") {
    RawResponse r = p.deploy({{"model", "custom:tiny"}, {"devices_per_replica", 2}});
    CHECK(r.status == 403);
    CHECK(r.body.find("multi_gpu") != std::string::npos);
    CHECK(json::parse(p.as("acme", "GET", "/v1/deployments").body).at("data").as_array().empty());
  }
  SUBCASE("max_gpus, on create and on scale") {
    p.license_models("acme", {"deploy", "custom_models", "multi_gpu"});
    RawResponse r =
        p.deploy({{"model", "custom:tiny"}, {"replicas", 3}, {"devices_per_replica", 2}});
    CHECK(r.status == 403);
    CHECK(r.body.find("max_gpus") != std::string::npos);
    CHECK(r.body.find("2 over") != std::string::npos);
    const std::string id = p.create_ready();
    r = p.as("acme", "PATCH", "/v1/deployments/" + id,
             json::serialize(json::object{{"replicas", 5}}));
    CHECK(r.status == 403);
    CHECK(r.body.find("max_gpus") != std::string::npos);
    CHECK(p.deployment(id).at("replicas") == 1);
  }
  SUBCASE("gpu_hours_per_month") {
    licensing::Limits limits;
    limits.seats = 1;
    limits.max_model_params = 1'000'000;
    limits.max_gpus = 4;
    limits.max_deployments = 2;
    limits.gpu_hours_per_month = 0;
    p.relicense("acme", {"deploy", "custom_models"}, limits);
    RawResponse r = p.deploy({{"model", "custom:tiny"}});
    CHECK(r.status == 403);
    CHECK(r.body.find("gpu_hours_per_month") != std::string::npos);
  }
  SUBCASE("the deploy feature") {
    p.license_models("acme", {"custom_models"});
    RawResponse r = p.deploy({{"model", "custom:tiny"}});
    CHECK(r.status == 403);
    CHECK(r.body.find("deploy") != std::string::npos);
  }
  SUBCASE("bad requests") {
    CHECK(p.deploy({{"model", "custom:missing"}}).status == 404);
    CHECK(p.deploy({{"model", "custom:tiny"}, {"replicas", 0}}).status == 400);
    CHECK(p.deploy({{"model", "custom:tiny"}, {"pool", "moon"}}).status == 404);
    CHECK(p.deploy({{"replicas", 1}}).status == 400);
  }
}

TEST_CASE("the SDK and mhctl deploy a model and chat with it, streamed and whole") {
  ServingPlatform p;
  macrohard::Client client = sdk_client(p, "acme");
  macrohard::Deployment d = client.create_deployment("custom:tiny");
  CHECK(d.status == "starting");
  d = client.wait_deployment(d.id);
  REQUIRE(d.status == "ready");
  CHECK(d.ready_replicas == 1);

  macrohard::CompletionRequest request;
  request.model = d.id;
  request.messages = {{"system", "be brief"}, {"user", "the cat \"sat\"\n on"}};
  request.max_tokens = 12;
  request.temperature = 0;
  const macrohard::Completion whole = client.chat(request);
  CHECK(whole.finish_reason != "");
  CHECK(whole.prompt_tokens > 0);
  std::string streamed;
  int pieces = 0;
  const macrohard::Completion stream = client.chat(request, [&](std::string_view piece) {
    streamed += piece;
    ++pieces;
    return true;
  });
  CHECK(streamed == whole.text);  // greedy: the same either way
  CHECK(stream.text == whole.text);
  CHECK(stream.completion_tokens == whole.completion_tokens);
  CHECK(stream.finish_reason == whole.finish_reason);
  if (!whole.text.empty()) CHECK(pieces >= 1);
  // Stopping the stream from the callback cancels the call.
  macrohard::CompletionRequest long_one;
  long_one.model = d.id;
  long_one.prompt = "the";
  long_one.max_tokens = 2000;
  try {
    client.complete(long_one, [](std::string_view) { return false; });
    FAIL("the stream should have been cancelled");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::cancelled);
  }
  macrohard::CompletionRequest nothing;
  nothing.model = "custom:nothing";
  nothing.messages = {{"user", "hi"}};
  try {
    client.chat(nothing);
    FAIL("no deployment serves that model");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::not_found);
  }

  const std::map<std::string, std::string> env = {{"MH_URL", p.daemon->url()},
                                                  {"MH_API_KEY", p.owners.at("acme")}};
  ProcessResult r = run_process({mhctl_path().string(), "deployments", "list"}, env);
  CHECK(r.output.find(d.id) != std::string::npos);
  r = run_process({mhctl_path().string(), "chat", "custom:tiny", "the cat", "--max-tokens", "5",
                   "--temperature", "0"},
                  env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("generated tokens]") != std::string::npos);
  r = run_process({mhctl_path().string(), "deployments", "scale", d.id, "0"}, env);
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("stopped") != std::string::npos);
  r = run_process({mhctl_path().string(), "chat", d.id, "hello"}, env);
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("stopped") != std::string::npos);
  r = run_process({mhctl_path().string(), "deployments", "delete", d.id}, env);
  CHECK(r.exit_code == 0);
}

TEST_CASE("a staff deployment of a base model serves every tenant, queued fairly between them") {
  // Replicas take one request at a time here, so the rest wait in the per-tenant queues, each
  // tenant's holding at most four.
  ModelsPlatform p({"--replica-max-batch", "1", "--deployment-queue-per-tenant", "4"});
  TempDir work;
  tiny_model_files(work.path() / "tiny-base", 64, 4096);
  // Staff publish it from a directory on the platform's host; tenants see it at once.
  auto publish = [&](const std::string& name, const std::string& dir) {
    return p.admin("POST", "/v1/admin/base-models",
                   json::serialize(json::object{{"name", name}, {"directory", dir}}));
  };
  RawResponse r = publish("tiny-base", (work.path() / "tiny-base").string());
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(json::parse(r.body).at("kind") == "base");
  CHECK(publish("tiny-base", (work.path() / "tiny-base").string()).status == 409);
  CHECK(publish("nothing", (work.path() / "missing").string()).status == 400);
  fs::create_directories(work.path() / "broken");
  std::ofstream(work.path() / "broken" / "config.json") << R"({"model_type":"gpt2"})";
  r = publish("broken", (work.path() / "broken").string());
  CHECK(r.status == 400);
  CHECK(!fs::exists(p.dir.path() / "data" / "base-models" / "broken"));
  CHECK(json::parse(p.as("globex", "GET", "/v1/models/tiny-base").body).at("kind") == "base");
  // mhctl publishes the same way.
  tiny_model_files(work.path() / "other", 32);
  const std::vector<std::string> admin = {
      mhctl_path().string(), "--url", p.daemon->url(), "--api-key",
      p.daemon->admin_key(), "admin", "base-models"};
  auto mhctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), admin.begin(), admin.end());
    return run_process(args);
  };
  ProcessResult published = mhctl({"publish", (work.path() / "other").string(), "--name", "other"});
  CHECK_MESSAGE(published.exit_code == 0, published.output);
  CHECK(published.output.find("published other: base, llama") != std::string::npos);
  ProcessResult listed = mhctl({"list"});
  CHECK(listed.output.find("tiny-base") != std::string::npos);
  CHECK(listed.output.find("mh-gpt2-tiny") != std::string::npos);
  r = p.admin("POST", "/v1/admin/deployments",
              json::serialize(json::object{{"model", "tiny-base"}}));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  CHECK(json::parse(r.body).at("owned_by") == "macrohard");
  auto view = [&] { return json::parse(p.admin("GET", "/v1/admin/deployments/" + id, "").body); };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (view().at("status") != "ready" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(view().at("status") == "ready");
  // Tenants cannot see or change it, but may call it by the model's name.
  CHECK(p.as("acme", "GET", "/v1/deployments/" + id).status == 404);
  CHECK(p.as("acme", "DELETE", "/v1/deployments/" + id).status == 404);

  auto send = [&](RawConnection& c, const std::string& tenant) {
    const std::string body = json::serialize(json::object{
        {"model", "tiny-base"}, {"prompt", "the"}, {"max_tokens", 3000}, {"ignore_eos", true}});
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
           p.owners.at(tenant) + "\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body);
  };
  // acme sends five at once; once four of them wait, globex sends one.
  std::vector<std::unique_ptr<RawConnection>> acme;
  for (int i = 0; i < 5; ++i) {
    acme.push_back(std::make_unique<RawConnection>(p.daemon->port()));
    send(*acme.back(), "acme");
  }
  // (Each answer is 3,000 tokens: the first takes long enough to be seen in flight.)
  const auto queued_deadline = std::chrono::steady_clock::now() + 30s;
  while (view().at("queued_requests") != 4 && std::chrono::steady_clock::now() < queued_deadline) {
    std::this_thread::sleep_for(2ms);
  }
  REQUIRE(view().at("queued_requests") == 4);
  // acme's share is full: its next request is refused, and another tenant's is not.
  {
    RawConnection extra(p.daemon->port());
    send(extra, "acme");
    auto refused = extra.read_response(30s);
    REQUIRE(refused.has_value());
    CHECK(refused->status == 429);
    CHECK(refused->body.find("your share of its queue") != std::string::npos);
  }
  RawConnection globex(p.daemon->port());
  send(globex, "globex");
  // Each answer's arrival, in order.
  std::mutex mutex;
  std::vector<std::string> order;
  std::vector<std::thread> readers;
  auto read = [&](RawConnection* c, std::string who) {
    readers.emplace_back([&, c, who] {
      auto response = c->read_response(60s);
      std::lock_guard lock(mutex);
      order.push_back(response && response->status == 200 ? who : who + " failed");
    });
  };
  for (auto& c : acme) read(c.get(), "acme");
  read(&globex, "globex");
  for (auto& t : readers) t.join();
  REQUIRE(order.size() == 6);
  CAPTURE(json::serialize(json::value_from(order)));
  CHECK(std::count(order.begin(), order.end(), "acme") == 5);
  // Round-robin between tenants: globex's request goes next, ahead of acme's four waiting
  // ones (first come, first served would have made it last).
  const auto at = std::find(order.begin(), order.end(), "globex") - order.begin();
  CHECK(at <= 1);
  // The tokens are the caller's: globex's 3,000 go to globex's usage.
  json::object totals;
  const auto usage_deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < usage_deadline) {
    totals = json::parse(p.as("globex", "GET", "/v1/usage?bucket_width=total").body)
                 .at("totals")
                 .as_object();
    if (totals.contains("output_tokens")) break;
    std::this_thread::sleep_for(200ms);
  }
  CHECK(totals.contains("output_tokens"));
  if (totals.contains("output_tokens")) {
    CHECK(totals.at("output_tokens").to_number<double>() == 3000);
  }
  CHECK_FALSE(totals.contains("gpu_seconds"));  // a staff deployment's devices are the platform's
}

TEST_CASE("a staff deployment of a base model serves each tenant's own LoRA adapters") {
  ModelsPlatform p;
  TempDir work;
  tiny_model_files(work.path() / "tiny-base", 16);
  RawResponse r =
      p.admin("POST", "/v1/admin/base-models",
              json::serialize(json::object{{"name", "tiny-base"},
                                           {"directory", (work.path() / "tiny-base").string()}}));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const fs::path base = p.dir.path() / "data" / "base-models" / "tiny-base";
  // Each tenant registers an adapter of its own on it, under the same name.
  const std::vector<int32_t> prompt = {5, 17, 3, 42, 8};
  std::map<std::string, std::string> expected;
  for (const auto& [tenant, seed] : {std::pair{"acme", 7u}, std::pair{"globex", 8u}}) {
    p.license_models(tenant, {"custom_models"});
    const fs::path dir = work.path() / (std::string(tenant) + "-adapter");
    const json::object ids = p.upload_model(tenant, lora_adapter_files(base, dir, seed));
    r = p.as(
        tenant, "POST", "/v1/models",
        json::serialize(json::object{{"name", "mine"}, {"base", "tiny-base"}, {"files", ids}}));
    REQUIRE_MESSAGE(r.status == 201, r.body);
    expected[tenant] = greedy_text(base, dir, prompt, 6);
  }
  REQUIRE(expected["acme"] != expected["globex"]);
  r = p.admin("POST", "/v1/admin/deployments", R"({"model":"tiny-base"})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const std::string id(json::parse(r.body).at("id").as_string());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (json::parse(p.admin("GET", "/v1/admin/deployments/" + id, "").body).at("status") !=
             "ready" &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  // The same name answers for each tenant through its own adapter, on the one replica.
  for (const char* tenant : {"acme", "globex"}) {
    r = p.as(tenant, "POST", "/v1/completions",
             json::serialize(json::object{{"model", "custom:mine"},
                                          {"prompt", json::array{5, 17, 3, 42, 8}},
                                          {"max_tokens", 6},
                                          {"temperature", 0},
                                          {"ignore_eos", true}}));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(json::parse(r.body).at("choices").at(0).at("text").as_string() == expected[tenant]);
  }
}

TEST_CASE("a daemon killed with SIGKILL brings its deployments back") {
  ServingPlatform p;
  const std::string id = p.create_ready();
  p.kill_and_restart();
  json::object d = p.wait_ready(id);
  REQUIRE_MESSAGE(d.at("status") == "ready", json::serialize(d));
  RawResponse r = p.complete("/v1/completions",
                             {{"model", "custom:tiny"}, {"prompt", "the"}, {"max_tokens", 2}});
  CHECK_MESSAGE(r.status == 200, r.body);
}

TEST_CASE("a daemon killed while a replica runs has billed its device-seconds but the last") {
  ServingPlatform p;
  auto billed = [&] {
    const json::object totals =
        json::parse(p.as("acme", "GET", "/v1/usage?dimension=gpu_seconds&bucket_width=total").body)
            .at("totals")
            .as_object();
    return totals.contains("gpu_seconds") ? totals.at("gpu_seconds").to_number<double>() : 0.0;
  };
  const auto created = std::chrono::steady_clock::now();
  const std::string id = p.create_ready();
  const auto ready = std::chrono::steady_clock::now();
  // Killed just before a flush to the ledger (every 5 s): nearly 5 s not yet recorded there.
  const double first = billed();
  for (int i = 0; i < 100 && billed() == first; ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(billed() > first);
  std::this_thread::sleep_for(4300ms);
  const auto killed = std::chrono::steady_clock::now();
  p.kill_and_restart();
  // The next daemon recorded what the dead one had accrued up to its last second.
  const double total = billed();
  const double since =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const double ran_at_least = std::chrono::duration<double>(killed - ready).count();
  const double ran_at_most = std::chrono::duration<double>(killed - created).count();
  CAPTURE(ran_at_least);
  CAPTURE(ran_at_most);
  CAPTURE(since);
  CHECK(total >= ran_at_least - 1.5);
  CHECK(total <= ran_at_most + since + 1.0);
  REQUIRE(p.wait_ready(id).at("status") == "ready");
}

}  // namespace
}  // namespace mh::test
