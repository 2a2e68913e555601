#include "platform/executor/worker_events.h"

#include <boost/json.hpp>
#include <cmath>
#include <limits>

namespace mh::executor {

namespace json = boost::json;

namespace {

class Fields {
 public:
  explicit Fields(const json::object& o) : o_(o) {}

  Result<int64_t> count(std::string_view key, int64_t max = std::numeric_limits<int64_t>::max()) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    int64_t n = -1;
    if (v->is_int64()) {
      n = v->as_int64();
    } else if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(max)) {
      n = static_cast<int64_t>(v->as_uint64());
    }
    if (n < 0 || n > max) {
      return invalid_argument(
          "worker event: \"" + std::string(key) + "\" must be an integer from 0 to " +
          std::to_string(max));
    }
    return n;
  }
  Result<double> number(std::string_view key) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    if (!v->is_number() || !std::isfinite(v->to_number<double>())) {
      return invalid_argument("worker event: \"" + std::string(key) + "\" must be a finite number");
    }
    return v->to_number<double>();
  }
  Result<std::optional<double>> optional_number(std::string_view key) {
    if (o_.if_contains(key) == nullptr) return std::optional<double>();
    MH_ASSIGN_OR_RETURN(double x, number(key));
    return std::optional<double>(x);
  }
  Result<std::string> text(std::string_view key, size_t max_bytes) {
    const json::value* v = o_.if_contains(key);
    if (v == nullptr) return missing(key);
    if (!v->is_string() || v->as_string().size() > max_bytes) {
      return invalid_argument("worker event: \"" + std::string(key) + "\" must be a string of at most " +
                              std::to_string(max_bytes) + " bytes");
    }
    return std::string(v->as_string());
  }

 private:
  static Status missing(std::string_view key) {
    return invalid_argument("worker event: \"" + std::string(key) + "\" is missing");
  }
  const json::object& o_;
};

constexpr size_t kMaxPath = 4096;

}  // namespace

Result<WorkerEvent> parse_worker_event(std::string_view line) {
  if (line.size() > kMaxEventLine) {
    return invalid_argument("worker event: a line of " + std::to_string(line.size()) +
                            " bytes is longer than " + std::to_string(kMaxEventLine));
  }
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return invalid_argument("worker event: not a JSON object");
  const json::object& o = v.as_object();
  Fields f(o);
  MH_ASSIGN_OR_RETURN(const std::string type, f.text("type", 32));
  WorkerEvent e;
  if (type == "step") {
    e.kind = WorkerEvent::Kind::kStep;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.steps, f.count("steps"));
    MH_ASSIGN_OR_RETURN(e.loss, f.number("loss"));
    MH_ASSIGN_OR_RETURN(e.lr, f.number("lr"));
  } else if (type == "checkpoint") {
    e.kind = WorkerEvent::Kind::kCheckpoint;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("path", kMaxPath));
    MH_ASSIGN_OR_RETURN(e.valid_loss, f.optional_number("valid_loss"));
  } else if (type == "stopped") {
    e.kind = WorkerEvent::Kind::kStopped;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("checkpoint", kMaxPath));
  } else if (type == "done") {
    e.kind = WorkerEvent::Kind::kDone;
    MH_ASSIGN_OR_RETURN(e.step, f.count("step"));
    MH_ASSIGN_OR_RETURN(e.path, f.text("path", kMaxPath));
    MH_ASSIGN_OR_RETURN(e.trained_tokens, f.count("trained_tokens"));
    MH_ASSIGN_OR_RETURN(e.valid_loss, f.optional_number("valid_loss"));
  } else if (type == "ready") {
    e.kind = WorkerEvent::Kind::kReady;
    MH_ASSIGN_OR_RETURN(e.port, f.count("port", 65535));
    if (e.port == 0) return invalid_argument("worker event: \"port\" must be from 1 to 65535");
  } else if (type == "usage") {
    e.kind = WorkerEvent::Kind::kUsage;
    if (o.if_contains("tenant") != nullptr && !o.at("tenant").is_null()) {
      MH_ASSIGN_OR_RETURN(e.tenant, f.text("tenant", 200));
    }
    MH_ASSIGN_OR_RETURN(e.prompt_tokens, f.count("prompt_tokens"));
    MH_ASSIGN_OR_RETURN(e.completion_tokens, f.count("completion_tokens"));
  } else if (type == "stats") {
    e.kind = WorkerEvent::Kind::kStats;
    e.stats = o;
    e.stats.erase("type");
  } else {
    return invalid_argument("worker event: unknown type \"" + type + "\"");
  }
  return e;
}

}  // namespace mh::executor
