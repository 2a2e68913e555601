// Self-signed TLS certificates for development: `mhctl certs`.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "platform/base/status.h"

namespace mh::cli {

struct CertRequest {
  std::vector<std::string> hosts = {"localhost", "127.0.0.1", "::1"};  // names and IPs (SANs)
  int days = 365;
  std::filesystem::path cert_file;  // PEM certificate, 0644
  std::filesystem::path key_file;   // PEM private key (EC P-256), 0600
};

// Makes a key and a self-signed certificate valid for the hosts; refuses to overwrite files.
Status make_self_signed(const CertRequest& request);

}  // namespace mh::cli
