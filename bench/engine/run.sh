#!/usr/bin/env bash
# The engine on CPU beside PyTorch (Debian python3-torch), same model, batch, context and
# threads, in one run: training tokens/s (forward, loss, backward, AdamW) and batch-1 greedy
# decode tokens/s with a KV cache, for GPT-2 d=256/4 layers/context 256 and GPT-2 124M
# (context 1024). Also the engine's share of time in GEMM, its GEMM GFLOP/s and the SGEMM peak
# measured in the same run.
#   bench/engine/run.sh [threads, $(nproc)] [rounds, 2]
# Needs a build (build/default) and python3-torch (apt-get install python3-torch).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-$(nproc)}"
rounds="${2:-2}"
bench=build/default/bench/engine_bench
peer="/usr/bin/python3 bench/engine/torch_peer.py"
out=$(mktemp /tmp/mh-bench-engine.XXXXXX)
trap 'rm -f "$out"' EXIT

small="--layers 4 --hidden 256 --heads 4 --context 256 --vocab 50257 --batch 4 --train-steps 5"
big="--layers 12 --hidden 768 --heads 12 --context 1024 --vocab 50257 --batch 1 --train-steps 2"
for round in $(seq "$rounds"); do
  for config in small big; do
    args="${!config} --threads $threads --decode-tokens 64"
    # Alternate which goes first, so neither always runs on a warmer machine.
    if [ $((round % 2)) -eq 1 ]; then order="ours peer"; else order="peer ours"; fi
    for who in $order; do
      if [ "$who" = ours ]; then line=$($bench $args); else line=$($peer $args); fi
      echo "$config $line" | tee -a "$out"
    done
  done
done

/usr/bin/python3 - "$out" <<'PY'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    config, js = line.split(" ", 1)
    r = json.loads(js)
    rows.setdefault((config, r["impl"].split()[0]), []).append(r)
def med(rs, key):
    return statistics.median(r[key] for r in rs)
print()
print(f"{'model':<22}{'impl':<11}{'train tok/s':>12}{'decode tok/s':>14}{'GEMM share':>12}{'GEMM GF/s':>11}{'SGEMM peak':>12}")
for config, name in [("small", "GPT-2 d256 L4 ctx256"), ("big", "GPT-2 124M ctx1024")]:
    ours, peer = rows[(config, "macrohard")], rows[(config, "pytorch")]
    for impl, rs in [("macrohard", ours), ("pytorch", peer)]:
        extra = (f"{med(rs, 'gemm_share'):>12.0%}{med(rs, 'gemm_gflops'):>11.0f}"
                 f"{med(rs, 'sgemm_peak_gflops'):>12.0f}") if impl == "macrohard" else ""
        print(f"{name:<22}{impl:<11}{med(rs, 'train_tokens_per_s'):>12.1f}"
              f"{med(rs, 'decode_tokens_per_s'):>14.1f}{extra}")
    print(f"{'':<22}{'ratio':<11}{med(ours, 'train_tokens_per_s') / med(peer, 'train_tokens_per_s'):>11.2f}x"
          f"{med(ours, 'decode_tokens_per_s') / med(peer, 'decode_tokens_per_s'):>13.2f}x")
PY
