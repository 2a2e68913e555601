#include "platform/http/metrics.h"

#include <fmt/format.h>

#include <mutex>

namespace mh::http {
namespace {

// Label values are escaped as the exposition format requires: \ " and newline.
std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Every label comes from a closed set, so that no request can add series: the standard
// methods (anything else is "other"), and statuses in 100-599 (anything else is 0). Routes are
// the router's patterns or "unmatched" already.
std::string_view method_label(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == known) return known;
  }
  return "other";
}

}  // namespace

HttpMetrics::Series& HttpMetrics::series(std::string_view route, std::string_view method,
                                         int status) {
  auto key = std::make_tuple(route, method, status);
  {
    std::shared_lock lock(mutex_);
    if (auto it = series_.find(key); it != series_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  auto [it, inserted] = series_.try_emplace(Key{route, method, status}, nullptr);
  if (inserted) it->second = std::make_unique<Series>();
  return *it->second;
}

void HttpMetrics::observe(std::string_view route, std::string_view method, int status,
                          double seconds) {
  Series& s = series(route, method_label(method), status >= 100 && status <= 599 ? status : 0);
  s.count.fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      s.buckets[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
}

void HttpMetrics::add_gauge(std::string name, std::string help, std::function<double()> read) {
  std::unique_lock lock(mutex_);
  gauges_.push_back({std::move(name), std::move(help), std::move(read)});
}

std::string HttpMetrics::render() const {
  std::string out;
  std::shared_lock lock(mutex_);
  out += "# HELP mh_http_requests_total HTTP requests answered, by route, method and status.\n";
  out += "# TYPE mh_http_requests_total counter\n";
  for (const auto& [key, s] : series_) {
    const auto& [route, method, status] = key;
    out += fmt::format("mh_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}\n",
                       escape_label(route), escape_label(method), status,
                       s->count.load(std::memory_order_relaxed));
  }
  out += "# HELP mh_http_request_duration_seconds Time from a complete request to its response.\n";
  out += "# TYPE mh_http_request_duration_seconds histogram\n";
  for (const auto& [key, s] : series_) {
    const auto& [route, method, status] = key;
    std::string labels = fmt::format("route=\"{}\",method=\"{}\",status=\"{}\"",
                                     escape_label(route), escape_label(method), status);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += s->buckets[i].load(std::memory_order_relaxed);
      out += fmt::format("mh_http_request_duration_seconds_bucket{{{},le=\"{}\"}} {}\n", labels,
                         kBuckets[i], cumulative);
    }
    uint64_t count = s->count.load(std::memory_order_relaxed);
    out += fmt::format("mh_http_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n", labels,
                       count);
    out += fmt::format("mh_http_request_duration_seconds_sum{{{}}} {}\n", labels,
                       static_cast<double>(s->sum_ns.load(std::memory_order_relaxed)) / 1e9);
    out += fmt::format("mh_http_request_duration_seconds_count{{{}}} {}\n", labels, count);
  }
  for (const Gauge& g : gauges_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", g.name, g.help, g.name, g.name,
                       g.read());
  }
  return out;
}

}  // namespace mh::http
