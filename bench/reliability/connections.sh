#!/usr/bin/env bash
# /healthz latency while the daemon holds 10,000 idle connections and 200 slow-header clients
# (slowloris: a header byte a second, never finished), beside the same measurement with none.
#   bench/reliability/connections.sh [idle, 10000] [slow, 200] [seconds, 10]
# Reports wrk's p99 for each; the target is a p99 under 10 ms with the connections held.
# Needs a build, wrk and python3 (scripts/setup), and a descriptor limit (ulimit -Hn) above
# idle + slow + 1000 for the daemon and for the client holding them.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle="${1:-10000}"
slow="${2:-200}"
duration="${3:-10}"
bin=build/default
work=$(mktemp -d /tmp/mh-bench-conn.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle + slow + 1000)) ]; then
  echo "the descriptor limit $(ulimit -n) is below $((idle + slow + 1000))" >&2
  exit 1
fi
"$bin/platform/main/macrohardd" --data-dir "$work/data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --admin-key-file "$work/admin.key" --log-level warn \
  --max-connections $((idle + slow + 1000)) --max-connections-per-address 0 \
  >"$work/daemon.out" 2>&1 &
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

p99() {  # wrk output -> p99 in ms
  awk '$1 == "99%" {v = $2; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v}' "$1"
}
measure() {  # name
  wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/healthz" >"$work/$1.wrk"
  echo "$1 requests/s $(awk '/^Requests\/sec/ {print $2}' "$work/$1.wrk") p99_ms $(p99 "$work/$1.wrk")" \
    "errors $(awk '/Socket errors|Non-2xx/ {print}' "$work/$1.wrk" | tr '\n' ' ')"
}

wrk -t1 -c8 -d1s "http://127.0.0.1:$port/healthz" >/dev/null
measure quiet
python3 bench/reliability/hold.py "$port" "$idle" "$slow" >"$work/hold.log" 2>&1 &
for _ in $(seq 120); do
  grep -q "holding" "$work/hold.log" 2>/dev/null && break
  sleep 0.5
done
sleep 2
echo "held: $(grep holding "$work/hold.log" | tail -1); daemon open connections: $(curl -s "http://127.0.0.1:$port/metrics" | awk '/^mh_http_open_connections/ {print $2}')"
measure loaded
echo "still held: $(tail -1 "$work/hold.log")"
