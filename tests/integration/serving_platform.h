// A real daemon where acme deploys its own tiny model: the starting point of the serving tests.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/model_helpers.h"

namespace mh::test {

// acme licensed to deploy its own models, with custom:tiny registered (context 4096, so a
// generation can run long enough to be interrupted).
struct ServingPlatform : ModelsPlatform {
  TempDir work;
  // Four CPU worker slots by default: each replica takes one.
  explicit ServingPlatform(std::vector<std::string> args = {"--cpu-devices", "4"})
      : ModelsPlatform(std::move(args)) {
    license_models("acme", {"deploy", "custom_models"});
    const auto ids = upload_model("acme", tiny_model_files(work.path() / "tiny", 64, 4096));
    RawResponse r = register_model("acme", "tiny", ids);
    REQUIRE_MESSAGE(r.status == 201, r.body);
  }
  RawResponse deploy(const boost::json::object& body) {
    return as("acme", "POST", "/v1/deployments", boost::json::serialize(body));
  }
  boost::json::object deployment(const std::string& id) {
    return boost::json::parse(as("acme", "GET", "/v1/deployments/" + id).body).as_object();
  }
  // Polls the deployment until `done` holds for it (or the time runs out); returns its last view.
  template <typename Pred>
  boost::json::object wait_until(const std::string& id, Pred done,
                                 std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    boost::json::object d;
    while (std::chrono::steady_clock::now() < deadline) {
      d = deployment(id);
      if (done(d)) return d;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return d;
  }
  boost::json::object wait_ready(const std::string& id, int64_t replicas = 1) {
    return wait_until(id, [&](const boost::json::object& d) {
      return d.at("status") == "ready" && d.at("ready_replicas").as_int64() == replicas;
    });
  }
  std::string create_ready(int64_t replicas = 1) {
    RawResponse r = deploy({{"model", "custom:tiny"}, {"replicas", replicas}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const std::string id(boost::json::parse(r.body).at("id").as_string());
    boost::json::object d = wait_ready(id, replicas);
    REQUIRE_MESSAGE(d.at("status") == "ready", boost::json::serialize(d));
    return id;
  }
  RawResponse complete(const std::string& path, const boost::json::object& body) {
    return as("acme", "POST", path, boost::json::serialize(body));
  }
};

}  // namespace mh::test
