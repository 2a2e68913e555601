#!/usr/bin/env bash
# Tenant-facing costs, each beside a peer in the same run:
#   1. GET /v1/tenant with a tenant key (authenticate: SHA-256, key lookup, suspension and
#      rate-limit checks, role table) vs GET /v1/version with no key, same daemon, same wrk.
#   2. POST /v1/files of a large file (multipart streamed into the blob store, hashed, fsynced)
#      vs dd writing the same bytes to the same disk with fsync.
#   bench/tenants/run.sh [seconds per wrk run, 5] [rounds, 3] [upload MiB, 1024]
# Needs a build, wrk, curl and openssl (scripts/setup). Prints a table last.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-5}"
rounds="${2:-3}"
upload_mib="${3:-1024}"
bin=build/default
work=$(mktemp -d /tmp/mh-bench-tenants.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

mhctl=$bin/platform/mhctl/mhctl
$mhctl license keygen --key-id bench --out-dir "$work" >/dev/null
$mhctl license issue --key "$work/bench.key" --licensee Bench --tenant bench --feature train \
  --seats 1 --out "$work/bench.lic" 2>/dev/null
"$bin/platform/main/macrohardd" --data-dir "$work/data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --admin-key-file "$work/admin.key" --access-log "$work/access.log" \
  --license-public-key "$work/bench.pub" --threads "$(nproc)" --log-level warn \
  >"$work/daemon.out" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
export MH_URL="http://127.0.0.1:$(cat "$work/port")" MH_API_KEY_FILE="$work/admin.key"
$mhctl admin license install "$work/bench.lic" >/dev/null
$mhctl admin tenant limits bench --rate-limit-rps 1000000 --rate-limit-burst 1000000 \
  --storage-limit-bytes $(( (upload_mib + 64) << 20 )) >/dev/null
key=$($mhctl admin tenant key bench | tail -1)

run_wrk() {  # name path [header]
  local name=$1 path=$2 out="$work/$1.wrk"
  shift 2
  wrk -t2 -c64 -d"${duration}s" --latency "$@" "$MH_URL$path" >"$out"
  if grep -q Non-2xx "$out"; then echo "warning: $name had errors" >&2; fi
  echo "$name $(awk '/^Requests\/sec/ {print $2}' "$out")"
}
wrk -t1 -c8 -d1s "$MH_URL/v1/version" >/dev/null
for _ in $(seq "$rounds"); do
  run_wrk unauthenticated /v1/version
  run_wrk authenticated /v1/tenant -H "Authorization: Bearer $key"
done >"$work/results"

# Upload: the daemon receives, hashes, writes and fsyncs; dd writes and fsyncs the same bytes
# on the same filesystem. The file is made first so that neither run pays for generating it.
# The two alternate, once per round (the disk's speed drifts with writeback), and each round's
# file is deleted before the next.
head -c $((upload_mib << 20)) /dev/urandom >"$work/upload.bin"
rss_before=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
now() { date +%s.%N; }
for _ in $(seq "$rounds"); do
  sync
  start=$(now)
  dd if="$work/upload.bin" of="$work/data/dd.out" bs=1M conv=fsync status=none
  echo "dd $(echo "$upload_mib / ($(now) - $start)" | bc -l)"
  rm -f "$work/data/dd.out"
  sync
  start=$(now)
  curl -sf -H "Authorization: Bearer $key" -F purpose=model -F "file=@$work/upload.bin" \
    "$MH_URL/v1/files" >"$work/upload.json"
  echo "upload $(echo "$upload_mib / ($(now) - $start)" | bc -l)"
  id=$(sed -n 's/.*"id":"\(file-[^"]*\)".*/\1/p' "$work/upload.json")
  curl -sf -X DELETE -H "Authorization: Bearer $key" "$MH_URL/v1/files/$id" >/dev/null
done >>"$work/results"
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
pick() { awk -v n="$1" '$1 == n {print $2}' "$work/results"; }
ratio=$(paste <(pick authenticated) <(pick unauthenticated) | awk '{printf "%.3f\n", $1 / $2}' | median)
up_ratio=$(paste <(pick upload) <(pick dd) | awk '{printf "%.3f\n", $1 / $2}' | median)

echo
echo "Tenants, $(nproc) cores ($(uname -m)), $rounds rounds of ${duration}s wrk -t2 -c64, ${upload_mib} MiB upload, $(date -u +%F)"
printf '%-40s %12s\n' measure median
printf '%-40s %12.0f\n' "GET /v1/version, no key (req/s)" "$(pick unauthenticated | median)"
printf '%-40s %12.0f\n' "GET /v1/tenant, tenant key (req/s)" "$(pick authenticated | median)"
printf '%-40s %11.2fx\n' "  authenticated / unauthenticated" "$ratio"
printf '%-40s %12.0f\n' "dd to the same disk, fsync (MiB/s)" "$(pick dd | median)"
printf '%-40s %12.0f\n' "POST /v1/files (MiB/s)" "$(pick upload | median)"
printf '%-40s %11.2fx\n' "  upload / dd (median of rounds)" "$up_ratio"
printf '%-40s %12d\n' "daemon peak RSS before uploads (MiB)" "$(( rss_before / 1024 ))"
printf '%-40s %12d\n' "daemon peak RSS after uploads (MiB)" "$(( rss_peak / 1024 ))"
