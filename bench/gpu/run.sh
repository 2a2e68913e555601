#!/usr/bin/env bash
# The CUDA engine on a GPU machine that has CUDA, CMake, ninja and PyTorch but none of the
# platform's Debian packages: builds platform/engine on its own, runs the GPU tests (every op
# against the CPU backend, AdamW, a tiny model's training and decoding, NCCL), then times the
# engine's pieces and models beside PyTorch and transformers on the same device, in the same
# run, and prints a table last. Logs and JSON lines go to $OUT (or /tmp/mh-gpu).
#   bench/gpu/run.sh [check|bench|all]     check: build + tests; bench: timings; all (default)
# On this workplace's machine without a GPU, `bench/gpu/run.sh prepare` first copies the doctest
# header into .device/ (git-ignored) so that the GPU machine can build the tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-all}"
out="${OUT:-/tmp/mh-gpu}"
mkdir -p "$out"
build=build-gpu

if [ "$mode" = prepare ]; then
  mkdir -p .device/include/doctest
  cp /usr/include/doctest/doctest.h .device/include/doctest/
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
  echo "bench/gpu/run.sh: .device/include/doctest/doctest.h ready; carry .device"
  exit 0
fi

step() { echo "== $* ($(date +%T))"; }
py=python3

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -1

# cuBLASLt and NCCL: the toolkit's where it has them, else the ones PyTorch's wheels carry.
cuda_root=$(dirname "$(dirname "$(command -v nvcc)")")
extra=()
wheel_dir() { $py -c "import nvidia.$1 as m; print(list(m.__path__)[0])" 2>/dev/null; }
if ! ls "$cuda_root"/lib*/libcublasLt.so* >/dev/null 2>&1; then
  d=$(wheel_dir cublas)
  lib=$(ls "$d"/lib/libcublasLt.so* | head -1)
  extra+=(-DCUDA_cublasLt_LIBRARY="$lib" -DCMAKE_CXX_FLAGS="-I$d/include" -DCMAKE_CUDA_FLAGS="-I$d/include")
  export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
  echo "cuBLASLt from the wheel: $lib"
fi
if ! ls "$cuda_root"/lib*/libnccl.so* >/dev/null 2>&1 && ! ls /usr/lib/*/libnccl.so* >/dev/null 2>&1; then
  d=$(wheel_dir nccl)
  if [ -n "$d" ]; then
    extra+=(-DMH_NCCL_INCLUDE="$d/include" -DMH_NCCL_LIBRARY="$(ls "$d"/lib/libnccl.so* | head -1)")
    export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"
    echo "NCCL from the wheel: $d"
  fi
fi
doctest=()
[ -f .device/include/doctest/doctest.h ] && doctest=(-DMH_DOCTEST_INCLUDE="$PWD/.device/include")

if [ "$mode" = check ] || [ "$mode" = all ]; then
  step "build (platform/engine on its own, sm_90)"
  cmake -S platform/engine -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${doctest[@]}" \
    "${extra[@]}" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  cmake --build "$build" 2>&1 | tee "$out/build.log" | tail -3
  [ -x "$build/gpu_bench" ] || { echo "the build failed"; grep -m20 -B2 -A8 error "$out/build.log"; exit 1; }
  if [ -x "$build/engine_gpu_tests" ]; then
    step "GPU tests"
    timeout 300 "$build/engine_gpu_tests" 2>&1 | tee "$out/gpu_tests.log" | tail -40
  else
    echo "no doctest header was carried: the GPU tests were not built (bench/gpu/run.sh prepare)"
  fi
fi

if [ "$mode" = bench ] || [ "$mode" = all ]; then
  [ -x "$build/gpu_bench" ] || { echo "build first: bench/gpu/run.sh check"; exit 1; }
  models="$out/models"
  step "ops: ours, then PyTorch's"
  timeout 120 "$build/gpu_bench" | tee "$out/ours_ops.jsonl"
  PYTHONUNBUFFERED=1 timeout 180 $py bench/gpu/torch_peer.py ops | tee "$out/peer_ops.jsonl"
  step "training GPT-2 124M: PyTorch (torch.compile, bf16), then ours"
  PYTHONUNBUFFERED=1 timeout 300 $py bench/gpu/torch_peer.py train --batch 16 | tee "$out/peer_train.jsonl"
  timeout 240 "$build/gpu_bench" --ops 0 --train-batch 16 --train-steps 5 \
    | grep '"train_' | tee "$out/ours_train.jsonl"
  step "decoding: transformers generate, then ours on the same weights"
  PYTHONUNBUFFERED=1 timeout 300 $py bench/gpu/torch_peer.py decode --save "$models" --tokens 64 \
    | tee "$out/peer_decode.jsonl"
  for m in gpt2-124m llama-1b; do
    [ -d "$models/$m" ] && timeout 240 "$build/gpu_bench" --decode "$models/$m" --decode-tokens 32 \
      --repeat 1 | grep '"decode"' | tee -a "$out/ours_decode.jsonl"
  done

  step "table"
  $py - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
ours = {r["op"]: r for r in rows("ours_ops.jsonl") if "op" in r}
peer = {r["op"]: r for r in rows("peer_ops.jsonl") if "op" in r}
print(f"{'op':<26}{'ours ms':>10}{'torch ms':>10}{'ours/torch':>12}{'ours TF/s':>11}")
for op, r in ours.items():
    p = peer.get(op)
    print(f"{op:<26}{r['ms']:>10.3f}{(p['ms'] if p else float('nan')):>10.3f}"
          f"{(p['ms'] / r['ms'] if p else float('nan')):>12.2f}{r.get('tflops', 0):>11.1f}")
peer_rate = None
for r in rows("peer_train.jsonl"):
    if r.get("op") == "train_gpt2_124m":
        peer_rate = r["tokens_per_s"]
        print(f"train GPT-2 124M  {'pytorch':<16}{r['tokens_per_s']:>10.0f} tok/s  MFU {r['mfu']:.1%}")
for r in rows("ours_train.jsonl"):
    if r.get("op") == "train_phases":
        print(f"  {r['impl']:<16} step phases: forward+backward {r['forward_backward_ms']:.1f} ms, "
              f"reduce {r['reduce_ms']:.1f} ms, AdamW {r['adamw_ms']:.1f} ms")
        continue
    ratio = f"  {r['tokens_per_s'] / peer_rate:.2f}x pytorch" if peer_rate else ""
    print(f"train GPT-2 124M  {r['impl']:<16}{r['tokens_per_s']:>10.0f} tok/s  MFU {r['mfu']:.1%}"
          f"{ratio}")
for r in rows("peer_decode.jsonl") + rows("ours_decode.jsonl"):
    if r.get("op") == "decode":
        print(f"decode {os.path.basename(r['model']):<10} batch {r['batch']:>3}  "
              f"{r['impl']:<10}{r.get('dtype', 'fp32'):<6}{r['tokens_per_s']:>10.1f} tok/s")
PY
fi
