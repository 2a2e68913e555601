// safetensors: written files read back (and by the header rules of the reference), and every
// malformed header refused with a clear error.
#include "platform/engine/safetensors.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "tests/support/harness.h"

namespace mh::engine {
namespace {

std::span<const uint8_t> bytes_of(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4};
}

// A file image: the length prefix, the header, then `data_bytes` zero bytes.
std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(header.size() >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

TEST_CASE("safetensors: written tensors read back by name, dtype, shape and value") {
  test::TempDir dir;
  const std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 0.125f, 7.0f};
  const std::vector<float> b = {0.5f, -0.5f};
  std::vector<uint16_t> h(w.size());
  for (size_t i = 0; i < w.size(); ++i) h[i] = float_to_bf16(w[i]);
  const auto path = dir.path() / "model.safetensors";
  REQUIRE(
      write_safetensors(path,
                        {{"transformer.h.0.attn.c_attn.weight", DType::kF32, {2, 3}, bytes_of(w)},
                         {"bias", DType::kF32, {2}, bytes_of(b)},
                         {"half",
                          DType::kBF16,
                          {3, 2},
                          {reinterpret_cast<const uint8_t*>(h.data()), h.size() * 2}}},
                        {{"format", "pt"}})
          .ok());
  auto file = Safetensors::open(path);
  REQUIRE_MESSAGE(file.ok(), file.status().message());
  CHECK(file->tensors().size() == 3);
  CHECK(file->metadata().at("format") == "pt");
  const TensorEntry* t = file->find("transformer.h.0.attn.c_attn.weight");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{2, 3});
  CHECK(to_float(*t).value() == w);
  CHECK(to_float(*file->find("bias")).value() == b);
  CHECK(to_float(*file->find("half")).value() == w);  // these values are exact in bf16
  CHECK(file->find("missing") == nullptr);
  // The header is padded to 8 bytes and the data follows it, as the reference writes.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
}

TEST_CASE("safetensors: malformed headers are refused, each with its reason") {
  struct Case {
    std::string header;
    size_t data;
    const char* says;
  };
  const Case cases[] = {
      {"[1]", 0, "must be a JSON object"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "header: JSON"},
      {R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8, "unknown dtype \"Q4\""},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "integers >= 0"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
       "make 12 bytes but data_offsets span 8"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8, "past the data"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "0 <= begin <= end"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", 8, "must be [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8, "unknown field \"x\""},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
       "overflows"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "overlaps"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "gap"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8,
       "4 bytes after the last tensor"},
      {R"({"__metadata__":{"k":1}})", 0, "must be a string"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       4, "duplicate member"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.header);
    auto buffer = image(c.header, c.data);
    auto parsed = Safetensors::parse(buffer);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(parsed.status().message().find(c.says) != std::string::npos,
                  parsed.status().message());
  }
  // Lengths: too short for the prefix, a header longer than the file, one over the limit.
  std::vector<uint8_t> tiny = {1, 2, 3};
  CHECK(Safetensors::parse(tiny).status().message().find("too short") != std::string::npos);
  auto lying = image("{}", 0);
  lying[0] = 200;
  CHECK(Safetensors::parse(lying).status().message().find("past the end") != std::string::npos);
  auto huge = image("{}", 0);
  huge[4] = 1;  // 2^32 + 2
  CHECK(Safetensors::parse(huge).status().message().find("exceeds the limit") != std::string::npos);
  // Empty but well-formed is fine.
  CHECK(Safetensors::parse(image("{}", 0)).ok());
}

TEST_CASE("safetensors: a missing file and a non-file say so") {
  test::TempDir dir;
  CHECK(Safetensors::open(dir.path() / "none.safetensors").status().code() == Code::kNotFound);
  CHECK(Safetensors::open(dir.path()).status().message().find("not a regular file") !=
        std::string::npos);
}

TEST_CASE("bf16 and f16 conversions round to nearest even and keep specials") {
  CHECK(bf16_to_float(float_to_bf16(1.0f)) == 1.0f);
  CHECK(float_to_bf16(1.00390625f) == 0x3f80);  // halfway between 1 and the next bf16: to even
  CHECK(float_to_bf16(1.01171875f) == 0x3f82);  // halfway, rounds up to the even one
  CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  CHECK(std::isinf(bf16_to_float(float_to_bf16(INFINITY))));
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f, 0.1f}) {
    CAPTURE(f);
    const float back = f16_to_float(float_to_f16(f));
    CHECK(std::fabs(back - f) <= std::fabs(f) * 1e-3f);
  }
  CHECK(float_to_f16(65520.0f) == 0x7c00);                  // rounds past the largest: infinity
  CHECK(float_to_f16(2.98023223876953125e-08f) == 0x0000);  // half the smallest subnormal: even
  CHECK(float_to_f16(4.0e-08f) == 0x0001);
  CHECK(f16_to_float(0x0001) == 5.960464477539063e-08f);
  CHECK(f16_to_float(0x3c00) == 1.0f);
}

}  // namespace
}  // namespace mh::engine
