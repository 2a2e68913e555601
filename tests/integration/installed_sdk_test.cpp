// The SDK as a licensee gets it: `cmake --install`, then find_package(Macrohard) from a
// separate project (samples/hello), run against a live daemon. Also pins the ABI boundary:
// the library exports only mh_* and carries its SONAME.
#include <doctest/doctest.h>

#include <sstream>

#include "tests/support/harness.h"

namespace mh::test {
namespace {

TEST_CASE("the installed SDK builds samples/hello, which talks to a live daemon") {
  TempDir dir;
  const auto prefix = dir.path() / "prefix";
  ProcessResult install =
      run_process({MH_TEST_CMAKE, "--install", binary_dir().string(), "--prefix", prefix.string()});
  REQUIRE_MESSAGE(install.exit_code == 0, install.output);
  CHECK(std::filesystem::exists(prefix / "include/macrohard/macrohard.h"));
  CHECK(std::filesystem::exists(prefix / "include/macrohard/macrohard.hpp"));
  CHECK(std::filesystem::exists(prefix / "lib/cmake/Macrohard/MacrohardConfig.cmake"));
  const auto library = prefix / "lib/libmacrohard.so.1";
  REQUIRE(std::filesystem::exists(library));

  SUBCASE("only mh_* symbols are exported") {
    ProcessResult nm = run_process({"/usr/bin/nm", "-D", "--defined-only", library.string()});
    REQUIRE(nm.exit_code == 0);
    std::istringstream lines(nm.output);
    std::string line;
    int exported = 0;
    while (std::getline(lines, line)) {
      std::string symbol = line.substr(line.rfind(' ') + 1);
      if (symbol == "MACROHARD_1") continue;  // the version node
      CAPTURE(symbol);
      CHECK(symbol.starts_with("mh_"));
      ++exported;
    }
    CHECK(exported > 20);
    ProcessResult dynamic = run_process({"/usr/bin/objdump", "-p", library.string()});
    CHECK(dynamic.output.find("SONAME               libmacrohard.so.1") != std::string::npos);
  }

  SUBCASE("a program built with find_package(Macrohard) runs against the daemon") {
    const auto build = dir.path() / "hello-build";
    ProcessResult configure = run_process(
        {MH_TEST_CMAKE, "-S", (source_dir() / "samples/hello").string(), "-B", build.string(), "-G",
         "Ninja", "-DCMAKE_PREFIX_PATH=" + prefix.string(), "-DCMAKE_BUILD_TYPE=Release",
         std::string("-DCMAKE_CXX_FLAGS=") + MH_TEST_SAMPLE_CXX_FLAGS},
        {}, 300s);
    REQUIRE_MESSAGE(configure.exit_code == 0, configure.output);
    ProcessResult compile = run_process({MH_TEST_CMAKE, "--build", build.string()}, {}, 300s);
    REQUIRE_MESSAGE(compile.exit_code == 0, compile.output);

    Daemon daemon;
    ProcessResult hello =
        run_process({(build / "hello").string()},
                    {{"MH_URL", daemon.url()}, {"MH_API_KEY", daemon.admin_key()}});
    CHECK_MESSAGE(hello.exit_code == 0, hello.output);
    CHECK(hello.output.find("connected to Macrohard 0.1.0") != std::string::npos);
    CHECK(hello.output.find("ready: yes") != std::string::npos);
    ProcessResult unreachable =
        run_process({(build / "hello").string()}, {{"MH_URL", "http://127.0.0.1:1"}});
    CHECK(unreachable.exit_code == 1);
    CHECK(unreachable.output.find("unavailable") != std::string::npos);
  }
}

}  // namespace
}  // namespace mh::test
