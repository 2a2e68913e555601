#!/usr/bin/env bash
# HTTP throughput of macrohardd beside nginx on the same machine, same wrk settings, one run.
#   bench/http/run.sh [seconds per run, 5] [connections, 64] [rounds, 5]
# Measures: GET /healthz; an admin-authenticated small JSON GET (/v1/admin/keys?limit=1, which
# authenticates the key against the store and reads a page of keys); nginx serving a 2-byte
# static file. Both servers log every request to a file and use one worker per core.
# Needs a build (scripts/test or cmake --build --preset default), wrk and nginx (scripts/setup).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-5}"
connections="${2:-64}"
rounds="${3:-5}"
threads=2
bin=build/default
work=$(mktemp -d /tmp/mh-bench-http.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cores=$(nproc)
nginx_port="${NGINX_PORT:-18090}"
# macrohardd: one I/O thread per core, access log to a file.
"$bin/platform/main/macrohardd" --data-dir "$work/data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --admin-key-file "$work/admin.key" --access-log "$work/access.log" \
  --threads "$cores" --log-level warn >"$work/daemon.out" 2>&1 &
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
mh_port=$(cat "$work/port")
key=$(cat "$work/admin.key")

# nginx: one worker per core, access log to a file, keep-alive, a 2-byte file.
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"  # nginx workers run as an unprivileged user
printf 'ok' >"$work/www/ok"
cat >"$work/nginx.conf" <<CONF
worker_processes $cores;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work/nginx" 2>"$work/nginx.err" &
for _ in $(seq 50); do curl -sf http://127.0.0.1:$nginx_port/ok >/dev/null && break; sleep 0.1; done

run_wrk() {  # name url [header]
  local name=$1 url=$2 out="$work/$1.wrk"
  shift 2
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" "$url" >"$out"
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
  p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; print v}' "$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $4}' "$out")
  if [ -n "$non2xx" ]; then echo "warning: $name had $non2xx non-2xx responses" >&2; fi
  echo "$name $rps $p99"
}

# Warm up each server briefly. Then several rounds, each measuring the targets back to back, so
# that the ratios compare runs made under the same machine load; medians are reported.
wrk -t1 -c8 -d1s "http://127.0.0.1:$mh_port/healthz" >/dev/null
wrk -t1 -c8 -d1s "http://127.0.0.1:$nginx_port/ok" >/dev/null
for round in $(seq "$rounds"); do
  run_wrk nginx_static_2B "http://127.0.0.1:$nginx_port/ok"
  run_wrk macrohardd_healthz "http://127.0.0.1:$mh_port/healthz"
  run_wrk macrohardd_admin_json "http://127.0.0.1:$mh_port/v1/admin/keys?limit=1" \
    -H "Authorization: Bearer $key"
done >"$work/results"

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
echo "HTTP, wrk -t$threads -c$connections, $rounds rounds of ${duration}s, $(nproc) cores ($(uname -m)), $(date -u +%F)"
printf '%-24s %12s %10s %16s\n' target requests/s p99_ms "vs nginx (range)"
for name in nginx_static_2B macrohardd_healthz macrohardd_admin_json; do
  rps=$(awk -v n="$name" '$1 == n {print $2}' "$work/results" | median)
  p99=$(awk -v n="$name" '$1 == n {print $3}' "$work/results" | median)
  # Per-round ratio to that round's nginx figure.
  ratios=$(paste <(awk -v n="$name" '$1 == n {print $2}' "$work/results") \
                 <(awk '$1 == "nginx_static_2B" {print $2}' "$work/results") |
           awk '{printf "%.3f\n", $1 / $2}')
  printf '%-24s %12.0f %10.2f %7.2fx (%s-%s)\n' "$name" "$rps" "$p99" \
    "$(echo "$ratios" | median)" "$(echo "$ratios" | sort -g | head -1)" "$(echo "$ratios" | sort -g | tail -1)"
done
