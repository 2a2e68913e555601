#!/usr/bin/env bash
# License checking speed beside OpenSSL's own Ed25519 verify rate, in one run.
#   bench/licensing/run.sh [seconds per measurement, 3] [rounds, 3]
# Alternates `openssl speed ed25519` and our bench each round; reports medians and the median
# of the per-round ratios. Needs a build (cmake --build --preset default).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-3}"
rounds="${2:-3}"
bench=build/default/bench/licensing_bench
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for _ in $(seq "$rounds"); do
  # The verify/s column of openssl's Ed25519 line: "253 bits EdDSA (Ed25519) sign/s verify/s"
  openssl_verify=$(openssl speed -seconds "$seconds" ed25519 2>/dev/null |
                   awk '/Ed25519\)/ && $NF ~ /^[0-9.]+$/ {print $NF}' | tail -1)
  ours=$("$bench" "$seconds")
  echo "openssl $openssl_verify" >>"$out"
  echo "$ours" | awk '{print $1, $2}' >>"$out"
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
pick() { awk -v n="$1" '$1 == n {print $2}' "$out"; }
ratio=$(paste <(pick signature) <(pick openssl) | awk '{printf "%.3f\n", $1 / $2}' | median)

echo
echo "Licensing, $rounds rounds of ${seconds}s, $(nproc) cores ($(uname -m)), $(openssl version | cut -d' ' -f1-2), $(date -u +%F)"
printf '%-34s %14s %s\n' measure median unit
printf '%-34s %14.0f %s\n' "openssl speed ed25519 verify" "$(pick openssl | median)" "verify/s"
printf '%-34s %14.0f %s\n' "licensing::verify_signature" "$(pick signature | median)" "verify/s"
printf '%-34s %14.2f %s\n' "  ratio to openssl (median)" "$ratio" "x"
printf '%-34s %14.0f %s\n' "verify_license (whole file)" "$(pick license | median)" "verify/s"
printf '%-34s %14.1f %s\n' "Entitlements::check (cached)" "$(pick entitlement | median)" "ns"
