// license_check: verify a Macrohard license offline and show what it grants.
//
//   ./license_check acme.lic staff-2026.pub [more.pub ...]
//
// Exit status 0 when the license is genuine and in force, 1 when it is not (the reason is
// printed), 2 on a usage error. No network is used.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <macrohard/macrohard.hpp>
#include <sstream>
#include <string>
#include <vector>

static bool read(const char* path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

static std::string date(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&tt));
  return buf;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LICENSE_FILE PUBLIC_KEY_FILE...\n", argv[0]);
    return 2;
  }
  std::string license;
  if (!read(argv[1], &license)) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  std::vector<std::string> keys;
  for (int i = 2; i < argc; ++i) {
    if (!read(argv[i], &keys.emplace_back())) {
      std::fprintf(stderr, "cannot read %s\n", argv[i]);
      return 2;
    }
  }
  try {
    macrohard::LicenseInfo info = macrohard::verify_license(license, keys);
    std::printf("license %s: %s\n", info.id.c_str(), info.status.c_str());
    std::printf("  licensee  %s (tenant %s)\n", info.licensee.c_str(), info.tenant.c_str());
    std::printf("  valid     %s to %s\n", date(info.not_before).c_str(),
                date(info.expires_at).c_str());
    std::string features;
    for (const auto& f : info.features) features += (features.empty() ? "" : ", ") + f;
    std::printf("  features  %s\n", features.empty() ? "none" : features.c_str());
    std::printf("  limits    %lld GPUs, %lld GPU-hours a month, %lld deployments, %lld seats\n",
                static_cast<long long>(info.max_gpus),
                static_cast<long long>(info.gpu_hours_per_month),
                static_cast<long long>(info.max_deployments), static_cast<long long>(info.seats));
    std::printf("  training   %s\n", info.has_feature("train") ? "allowed" : "not licensed");
    return 0;
  } catch (const macrohard::Error& e) {
    std::printf("license refused (%s): %s\n", e.code_name(), e.what());
    return 1;
  }
}
