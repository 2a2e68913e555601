// What Deployments keeps in memory about its deployments, replicas and waiting requests; shared
// by service.cpp (their life) and inference.cpp (the request path). All of it is guarded by
// Deployments::mutex_, except each replica's idle connections (their own mutex).
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "platform/api/deployments/service.h"
#include "platform/api/transport.h"
#include "platform/executor/worker_process.h"
#include "platform/http/async_client.h"

namespace mh::api {

struct Deployments::Replica {
  int index = 0;
  uint64_t generation = 0;  // one per process started: older connections and events are stale
  std::unique_ptr<executor::Worker> process;
  std::string host = "127.0.0.1";  // where its server listens (its node, on a Slurm pool)
  ReplicaState state = ReplicaState::kStarting;
  uint16_t port = 0;
  std::string token;  // the secret its requests bear
  int restarts = 0;
  int failures = 0;  // deaths in a row without serving in between
  std::string last_exit;
  std::chrono::steady_clock::time_point restart_at, metered;
  int64_t started_at = 0;
  int in_flight = 0;          // requests relayed to it and not finished
  boost::json::object stats;  // its latest counters
  // The tenants whose requests it was given, and when last: a usage event naming any other
  // tenant is not believed (a staff replica serves many tenants and reports their tokens).
  std::map<std::string, std::chrono::steady_clock::time_point> served;
  // Its devices, from the scheduler: asked for once, kept across restarts of its process.
  bool submitted = false, admitted = false;
  bool move = false;  // its node is draining: stop it and ask for devices again
  std::vector<int> devices;
  std::string node;

  std::mutex pool_mutex;
  std::vector<std::pair<uint64_t, std::shared_ptr<http::AsyncHttpConnection>>> idle;  // by gen.
};

struct Deployments::Call {
  std::string tenant, request_id, body;
  std::string adapter;  // the LoRA adapter's directory the replica decodes through; "": none
  bool chat = false;
  std::shared_ptr<ResponseStream> out;
};

struct Deployments::Live {
  DeploymentRecord record;
  std::vector<std::shared_ptr<Replica>> replicas;
  // Waiting requests, one queue per tenant, served round-robin from the tenant after `last`.
  std::map<std::string, std::deque<std::shared_ptr<Call>>> queues;
  std::string last;
  bool removed = false;
  bool status_unsaved = false;  // the store refused the last status; written again next time
};

}  // namespace mh::api
