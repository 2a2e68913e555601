#!/usr/bin/env bash
# LoRA beside the full fine-tune, in one run, on a llama of ~64M parameters stored in bf16
# (bench/lora/lora_bench.cpp makes it, with a tokenizer learned from fortunes' text):
# - mh-worker train, full and with LoRA (rank 16, all-linear), the same data, batch and steps:
#   peak RSS (GNU time's maximum resident set size) and training tokens/s, each run twice,
#   alternating which goes first; beside them the RSS of mh-worker doing nothing (its libraries);
# - decode tokens/s of 8 greedy sequences through 8 distinct adapters beside the base alone, at
#   ranks 8 (the platform's default) and 16.
#   bench/lora/run.sh [threads, $(nproc)] [steps, 4]
# Needs a build (build/default), GNU time (apt-get install time) and fortunes (scripts/setup).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-$(nproc)}"
steps="${2:-4}"
build=build/default
work=$(mktemp -d /tmp/mh-bench-lora.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat /usr/share/games/fortunes/*[!.dat] 2>/dev/null | head -c 4000000 > "$work/text" || true
[ -s "$work/text" ] || { echo "no fortunes text: run scripts/setup" >&2; exit 1; }
/usr/bin/python3 - "$work/text" "$work/data.jsonl" <<'PY'
import json, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
with open(sys.argv[2], "w") as out:
    for piece in text.split("\n%\n"):
        if piece.strip():
            out.write(json.dumps({"text": piece.strip()}) + "\n")
PY
$build/bench/lora_bench make --text "$work/text" --out "$work/model" --hidden 768 --layers 8 \
  --intermediate 2048 --vocab 8192 >&2

train() {  # $1: full or lora; prints "peak_kib tokens_per_s"
  local extra=()
  [ "$1" = lora ] && extra=(--lora-rank 16)
  rm -rf "$work/out"
  MH_THREADS=$threads /usr/bin/time -f "%M" -o "$work/rss" \
    $build/platform/worker/mh-worker train --model "$work/model" \
      --data "$work/data.jsonl" --out "$work/out" --steps "$steps" --batch-size 4 --seq-len 128 \
      --warmup 0 --log-every 1 --device cpu "${extra[@]}" > "$work/log" 2>&1 \
    || { cat "$work/log" >&2; exit 1; }
  local rate
  rate=$(grep -o '[0-9.]* tokens/s' "$work/log" | tail -1 | cut -d' ' -f1)
  echo "$(cat "$work/rss") $rate"
}

results=()
for round in 1 2; do
  if [ $round -eq 1 ]; then order="full lora"; else order="lora full"; fi
  for kind in $order; do
    line="$kind $(train "$kind")"
    echo "$line" >&2
    results+=("$line")
  done
done
idle=$(/usr/bin/time -f "%M" $build/platform/worker/mh-worker --help 2>&1 >/dev/null | tail -1)
decode8=$($build/bench/lora_bench decode --model "$work/model" --adapters 8 --batch 8 \
            --tokens 32 --rank 8 --threads "$threads")
decode16=$($build/bench/lora_bench decode --model "$work/model" --adapters 8 --batch 8 \
             --tokens 32 --rank 16 --threads "$threads")

/usr/bin/python3 - "$idle" "$decode8" "$decode16" "${results[@]}" <<'PY'
import json, statistics, sys
idle = int(sys.argv[1])
decodes = [json.loads(sys.argv[2]), json.loads(sys.argv[3])]
decode = decodes[0]
runs = {}
for line in sys.argv[4:]:
    kind, rss, rate = line.split()
    runs.setdefault(kind, []).append((int(rss), float(rate)))
def med(kind, i):
    return statistics.median(r[i] for r in runs[kind])
print(f"\nllama, {decode['parameters'] / 1e6:.1f}M parameters stored in bf16, "
      f"{decode['threads']} threads")
print(f"{'training':<10}{'peak RSS MiB':>14}{'tokens/s':>10}")
for kind in ("full", "lora"):
    print(f"{kind:<10}{med(kind, 0) / 1024:>14.0f}{med(kind, 1):>10.0f}")
print(f"{'lora/full':<10}{med('lora', 0) / med('full', 0):>13.0%}"
      f"{med('lora', 1) / med('full', 1):>9.2f}x")
print(f"(mh-worker doing nothing: {idle / 1024:.0f} MiB; less that, lora/full "
      f"{(med('lora', 0) - idle) / (med('full', 0) - idle):.0%})")
for d in decodes:
    print(f"decode, batch {d['batch']}: base {d['base_tokens_per_s']:.0f} tokens/s, "
          f"{d['adapters']} adapters of rank {d['rank']} "
          f"{d['adapters_tokens_per_s']:.0f} tokens/s: {d['ratio']:.2f}x")
PY
