// Helpers for the engine tests that compare with the reference implementations and published
// files of tests/reference (installed there by `npm ci`; scripts/test runs it).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string_view>

#include "platform/engine/json.h"
#include "tests/support/harness.h"

namespace mh::engine::test_reference {

inline std::filesystem::path dir() { return test::source_dir() / "tests/reference"; }

// A JSON text the test wrote itself; a parse error fails the test.
inline Json parse(std::string_view text) {
  auto j = parse_json(text);
  REQUIRE_MESSAGE(j.ok(), j.status().to_string());
  return *j;
}

// Node, which the reference scripts run on.
inline std::filesystem::path node() {
  const std::filesystem::path node = test::find_program("node");
  REQUIRE_MESSAGE(!node.empty(), "node is needed: scripts/setup installs it");
  REQUIRE_MESSAGE(std::filesystem::exists(dir() / "node_modules"),
                  "the reference packages are not installed: scripts/test runs npm ci in " << dir());
  return node;
}

}  // namespace mh::engine::test_reference
