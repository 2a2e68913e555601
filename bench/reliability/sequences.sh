#!/usr/bin/env bash
# Replays two abuse sequences against a fresh daemon and reports what held:
# - metrics cardinality: 2,000 requests to /healthz with 1 KB unusual method tokens, then
#   /metrics' size and its scrape time before and after (it must not grow with them);
# - seats across relicensing: a licence with 2 seats, both leased; a second licence for the
#   tenant installed; the old leases' heartbeats and a third lease on the new licence (the live
#   seats must never exceed the licence in force).
#   bench/reliability/sequences.sh
# Needs a build and curl (scripts/setup).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=build/default
work=$(mktemp -d /tmp/mh-bench-seq.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mhctl="$bin/platform/mhctl/mhctl"
"$mhctl" license keygen --key-id bench --out-dir "$work/keys" >/dev/null 2>&1
"$bin/platform/main/macrohardd" --data-dir "$work/data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --admin-key-file "$work/admin.key" --log-level warn \
  --license-public-key "$work/keys/bench.pub" >"$work/daemon.out" 2>&1 &
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$work/port")"
key=$(cat "$work/admin.key")
admin=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")

scrape() {  # -> "bytes seconds"
  curl -s -o "$work/metrics" -w '%{time_total}' "$url/metrics" >"$work/t"
  echo "$(wc -c <"$work/metrics") $(cat "$work/t")"
}
method=$(head -c 1024 /dev/zero | tr '\0' 'Q')
unusual() {  # count from
  for i in $(seq "$2" $(($2 + $1 - 1))); do
    curl -s -o /dev/null -X "${method:0:1000}$i" "$url/healthz" || true
  done
}
unusual 10 0  # every label that can exist, once
read -r before before_s < <(scrape)
unusual 2000 100
read -r after after_s < <(scrape)
unusual 2000 5000
read -r again again_s < <(scrape)
echo "metrics: ${before} bytes (${before_s} s) after 10 unusual methods, ${after} bytes" \
  "(${after_s} s) after 2,000 more, ${again} bytes (${again_s} s) after 4,000"

issue() {  # id seats -> licence file
  "$mhctl" license issue --key "$work/keys/bench.key" --licensee Bench --tenant bench \
    --id "$1" --seats "$2" --feature train --out "$work/$1.lic" >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.dumps({"license": open(sys.argv[1]).read()}))' \
    "$work/$1.lic" >"$work/$1.json"
  curl -s -o /dev/null -w '%{http_code}' "${admin[@]}" -d @"$work/$1.json" "$url/v1/admin/licenses"
}
lease() {  # licence instance -> "status id"
  curl -s "${admin[@]}" -d "{\"license_id\":\"$1\",\"instance\":\"$2\"}" -w ' %{http_code}' \
    "$url/v1/leases" | python3 -c 'import json,sys; b,c=sys.stdin.read().rsplit(" ",1); print(c, json.loads(b).get("id",""))'
}
echo "install lic_a (2 seats): $(issue lic_a 2)"
read -r s1 l1 < <(lease lic_a one)
read -r s2 l2 < <(lease lic_a two)
echo "leases on lic_a: $s1 $s2"
echo "install lic_b (2 seats): $(issue lic_b 2)"
h1=$(curl -s -o /dev/null -w '%{http_code}' "${admin[@]}" -X POST "$url/v1/leases/$l1/heartbeat")
h2=$(curl -s -o /dev/null -w '%{http_code}' "${admin[@]}" -X POST "$url/v1/leases/$l2/heartbeat")
echo "heartbeats on lic_a's leases: $h1 $h2"
read -r n1 _ < <(lease lic_b one)
read -r n2 _ < <(lease lic_b two)
read -r n3 _ < <(lease lic_b three)
live_a=$(curl -s "${admin[@]}" "$url/v1/leases?license_id=lic_a" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
live_b=$(curl -s "${admin[@]}" "$url/v1/leases?license_id=lic_b" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
echo "leases on lic_b: $n1 $n2 $n3; live seats: lic_a $live_a, lic_b $live_b"
