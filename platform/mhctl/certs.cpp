#include "platform/mhctl/certs.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <memory>

namespace mh::cli {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;

Status openssl_error(std::string_view what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  return internal_error(fmt::format("{}: {}", what, buf));
}

Status add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return openssl_error(fmt::format("certificate extension '{}'", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? Status() : openssl_error("adding an extension");
}

// Writes PEM output of `write` to a new file with `mode`; fails if the file exists.
template <typename Fn>
Status write_pem(const std::filesystem::path& path, mode_t mode, Fn&& write) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return errno == EEXIST
               ? conflict(
                     fmt::format("{} exists; remove it or choose another directory", path.string()))
               : internal_error(fmt::format("creating {}: {}", path.string(), strerror(errno)));
  }
  Bio bio(BIO_new_fd(fd, BIO_CLOSE));
  if (!bio || write(bio.get()) != 1 || BIO_flush(bio.get()) != 1) {
    return openssl_error(fmt::format("writing {}", path.string()));
  }
  return {};
}

}  // namespace

Status make_self_signed(const CertRequest& request) {
  if (request.hosts.empty()) return invalid_argument("name at least one host");
  if (request.days < 1 || request.days > 3650) return invalid_argument("days must be 1 to 3650");
  std::string san;
  for (const std::string& host : request.hosts) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (!san.empty()) san += ",";
    san += (ec ? "DNS:" : "IP:") + host;
  }

  PKey key(EVP_EC_gen("P-256"));
  if (!key) return openssl_error("generating an EC P-256 key");
  Cert cert(X509_new());
  if (!cert) return openssl_error("allocating a certificate");
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return openssl_error("random serial");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(request.days) * 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Macrohard development"), -1,
                             -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(request.hosts[0].c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), name);
  MH_TRY(add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  MH_TRY(add_extension(cert.get(), NID_key_usage,
                       "critical,digitalSignature,keyEncipherment,keyCertSign"));
  MH_TRY(add_extension(cert.get(), NID_ext_key_usage, "serverAuth"));
  MH_TRY(add_extension(cert.get(), NID_subject_key_identifier, "hash"));
  MH_TRY(add_extension(cert.get(), NID_subject_alt_name, san));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return openssl_error("signing");

  MH_TRY(write_pem(request.key_file, 0600, [&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  Status cert_status = write_pem(request.cert_file, 0644,
                                 [&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()); });
  if (!cert_status.ok()) ::unlink(request.key_file.c_str());
  return cert_status;
}

}  // namespace mh::cli
