// The request path of deployments: admission, per-tenant fair queues, and the relay to a
// replica that streams its answer back to the client.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <filesystem>

#include "platform/api/deployments/runtime.h"
#include "platform/http/async_client.h"

namespace mh::api {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {
constexpr auto kConnectTimeout = std::chrono::seconds(5);
}  // namespace

Response Deployments::infer(Request& request, bool chat) {
  const std::string& tenant = request.principal.tenant;
  auto body = parse_json_object(request);
  if (!body.ok()) return Response::error(body.status());
  const json::value* model = body->if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return Response::error(
        invalid_argument("\"model\" must name a deployment or a deployed model", "model"));
  }
  const std::string name(model->as_string());
  auto now = clock_.now_in_memory();  // on an I/O thread: see add_deployment_routes
  if (!now.ok()) return Response::error(now.status());
  if (Status s = entitlements_.check(tenant, "", *now); !s.ok()) return Response::error(s);

  auto call = std::make_shared<Call>();
  call->tenant = tenant;
  call->request_id = request.request_id;
  call->chat = chat;
  call->body = std::move(request.body);
  call->out = std::make_shared<ResponseStream>();
  {
    std::lock_guard lock(mutex_);
    // The deployment by id, or one serving that model: the tenant's own first (a ready one
    // first), then one staff run for every tenant.
    Live* target = nullptr;
    auto rank = [&](const DeploymentRecord& d) {
      return (d.tenant.empty() ? 0 : 2) + (d.status == DeploymentStatus::kReady ? 1 : 0);
    };
    auto find = [&](const std::string& wanted) {
      for (auto& [id, live] : live_) {
        const DeploymentRecord& d = live->record;
        if ((d.tenant != tenant && !d.tenant.empty()) || (d.id != wanted && d.model != wanted)) {
          continue;
        }
        if (target == nullptr || rank(d) > rank(target->record)) target = live.get();
      }
    };
    find(name);
    if (target != nullptr) {
      // A deployment of an adapter serves its base through it.
      if (auto adapter = models_.adapter(target->record.tenant, target->record.model)) {
        call->adapter = std::filesystem::absolute(adapter->directory).string();
      }
    } else if (auto adapter = models_.adapter(tenant, name)) {
      // The tenant's adapter, answered by a deployment of its base (the tenant's own first,
      // then a staff one), through the adapter.
      find(adapter->base);
      call->adapter = std::filesystem::absolute(adapter->directory).string();
    }
    if (target == nullptr) {
      return Response::error(not_found(
          fmt::format("no deployment serves '{}'; deploy it with POST /v1/deployments", name)));
    }
    if (target->record.status == DeploymentStatus::kStopped ||
        target->record.status == DeploymentStatus::kFailed) {
      return Response::error(unavailable(
          fmt::format("deployment '{}' is {}{}", target->record.id,
                      status_name(target->record.status),
                      target->record.error.empty() ? "" : ": " + target->record.error)));
    }
    // Each tenant waits in a queue of its own (served round-robin) and may fill only its share
    // of the deployment's room: at most max_queue_per_tenant, and once max_queue requests wait
    // in all, no more than an equal part of it. One tenant cannot fill a shared deployment.
    size_t queued = 0;
    for (const auto& [t, q] : target->queues) queued += q.size();
    const auto own = target->queues.find(tenant);
    const size_t mine = own == target->queues.end() ? 0 : own->second.size();
    const size_t tenants = target->queues.size() + (own == target->queues.end() ? 1 : 0);
    const size_t share = std::max<size_t>(1, static_cast<size_t>(options_.max_queue) / tenants);
    if (mine >= static_cast<size_t>(options_.max_queue_per_tenant) ||
        (queued >= static_cast<size_t>(options_.max_queue) && mine >= share)) {
      return Response::error(resource_exhausted(fmt::format(
          "you have {} requests waiting on deployment '{}', your share of its queue; try again "
          "shortly",
          mine, target->record.id)));
    }
    target->queues[tenant].push_back(call);
    dispatch(*target);
  }
  return Response::streamed(call->out);
}

void Deployments::dispatch(Live& live) {
  if (stopping_) return;  // the destructor answers what waits
  for (;;) {
    // The ready replica with the most room.
    std::shared_ptr<Replica> best;
    for (auto& r : live.replicas) {
      if (r->state != ReplicaState::kReady || r->in_flight >= options_.max_batch) continue;
      if (!best || r->in_flight < best->in_flight) best = r;
    }
    if (!best) return;
    // The next tenant after the last one served that has a request waiting (round-robin).
    std::shared_ptr<Call> call;
    for (int pass = 0; pass < 2 && !call; ++pass) {
      auto it = pass == 0 ? live.queues.upper_bound(live.last) : live.queues.begin();
      for (; it != live.queues.end() && !call; ++it) {
        auto& q = it->second;
        while (!q.empty() && q.front()->out->cancelled()) q.pop_front();  // clients gone
        if (q.empty()) continue;
        call = std::move(q.front());
        q.pop_front();
        live.last = it->first;
      }
    }
    std::erase_if(live.queues, [](const auto& e) { return e.second.empty(); });
    if (!call) return;
    ++best->in_flight;
    best->served[call->tenant] = std::chrono::steady_clock::now();
    {
      std::lock_guard relays(relay_mutex_);
      ++relays_;
    }
    // Off this lock: the relay reads the replica's address under it.
    asio::post(io_, [this, call, best] { relay(call, best); });
  }
}

void Deployments::relay(std::shared_ptr<Call> call, std::shared_ptr<Replica> replica) {
  // The replica's address and secret as of now; a replica restarted since makes this fail,
  // and the client gets a 503 it may retry.
  uint16_t port = 0;
  uint64_t generation = 0;
  std::string token, deployment, host;
  {
    std::lock_guard lock(mutex_);
    port = replica->port;
    host = replica->host;
    generation = replica->generation;
    token = replica->token;
    for (const auto& [id, live] : live_) {
      for (const auto& r : live->replicas) {
        if (r == replica) deployment = id;
      }
    }
  }
  // Called once, however the relay ends: the answer closed, the connection kept or dropped.
  auto began = std::make_shared<bool>(false);
  auto end = [this, call, replica, deployment, generation, began](
                 Status status, std::shared_ptr<http::AsyncHttpConnection> connection) {
    call->out->on_cancel([] {});
    if (!status.ok() && !call->out->cancelled()) {
      spdlog::warn("deployment {}: relaying {} failed: {}", deployment, call->request_id,
                   status.message());
    }
    if (*began) {
      call->out->end();  // a stream cut short ends where it was cut
    } else {
      call->out->fail(unavailable(
          fmt::format("deployment '{}' could not answer: {}", deployment, status.message())));
    }
    if (status.ok() && connection && connection->reusable() && !call->out->cancelled()) {
      std::lock_guard lock(replica->pool_mutex);
      replica->idle.emplace_back(generation, std::move(connection));
    }
    finish_call(deployment, replica);
    std::lock_guard relays(relay_mutex_);
    if (--relays_ == 0) relay_done_.notify_all();
  };
  if (port == 0) return end(unavailable("the replica is restarting"), nullptr);
  std::shared_ptr<http::AsyncHttpConnection> connection;
  {
    std::lock_guard lock(replica->pool_mutex);
    while (!replica->idle.empty() && !connection) {
      auto [gen, c] = std::move(replica->idle.back());
      replica->idle.pop_back();
      if (gen == generation) connection = std::move(c);
    }
  }
  if (!connection) connection = http::AsyncHttpConnection::create(io_, host, port);
  std::weak_ptr<http::AsyncHttpConnection> weak = connection;
  call->out->on_cancel([weak] {
    if (auto c = weak.lock()) c->abort();  // the replica sees its client go, and stops
  });
  Headers headers = {{"Authorization", "Bearer " + token},
                     {"Content-Type", "application/json"},
                     {"X-Mh-Tenant", call->tenant},
                     {"X-Request-Id", call->request_id}};
  if (!call->adapter.empty()) headers.emplace_back("X-Mh-Adapter", call->adapter);
  connection->request(
      kConnectTimeout, "POST", call->chat ? "/v1/chat/completions" : "/v1/completions",
      std::move(headers), call->body,
      [call, began](const http::AsyncHttpConnection::Head& head) {
        *began = true;
        Headers extra;
        if (head.content_type.starts_with("text/event-stream")) {
          extra.emplace_back("Cache-Control", "no-cache");
        }
        call->out->begin(head.status, head.content_type, std::move(extra));
      },
      [call](std::string_view piece) {
        call->out->write(std::string(piece));
        return !call->out->cancelled();
      },
      [end, connection](Status status) mutable { end(std::move(status), std::move(connection)); });
}

void Deployments::finish_call(const std::string& deployment,
                              const std::shared_ptr<Replica>& replica) {
  std::lock_guard lock(mutex_);
  --replica->in_flight;
  if (auto it = live_.find(deployment); it != live_.end()) dispatch(*it->second);
}

}  // namespace mh::api
