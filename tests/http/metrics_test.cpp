#include "platform/http/metrics.h"

#include <doctest/doctest.h>

namespace mh::http {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST_CASE("counts and histogram buckets are cumulative, per route, method and status") {
  HttpMetrics metrics;
  metrics.observe("/healthz", "GET", 200, 0.00005);
  metrics.observe("/healthz", "GET", 200, 0.002);
  metrics.observe("/healthz", "GET", 200, 30.0);  // beyond the last bucket
  metrics.observe("/v1/x/{id}", "GET", 404, 0.001);
  metrics.add_gauge("mh_test_gauge", "A test gauge.", [] { return 7.0; });
  std::string text = metrics.render();
  CHECK(has_line(text, R"(mh_http_requests_total{route="/healthz",method="GET",status="200"} 3)"));
  CHECK(
      has_line(text, R"(mh_http_requests_total{route="/v1/x/{id}",method="GET",status="404"} 1)"));
  const std::string labels = R"(route="/healthz",method="GET",status="200")";
  CHECK(has_line(text, "mh_http_request_duration_seconds_bucket{" + labels + R"(,le="0.0001"} 1)"));
  CHECK(has_line(text, "mh_http_request_duration_seconds_bucket{" + labels + R"(,le="0.001"} 1)"));
  CHECK(has_line(text, "mh_http_request_duration_seconds_bucket{" + labels + R"(,le="0.0025"} 2)"));
  CHECK(has_line(text, "mh_http_request_duration_seconds_bucket{" + labels + R"(,le="10"} 2)"));
  CHECK(has_line(text, "mh_http_request_duration_seconds_bucket{" + labels + R"(,le="+Inf"} 3)"));
  CHECK(has_line(text, "mh_http_request_duration_seconds_count{" + labels + "} 3"));
  CHECK(has_line(text, "# TYPE mh_test_gauge gauge"));
  CHECK(has_line(text, "mh_test_gauge 7"));
}

TEST_CASE("labels come from closed sets: unusual methods do not add series") {
  HttpMetrics metrics;
  metrics.observe("/healthz", "GET", 200, 0.1);
  const size_t before = metrics.render().size();
  for (int i = 0; i < 2000; ++i) {
    metrics.observe("/healthz", std::string(1000, 'A') + std::to_string(i), 400, 0.1);
  }
  metrics.observe("/healthz", "BREW", 999, 0.1);
  const std::string text = metrics.render();
  CHECK(has_line(text, R"(mh_http_requests_total{route="/healthz",method="other",status="400"} 2000)"));
  CHECK(has_line(text, R"(mh_http_requests_total{route="/healthz",method="other",status="0"} 1)"));
  CHECK(text.size() < 4 * before);
}

TEST_CASE("label values are escaped") {
  HttpMetrics metrics;
  metrics.observe("a\"b\\c\nd", "GET", 200, 0.1);
  CHECK(metrics.render().find(R"(route="a\"b\\c\nd")") != std::string::npos);
}

}  // namespace
}  // namespace mh::http
