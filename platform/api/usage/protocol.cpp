#include "platform/api/usage/protocol.h"

#include <fmt/format.h>
#include <boost/json.hpp>
#include <charconv>

namespace mh::api {

namespace json = boost::json;

namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kMaxPeriod = 366 * kDay;

}  // namespace

Result<std::pair<int64_t, int64_t>> parse_period(const Request& request, int64_t now) {
  auto number = [&](const char* name, int64_t fallback) -> Result<int64_t> {
    auto text = request.query_param(name);
    if (!text) return fallback;
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
    if (ec != std::errc() || ptr != text->data() + text->size() || v < 0) {
      return invalid_argument(fmt::format("{} must be a Unix time in seconds", name), name);
    }
    return v;
  };
  MH_ASSIGN_OR_RETURN(int64_t end, number("end_time", now + 1));
  MH_ASSIGN_OR_RETURN(int64_t start, number("start_time", end - 30 * kDay));
  if (end <= start) return invalid_argument("end_time must come after start_time", "end_time");
  if (end - start > kMaxPeriod) {
    return invalid_argument("a period is at most 366 days", "start_time");
  }
  return std::pair{start, end};
}

Result<UsageRequest> parse_usage_request(const Request& request, int64_t now) {
  UsageRequest out;
  tenants::UsageQuery& q = out.query;
  MH_ASSIGN_OR_RETURN(auto period, parse_period(request, now));
  std::tie(q.start, q.end) = period;
  out.bucket_width = request.query_param("bucket_width").value_or("1d");
  if (out.bucket_width == "1h") {
    q.bucket_seconds = 3600;
  } else if (out.bucket_width == "1d") {
    q.bucket_seconds = kDay;
  } else if (out.bucket_width != "total") {
    return invalid_argument("bucket_width must be 1h, 1d or total", "bucket_width");
  }
  if (auto group = request.query_param("group_by")) {
    if (*group != "subject") return invalid_argument("group_by must be subject", "group_by");
    q.by_subject = true;
  }
  if (auto dimension = request.query_param("dimension")) {
    q.dimension = tenants::parse_dimension(*dimension);
    if (!q.dimension) {
      return invalid_argument(
          "dimension must be gpu_seconds, input_tokens, output_tokens or stored_bytes",
          "dimension");
    }
  }
  return out;
}

json::object usage_json(const std::string& tenant, const UsageRequest& asked,
                        const std::vector<tenants::UsageTotal>& totals) {
  const tenants::UsageQuery& q = asked.query;
  json::array data;
  json::object sums;
  const int64_t span = q.bucket_seconds > 0 ? q.bucket_seconds : q.end - q.start;
  for (const auto& t : totals) {
    json::object line{{"start_time", t.bucket_start},
                      {"end_time", t.bucket_start + span},
                      {"dimension", tenants::dimension_name(t.dimension)},
                      {"quantity", t.quantity},
                      {"records", t.records}};
    if (q.by_subject) {
      line["subject_kind"] = t.subject_kind;
      line["subject_id"] = t.subject_id;
    }
    data.push_back(std::move(line));
    std::string key(tenants::dimension_name(t.dimension));
    double before = sums.contains(key) ? sums[key].to_number<double>() : 0.0;
    sums[key] = before + t.quantity;
  }
  return {{"object", "usage"},
          {"tenant", tenant},
          {"start_time", q.start},
          {"end_time", q.end},
          {"bucket_width", asked.bucket_width},
          {"data", std::move(data)},
          {"totals", std::move(sums)}};
}

}  // namespace mh::api
