// libFuzzer target: any bytes as a licence file, and as a licence payload. Nothing forged
// verifies; a payload that decodes is valid terms that encode and decode back to themselves.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "licensing/license.h"

namespace {

const mh::licensing::KeyRing& keys() {
  static const mh::licensing::KeyRing ring = [] {
    mh::licensing::KeyRing r;
    auto key = mh::licensing::generate_key("fuzz").value();
    (void)r.add(key.public_key().value());
    return r;
  }();
  return ring;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (mh::licensing::verify_license(text, keys()).ok()) std::abort();  // a forgery verified
  (void)mh::licensing::read_unverified(text);
  auto terms = mh::licensing::decode_payload(text);
  if (!terms.ok()) return 0;
  if (!mh::licensing::validate_terms(*terms).ok()) std::abort();
  auto again = mh::licensing::decode_payload(mh::licensing::encode_payload(*terms));
  if (!again.ok()) std::abort();
  if (mh::licensing::terms_json(*again) != mh::licensing::terms_json(*terms)) std::abort();
  (void)mh::licensing::describe(*terms, 0);
  return 0;
}
