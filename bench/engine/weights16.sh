#!/usr/bin/env bash
# Batch-1 CPU decode of a Llama-3.2-1B-shaped model (random weights) with fp32 weights and with
# the same weights held in bf16, then in f16, each pair in one process, beside the memory read
# bandwidth measured in that run (a weight-streaming floor for each). About 3 minutes and 6 GB.
#   bench/engine/weights16.sh [threads, $(nproc)] [tokens, 16]
# Needs a build (build/default).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-$(nproc)}"
tokens="${2:-16}"
bench=build/default/bench/weights16_bench
# Llama-3.2-1B: hidden 2048, 16 layers, 32 heads over 8 KV heads, MLP 8192, 128,256 tokens, tied.
shape="--hidden 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256"
for f16 in 0 1; do
  $bench $shape --tokens "$tokens" --threads "$threads" --f16 "$f16"
done
