// The worker event contract: the lines mh-worker writes are read back whole; anything else is
// refused with what is wrong, never thrown.
#include "platform/executor/worker_events.h"

#include <doctest/doctest.h>

#include <string>

namespace mh::executor {
namespace {

TEST_CASE("the lines a worker writes parse into their events") {
  auto step = parse_worker_event(
      R"({"type":"step","step":3,"steps":10,"loss":2.5,"lr":0.001,"grad_norm":1.2,"tokens_per_s":900.5})");
  REQUIRE_MESSAGE(step.ok(), step.status().to_string());
  CHECK(step->kind == WorkerEvent::Kind::kStep);
  CHECK(step->step == 3);
  CHECK(step->steps == 10);
  CHECK(step->loss == 2.5);
  CHECK(step->lr == 0.001);

  auto checkpoint =
      parse_worker_event(R"({"type":"checkpoint","step":50,"path":"/d/out/checkpoint-50","valid_loss":1.25})");
  REQUIRE(checkpoint.ok());
  CHECK(checkpoint->path == "/d/out/checkpoint-50");
  CHECK(checkpoint->valid_loss == 1.25);
  auto plain = parse_worker_event(R"({"type":"checkpoint","step":50,"path":"/d/c"})");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->valid_loss.has_value());

  auto done = parse_worker_event(
      R"({"type":"done","step":90,"trained_tokens":46080,"path":"/d/out"})");
  REQUIRE(done.ok());
  CHECK(done->kind == WorkerEvent::Kind::kDone);
  CHECK(done->trained_tokens == 46080);

  auto stopped = parse_worker_event(R"({"type":"stopped","step":7,"checkpoint":"/d/c7"})");
  REQUIRE(stopped.ok());
  CHECK(stopped->path == "/d/c7");

  auto ready = parse_worker_event(R"({"type":"ready","port":40123})");
  REQUIRE(ready.ok());
  CHECK(ready->port == 40123);

  auto usage = parse_worker_event(
      R"({"type":"usage","tenant":"acme","prompt_tokens":12,"completion_tokens":3})");
  REQUIRE(usage.ok());
  CHECK(usage->tenant == "acme");
  CHECK(usage->prompt_tokens == 12);
  auto nobody = parse_worker_event(
      R"({"type":"usage","tenant":"","prompt_tokens":1,"completion_tokens":0})");
  REQUIRE(nobody.ok());
  CHECK(nobody->tenant.empty());

  auto stats = parse_worker_event(R"({"type":"stats","active":2,"queued":0})");
  REQUIRE(stats.ok());
  CHECK(stats->stats.size() == 2);
  CHECK_FALSE(stats->stats.contains("type"));
}

TEST_CASE("a malformed worker line is refused with what is wrong") {
  const std::pair<const char*, const char*> bad[] = {
      {"", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {R"({"step":1})", "\"type\" is missing"},
      {R"({"type":7})", "\"type\" must be a string"},
      {R"({"type":"reboot"})", "unknown type \"reboot\""},
      {R"({"type":"step","steps":10,"loss":1,"lr":1})", "\"step\" is missing"},
      {R"({"type":"step","step":-1,"steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":1.5,"steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":"1","steps":10,"loss":1,"lr":1})", "\"step\" must be an integer"},
      {R"({"type":"step","step":18446744073709551615,"steps":1,"loss":1,"lr":1})",
       "\"step\" must be an integer"},
      {R"({"type":"step","step":1,"steps":10,"loss":"nan","lr":1})", "\"loss\" must be a finite"},
      {R"({"type":"step","step":1,"steps":10,"loss":1e999,"lr":1})", "\"loss\" must be a finite"},
      {R"({"type":"checkpoint","step":1,"path":5})", "\"path\" must be a string"},
      {R"({"type":"ready","port":0})", "\"port\" must be from 1 to 65535"},
      {R"({"type":"ready","port":70000})", "\"port\" must be an integer from 0 to 65535"},
      {R"({"type":"usage","tenant":"a","prompt_tokens":-3,"completion_tokens":0})",
       "\"prompt_tokens\" must be an integer"},
  };
  for (const auto& [line, why] : bad) {
    CAPTURE(line);
    auto e = parse_worker_event(line);
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(e.status().message().find(why) != std::string::npos, e.status().message());
  }
  const std::string huge = R"({"type":"stats","x":")" + std::string(kMaxEventLine, 'a') + "\"}";
  auto e = parse_worker_event(huge);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("longer than") != std::string::npos);
}

}  // namespace
}  // namespace mh::executor
