// The SDK as a licensee gets it: `cmake --install`, then find_package(Macrohard) from a
// separate project (samples/hello), run against a live daemon. Also pins the ABI boundary:
// the library exports only mh_* and carries its SONAME.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "tests/integration/licensed_platform.h"
#include "tests/support/harness.h"

namespace mh::test {
namespace {

TEST_CASE("the installed SDK builds the samples, which work as a licensee runs them") {
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

  // Builds a sample against the installed SDK only, as a licensee would.
  auto build_sample = [&](const std::string& name) {
    const auto build = dir.path() / (name + "-build");
    ProcessResult configure = run_process(
        {MH_TEST_CMAKE, "-S", (source_dir() / "samples" / name).string(), "-B", build.string(),
         "-G", "Ninja", "-DCMAKE_PREFIX_PATH=" + prefix.string(), "-DCMAKE_BUILD_TYPE=Release",
         std::string("-DCMAKE_CXX_FLAGS=") + MH_TEST_SAMPLE_CXX_FLAGS},
        {}, 300s);
    REQUIRE_MESSAGE(configure.exit_code == 0, configure.output);
    ProcessResult compile = run_process({MH_TEST_CMAKE, "--build", build.string()}, {}, 300s);
    REQUIRE_MESSAGE(compile.exit_code == 0, compile.output);
    return build / name;
  };

  SUBCASE("samples/hello, built with find_package(Macrohard), runs against the daemon") {
    const auto hello = build_sample("hello");
    Daemon daemon;
    ProcessResult ok = run_process({hello.string()},
                                   {{"MH_URL", daemon.url()}, {"MH_API_KEY", daemon.admin_key()}});
    CHECK_MESSAGE(ok.exit_code == 0, ok.output);
    CHECK(ok.output.find("connected to Macrohard 0.1.0") != std::string::npos);
    CHECK(ok.output.find("ready: yes") != std::string::npos);
    ProcessResult unreachable = run_process({hello.string()}, {{"MH_URL", "http://127.0.0.1:1"}});
    CHECK(unreachable.exit_code == 1);
    CHECK(unreachable.output.find("unavailable") != std::string::npos);
  }

  SUBCASE("samples/finetune_and_deploy trains, deploys and asks, as a tenant runs it") {
    const auto sample = build_sample("finetune_and_deploy");
    LicensedPlatform p;
    licensing::Limits limits;
    limits.seats = 1;
    limits.max_gpus = 2;
    limits.max_deployments = 1;
    limits.gpu_hours_per_month = 1;
    limits.max_model_params = 10'000'000;
    p.relicense("acme", {"train", "deploy"}, limits);
    // A fortune-format file: entries between lines of "%".
    std::string fortunes;
    for (int i = 0; i < 40; ++i) {
      fortunes += "The cat sat on the mat, " + std::to_string(i) + " times.\n%\n";
      fortunes += "A \"quoted\" line\n\tand an indented one.\n%\n";
    }
    std::ofstream(dir.path() / "fortunes") << fortunes;
    ProcessResult run =
        run_process({sample.string(), "--epochs", "1", (dir.path() / "fortunes").string()},
                    {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("acme")}}, 300s);
    CHECK_MESSAGE(run.exit_code == 0, run.output);
    CHECK(run.output.find("80 entries from 1 files") != std::string::npos);
    CHECK(run.output.find("loss") != std::string::npos);
    CHECK(run.output.find("trained ft:mh-gpt2-tiny:sample:") != std::string::npos);
    CHECK(run.output.find("deployed as dep-") != std::string::npos);
    CHECK(run.output.find("generated tokens") != std::string::npos);
    CHECK(run.output.find("deleted dep-") != std::string::npos);
  }

  SUBCASE("samples/license_check verifies a license offline") {
    const auto check = build_sample("license_check");
    ProcessResult keygen = run_process({mhctl_path().string(), "license", "keygen", "--key-id",
                                        "staff-2026", "--out-dir", dir.path().string()});
    REQUIRE_MESSAGE(keygen.exit_code == 0, keygen.output);
    const auto lic = dir.path() / "acme.lic";
    ProcessResult issued = run_process({mhctl_path().string(), "license", "issue", "--key",
                                        (dir.path() / "staff-2026.key").string(), "--licensee",
                                        "Acme Corp", "--tenant", "acme", "--feature", "train",
                                        "--seats", "5", "--max-gpus", "8", "--out", lic.string()});
    REQUIRE_MESSAGE(issued.exit_code == 0, issued.output);
    const auto pub = (dir.path() / "staff-2026.pub").string();
    ProcessResult ok = run_process({check.string(), lic.string(), pub});
    CHECK_MESSAGE(ok.exit_code == 0, ok.output);
    CHECK(ok.output.find(": valid") != std::string::npos);
    CHECK(ok.output.find("8 GPUs") != std::string::npos);
    CHECK(ok.output.find("5 seats") != std::string::npos);
    CHECK(ok.output.find("training   allowed") != std::string::npos);
    std::string text = read_file(lic);
    text[text.find("Payload: ") + 30] ^= 0x01;
    std::ofstream(dir.path() / "tampered.lic") << text;
    ProcessResult bad = run_process({check.string(), (dir.path() / "tampered.lic").string(), pub});
    CHECK(bad.exit_code == 1);
    CHECK(bad.output.find("license refused") != std::string::npos);
  }
}

}  // namespace
}  // namespace mh::test
