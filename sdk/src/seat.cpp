#include "sdk/src/seat.h"

#include <unistd.h>

#include <fmt/format.h>
#include <boost/json.hpp>

namespace mh::sdk {

namespace json = boost::json;

std::string default_instance_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  return fmt::format("{}/{}", host, ::getpid());
}

namespace {
// Seat traffic retries little and waits little: a heartbeat runs again soon anyway, and
// releasing a seat must not hold up the program that is closing its client.
ClientConfig seat_config(ClientConfig config) {
  config.max_retries = std::min(config.max_retries, 1);
  config.request_timeout = std::min(config.request_timeout, std::chrono::milliseconds(10'000));
  return config;
}
}  // namespace

SeatKeeper::SeatKeeper(const ClientConfig& config, std::string license_id, std::string instance)
    : http_(seat_config(config)),
      license_id_(std::move(license_id)),
      instance_(std::move(instance)) {}

SeatKeeper::~SeatKeeper() {
  std::string lease;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    lease = lease_id_;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!lease.empty()) (void)http_.call("DELETE", "/v1/leases/" + lease);  // best effort
}

std::string SeatKeeper::lease_id() {
  std::lock_guard lock(mutex_);
  return lease_id_;
}

CallResult<std::string> SeatKeeper::ensure() {
  std::unique_lock lock(mutex_);
  if (!lease_id_.empty()) return lease_id_;
  std::string body =
      json::serialize(json::object{{"license_id", license_id_}, {"instance", instance_}});
  auto result = http_.call("POST", "/v1/leases", body);
  if (auto* error = std::get_if<CallError>(&result)) {
    error->status = Status(error->status.code(),
                           "cannot hold a seat of the license: " + error->status.message());
    return *error;
  }
  boost::system::error_code ec;
  json::value lease = json::parse(std::get<HttpResponse>(result).body, ec);
  if (ec || !lease.is_object() || !lease.as_object().contains("id")) {
    return CallError{internal_error("the platform answered a seat checkout with no lease"), 0, {}};
  }
  lease_id_ = json::value_to<std::string>(lease.at("id"));
  ttl_seconds_ = lease.at("ttl_seconds").to_number<int64_t>();
  if (!thread_.joinable()) thread_ = std::thread([this] { heartbeat_loop(); });
  return lease_id_;
}

void SeatKeeper::heartbeat_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto interval = std::chrono::milliseconds(std::max<int64_t>(ttl_seconds_ * 1000 / 3, 200));
    if (wake_.wait_for(lock, interval, [&] { return stopping_; })) return;
    if (lease_id_.empty()) continue;
    std::string lease = lease_id_;
    lock.unlock();
    auto result = http_.call("POST", "/v1/leases/" + lease + "/heartbeat");
    lock.lock();
    if (auto* error = std::get_if<CallError>(&result)) {
      // The platform dropped the lease (expired, released, license revoked): forget it, and let
      // the next request check out anew. Network trouble: keep the lease and try again.
      if (error->http_status == 403 || error->http_status == 404 || error->http_status == 409) {
        if (lease_id_ == lease) lease_id_.clear();
      }
    }
  }
}

}  // namespace mh::sdk
