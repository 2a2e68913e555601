// serving_bench: short completions through macrohardd beside the same requests straight to a
// replica (mh-worker serve on the same model), then streamed tokens/s through the daemon under
// 1, 8 and 64 concurrent streams. bench/serving/run.sh sets up the daemon, the deployment and
// the standalone replica, and runs this.
//
//   serving_bench --daemon 127.0.0.1:PORT --key mh_live_… --model MODEL
//                 --replica 127.0.0.1:PORT [--requests 2000] [--rounds 3] [--stream-tokens 64]
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "platform/http/http_client.h"

using mh::http::HttpConnection;
using Clock = std::chrono::steady_clock;

namespace {

struct Target {
  std::string name, host;
  uint16_t port = 0;
  mh::http::Headers headers;
};

Target parse_target(const std::string& name, const std::string& address, const std::string& key) {
  Target t;
  t.name = name;
  const size_t colon = address.rfind(':');
  t.host = address.substr(0, colon);
  t.port = static_cast<uint16_t>(std::stoi(address.substr(colon + 1)));
  t.headers = {{"Content-Type", "application/json"}};
  if (!key.empty()) t.headers.emplace_back("Authorization", "Bearer " + key);
  return t;
}

std::unique_ptr<HttpConnection> connect(const Target& t) {
  auto c = HttpConnection::connect(t.host, t.port, std::chrono::seconds(5));
  if (!c.ok()) {
    std::fprintf(stderr, "%s: %s\n", t.name.c_str(), c.status().message().c_str());
    std::exit(1);
  }
  return std::move(c).value();
}

// One request; its body's bytes, or exits on an error status.
size_t post(HttpConnection& c, const Target& t, const std::string& body,
            const std::function<void(std::string_view)>& on_data = {},
            const char* path = "/v1/completions") {
  int status = 0;
  std::string error;
  size_t bytes = 0;
  mh::Status s = c.request(
      "POST", path, t.headers, body,
      [&](const HttpConnection::Head& h) { status = h.status; },
      [&](std::string_view piece) {
        bytes += piece.size();
        if (status != 200) error += piece;
        if (on_data) on_data(piece);
        return true;
      });
  if (!s.ok() || status != 200) {
    std::fprintf(stderr, "%s: %s %d %s\n", t.name.c_str(), s.message().c_str(), status,
                 error.c_str());
    std::exit(1);
  }
  return bytes;
}

struct Latency {
  double rps = 0, p50_us = 0, p99_us = 0;
};

// `requests` short completions, one after another on one kept-alive connection.
Latency sequential(const Target& t, const std::string& body, int requests) {
  auto c = connect(t);
  for (int i = 0; i < 20; ++i) post(*c, t, body);  // warm up: connection, caches
  std::vector<double> us;
  us.reserve(static_cast<size_t>(requests));
  const auto start = Clock::now();
  for (int i = 0; i < requests; ++i) {
    const auto t0 = Clock::now();
    post(*c, t, body);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(us.begin(), us.end());
  return {requests / seconds, us[us.size() / 2], us[us.size() * 99 / 100]};
}

// `streams` concurrent streamed completions of `tokens` tokens each, `rounds` each; the tokens
// received per second, all streams together.
double streamed(const Target& t, const std::string& model, int streams, int tokens) {
  const std::string body = fmt::format(
      R"({{"model":"{}","prompt":"The","max_tokens":{},"ignore_eos":true,"stream":true,)"
      R"("temperature":0}})",
      model, tokens);
  std::atomic<int64_t> events{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&] {
      auto c = connect(t);
      int64_t n = 0;
      post(*c, t, body, [&](std::string_view piece) {
        for (size_t at = piece.find("data: {"); at != std::string_view::npos;
             at = piece.find("data: {", at + 1)) {
          ++n;
        }
      });
      events += n;
    });
  }
  for (auto& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // One event per token, plus the closing one that carries the finish reason.
  return static_cast<double>(events.load() - streams) / seconds;
}

// Decode tokens/s of `streams` concurrent chat completions of `tokens` tokens each: the answers
// free, or held to `schema` (one that a random model does not finish within `tokens`, so both
// decode the same length). Each request runs once untimed first, so that the masks its
// answer needs are made (once per schema, in service) before it is timed.
double decode_rate(const Target& t, int streams, int tokens, const std::string& schema) {
  const std::string format =
      schema.empty() ? std::string(R"("ignore_eos":true)")
                     : fmt::format(R"("response_format":{{"type":"json_schema","json_schema":)"
                                   R"({{"name":"bench","strict":true,"schema":{}}}}})",
                                   schema);
  const auto body = [&](int seed) {
    return fmt::format(
        R"({{"messages":[{{"role":"user","content":"Items, please."}}],"max_tokens":{},)"
        R"("temperature":1,"seed":{},{}}})",
        tokens, seed, format);
  };
  {  // the same requests once untimed: the schema's token masks are made on first use
    auto c = connect(t);
    for (int s = 0; s < streams; ++s) post(*c, t, body(s + 1), {}, "/v1/chat/completions");
  }
  std::atomic<int64_t> generated{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      auto c = connect(t);
      std::string answer;
      post(*c, t, body(s + 1), [&](std::string_view piece) { answer += piece; },
           "/v1/chat/completions");
      constexpr std::string_view kCount = "\"completion_tokens\":";
      const size_t at = answer.find(kCount);
      if (at != std::string::npos) generated += std::stoll(answer.substr(at + kCount.size()));
    });
  }
  for (auto& th : threads) th.join();
  return static_cast<double>(generated.load()) /
         std::chrono::duration<double>(Clock::now() - start).count();
}

// Seconds to the first streamed token of a completion of `prompt` (one token asked for).
double first_token(const Target& t, const std::string& prompt) {
  auto c = connect(t);
  std::string quoted;
  for (char ch : prompt) {
    if (ch == '"' || ch == '\\') quoted += '\\';
    quoted += ch;
  }
  const std::string body = fmt::format(
      R"({{"prompt":"{}","max_tokens":1,"temperature":0,"stream":true}})", quoted);
  const auto start = Clock::now();
  double seconds = -1;
  post(*c, t, body, [&](std::string_view piece) {
    if (seconds < 0 && piece.find("data: {") != std::string_view::npos) {
      seconds = std::chrono::duration<double>(Clock::now() - start).count();
    }
  });
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"serving_bench: completions through macrohardd beside a replica"};
  std::string daemon, key, model, replica;
  int requests = 2000, rounds = 3, stream_tokens = 64;
  app.add_option("--daemon", daemon, "macrohardd host:port")->required();
  app.add_option("--key", key, "a tenant key")->required();
  app.add_option("--model", model, "the deployed model (or deployment id)")->required();
  app.add_option("--replica", replica, "a standalone replica's host:port")->required();
  app.add_option("--requests", requests, "short completions per measurement");
  app.add_option("--rounds", rounds, "alternating rounds of daemon and replica");
  app.add_option("--stream-tokens", stream_tokens, "tokens per streamed completion");
  std::string structured;
  int structured_rounds = 3;
  app.add_option("--structured-replica", structured,
                 "a replica (with a chat template) to compare json_schema decoding on");
  app.add_option("--structured-rounds", structured_rounds, "alternating rounds of that");
  CLI11_PARSE(app, argc, argv);

  const Target through = parse_target("daemon", daemon, key);
  const Target direct = parse_target("replica", replica, "");
  const std::string short_body =
      fmt::format(R"({{"model":"{}","prompt":"Hi","max_tokens":1,"temperature":0}})", model);

  // Short completions: the same requests to each, alternating which goes first.
  std::vector<Latency> ours, peer;
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      ours.push_back(sequential(through, short_body, requests));
      peer.push_back(sequential(direct, short_body, requests));
    } else {
      peer.push_back(sequential(direct, short_body, requests));
      ours.push_back(sequential(through, short_body, requests));
    }
    std::printf(
        "round %d: daemon %.0f req/s p50 %.0f us p99 %.0f us | replica %.0f req/s p50 "
        "%.0f us p99 %.0f us\n",
        r + 1, ours.back().rps, ours.back().p50_us, ours.back().p99_us, peer.back().rps,
        peer.back().p50_us, peer.back().p99_us);
  }
  auto median = [](std::vector<Latency> v, double Latency::*field) {
    std::sort(v.begin(), v.end(),
              [&](const Latency& a, const Latency& b) { return a.*field < b.*field; });
    return v[v.size() / 2].*field;
  };

  std::vector<std::pair<int, double>> rates;
  for (int streams : {1, 8, 64}) {
    rates.emplace_back(streams, streamed(through, model, streams, stream_tokens));
    std::printf("%d streams: %.0f tokens/s\n", streams, rates.back().second);
  }

  std::printf("\nshort completions (max_tokens 1), %d sequential requests, median of %d rounds\n",
              requests, rounds);
  std::printf("%-22s %10s %10s %10s\n", "path", "req/s", "p50 us", "p99 us");
  std::printf("%-22s %10.0f %10.0f %10.0f\n", "through macrohardd", median(ours, &Latency::rps),
              median(ours, &Latency::p50_us), median(ours, &Latency::p99_us));
  std::printf("%-22s %10.0f %10.0f %10.0f\n", "straight to replica", median(peer, &Latency::rps),
              median(peer, &Latency::p50_us), median(peer, &Latency::p99_us));
  std::printf("%-22s %10s %10.0f %10.0f\n", "daemon adds", "",
              median(ours, &Latency::p50_us) - median(peer, &Latency::p50_us),
              median(ours, &Latency::p99_us) - median(peer, &Latency::p99_us));
  std::printf("\nstreamed completions through macrohardd (%d tokens each)\n", stream_tokens);
  std::printf("%-10s %12s\n", "streams", "tokens/s");
  for (const auto& [streams, rate] : rates) std::printf("%-10d %12.0f\n", streams, rate);

  if (!structured.empty()) {
    // Records of a string, an integer and an enum, more than a random model writes in 128
    // tokens: every step constrained, no early end.
    const std::string schema =
        R"({"type":"array","minItems":200,"items":{"type":"object","properties":{)"
        R"("name":{"type":"string","maxLength":12},"count":{"type":"integer"},)"
        R"("kind":{"enum":["alpha","beta","gamma"]}},"required":["name","count","kind"],)"
        R"("additionalProperties":false}})";
    const Target replica_target = parse_target("structured replica", structured, "");
    std::printf("\ndecode tokens/s, chat completions of 128 tokens straight to a replica\n");
    std::printf("%-8s %-8s %14s %14s %8s\n", "streams", "round", "free", "json_schema", "ratio");
    for (int streams : {1, 8}) {
      std::vector<double> ratios;
      for (int r = 0; r < structured_rounds; ++r) {
        double free_rate = 0, schema_rate = 0;
        if (r % 2 == 0) {
          free_rate = decode_rate(replica_target, streams, 128, "");
          schema_rate = decode_rate(replica_target, streams, 128, schema);
        } else {
          schema_rate = decode_rate(replica_target, streams, 128, schema);
          free_rate = decode_rate(replica_target, streams, 128, "");
        }
        ratios.push_back(schema_rate / free_rate);
        std::printf("%-8d %-8d %14.0f %14.0f %8.2f\n", streams, r + 1, free_rate, schema_rate,
                    ratios.back());
      }
      std::sort(ratios.begin(), ratios.end());
      std::printf("%-8d median json_schema / free: %.2f\n", streams, ratios[ratios.size() / 2]);
    }

    // Time to first token of a long prompt: new each time (cold), or repeated (its blocks in
    // the replica's prefix cache).
    std::string text;
    while (text.size() < 9000) text += "The cat sat on the mat while the dog slept by the door. ";
    std::vector<double> cold, cached;
    first_token(replica_target, text);  // kept now
    for (int i = 0; i < 5; ++i) {
      cold.push_back(first_token(replica_target, std::to_string(1000 + i) + " " + text));
      cached.push_back(first_token(replica_target, text));
    }
    std::sort(cold.begin(), cold.end());
    std::sort(cached.begin(), cached.end());
    std::printf("\ntime to first token, a 9,000-character prompt (~2,000 tokens), median of 5\n");
    std::printf("cold %.1f ms, prefix cached %.1f ms: %.1fx\n", cold[2] * 1e3, cached[2] * 1e3,
                cold[2] / cached[2]);
  }
  return 0;
}
