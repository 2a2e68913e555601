// The platform's completions from a replica on a GPU: a deployment on the daemon's "gpu" pool
// (its CUDA devices) starts an mh-worker that decodes on the device-resident CUDA decoder, and
// it answers through the daemon, whole and streamed, with the text a replica on a CPU slot gives
// for the same greedy request. Runs where a CUDA device is visible (ctest label "gpu").
#include <doctest/doctest.h>

#include <filesystem>

#include "tests/integration/serving_platform.h"

namespace mh::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

std::string text_of(const RawResponse& r) {
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return std::string(json::parse(r.body).at("choices").at(0).at("text").as_string());
}

TEST_CASE("a replica on a GPU answers the platform's completions as a CPU replica does") {
  ServingPlatform p({"--cpu-devices", "1"});
  std::map<std::string, std::string> ids;
  for (const char* pool : {"gpu", "default"}) {
    RawResponse r = p.deploy({{"model", "custom:tiny"}, {"pool", pool}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    ids[pool] = std::string(json::parse(r.body).at("id").as_string());
    json::object d = p.wait_ready(ids[pool]);
    REQUIRE_MESSAGE(d.at("status") == "ready", json::serialize(d));
  }
  const json::object request = {
      {"prompt", "the cat sat on"}, {"max_tokens", 24}, {"ignore_eos", true}, {"temperature", 0}};
  auto ask = [&](const std::string& pool, bool stream) {
    json::object body = request;
    body["model"] = ids.at(pool);
    body["stream"] = stream;
    return p.complete("/v1/completions", body);
  };
  const std::string cpu = text_of(ask("default", false));
  const std::string gpu = text_of(ask("gpu", false));
  CHECK(gpu == cpu);
  CHECK_FALSE(gpu.empty());
  // Streamed, the same text arrives in pieces.
  RawResponse streamed = ask("gpu", true);
  REQUIRE(streamed.status == 200);
  std::string joined;
  for (size_t at = 0; (at = streamed.body.find("data: {", at)) != std::string::npos; ++at) {
    const size_t end = streamed.body.find("\n\n", at);
    joined += std::string(json::parse(streamed.body.substr(at + 6, end - at - 6))
                              .at("choices")
                              .at(0)
                              .at("text")
                              .as_string());
  }
  CHECK(joined == gpu);
  CHECK(streamed.body.find("data: [DONE]") != std::string::npos);
  // The GPU replica said what it decodes on.
  bool on_cuda = false;
  for (const auto& e : fs::recursive_directory_iterator(p.dir.path() / "data")) {
    if (e.path().filename() == "worker.log") {
      on_cuda = on_cuda ||
                read_file(e.path()).find("decoding with the CUDA decoder") != std::string::npos;
    }
  }
  CHECK(on_cuda);
}

}  // namespace
}  // namespace mh::test
