#!/usr/bin/env bash
# The CUDA engine on a GPU machine that has CUDA, CMake, ninja and PyTorch but none of the
# platform's Debian packages: builds platform/engine on its own, runs the GPU tests (every op
# against the CPU backend, AdamW, a tiny model's training and decoding, NCCL), then times the
# engine's pieces and models beside PyTorch and transformers on the same device, in the same
# run, and prints a table last. Logs and JSON lines go to $OUT (or /tmp/mh-gpu).
#   bench/gpu/run.sh [check|bench|platform|all]
#     check: the engine's GPU tests; bench: timings; platform: the platform's GPU integration
#     tests; all (default): check, platform and bench.
#     The binaries come from the bundle `prepare` made here (.device/platform.tar.xz), which
#     saves the device minutes of a build; without one, or with MH_BUILD=1, or when a bundled
#     binary does not start there, platform/engine is built on its own (the platform tests
#     need the bundle; that build needs PCRE2's and utf8proc's headers, which the bundle's
#     binaries carry the libraries of).
#     MH_SANITIZE=1 runs the test cases under compute-sanitizer.
# On this workplace's machine without a GPU, `bench/gpu/run.sh prepare` first copies the doctest
# header into .device/ (git-ignored) so that the GPU machine can build the tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-all}"
out="${OUT:-/tmp/mh-gpu}"
mkdir -p "$out"
# What need not come back (a case's log, the saved models) stays out of $out, which a caller
# may copy back with a cap on its files.
scratch=$(mktemp -d /tmp/mh-gpu-scratch.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
build=build-gpu

# The platform's GPU integration tests need the whole platform, whose libraries the GPU machine
# does not have: `prepare` bundles the binaries of this machine's build (build/default) with
# every library they load, glibc and its loader included, into .device/platform.tar.xz, their
# interpreter and RPATH pointing at /tmp/mh-platform, where `platform` unpacks them; the CUDA
# libraries (and the driver's) are the GPU machine's own, linked in there.
bundle_root=/tmp/mh-platform
platform_bins=(platform/main/macrohardd platform/worker/mh-worker platform/mhctl/mhctl
  tests/integration_gpu_tests tests/engine_gpu_tests bench/gpu_bench)

if [ "$mode" = prepare ]; then
  mkdir -p .device/include/doctest
  cp /usr/include/doctest/doctest.h .device/include/doctest/
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
  echo "bench/gpu/run.sh: .device/include/doctest/doctest.h ready; carry .device"
  bdir=build/default
  if [ ! -x "$bdir/tests/integration_gpu_tests" ] || ! command -v patchelf >/dev/null; then
    echo "bench/gpu/run.sh: no platform bundle (needs scripts/test's build and patchelf)"
    exit 0
  fi
  stage=$(mktemp -d)
  mkdir -p "$stage/mh-platform/bin" "$stage/mh-platform/lib"
  : >"$stage/mh-platform/paths"
  for b in "${platform_bins[@]}"; do
    name=$(basename "$b")
    strip -o "$stage/mh-platform/bin/$name" "$bdir/$b"
    # Where the tests expect it (the paths compiled into integration_gpu_tests).
    echo "$name $PWD/$bdir/$b" >>"$stage/mh-platform/paths"
    ldd "$bdir/$b" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' |
      grep -v -E 'libcuda|libcudart|libcublas|libnccl' | while read -r lib; do
        cp -L "$lib" "$stage/mh-platform/lib/"
      done
  done
  for f in "$stage"/mh-platform/bin/*; do
    patchelf --set-interpreter "$bundle_root/lib/$(basename /lib64/ld-linux-x86-64.so.2)" \
      --force-rpath --set-rpath "$bundle_root/lib" "$f"
  done
  tar -C "$stage" -cJf .device/platform.tar.xz mh-platform
  rm -rf "$stage"
  echo "bench/gpu/run.sh: .device/platform.tar.xz ($(du -h .device/platform.tar.xz | cut -f1))"
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

# Each test case of a doctest binary in a process of its own, so that a kernel that faults (and
# takes its CUDA context with it) fails its own case only: a line per case, the failures'
# checks after it, every case's output in the log.
# MH_SANITIZE=1: every case under compute-sanitizer's memcheck (slow; out-of-bounds and
# misaligned accesses named by kernel and line).
sanitizer=()
[ "${MH_SANITIZE:-0}" = 1 ] && sanitizer=(compute-sanitizer --tool memcheck --error-exitcode 99)
run_cases() {
  local bin=$1 log=$2 failed=0 c rc started verdict
  local -a cases
  mapfile -t cases < <("$bin" --list-test-cases | sed -n '/^=\+$/,/^=\+$/p' | grep -v '^=')
  : >"$log"
  for c in "${cases[@]}"; do
    started=$(date +%s)
    # doctest's filters split at commas; '?' matches the comma.
    timeout 300 "${sanitizer[@]}" "$bin" --test-case="${c//,/?}" >"$scratch/case.log" 2>&1
    rc=$?
    cat "$scratch/case.log" >>"$log"
    case $rc in
      0) verdict=ok ;;
      77) verdict=skipped; failed=$((failed + 1)) ;;  # no device visible
      *) verdict="FAILED ($rc)"; failed=$((failed + 1)) ;;
    esac
    printf '%-10s %4ss  %s\n' "$verdict" "$(($(date +%s) - started))" "$c"
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || grep -E 'ERROR|CHECK|REQUIRE|error|values off|Assertion|what\(\)' \
      "$scratch/case.log" | head -12 | sed 's/^/    /'
  done
  echo "$(basename "$bin"): $((${#cases[@]} - failed)) of ${#cases[@]} cases passed"
}

# Unpacks the bundle into $bundle_root once, with this machine's CUDA libraries and driver
# linked in where its RPATH looks (the executor starts workers with a clean environment, so
# LD_LIBRARY_PATH would not reach them). Fails when there is no bundle.
unpacked=0
unpack_bundle() {
  [ $unpacked = 1 ] && return 0
  [ -f .device/platform.tar.xz ] || return 1
  step "platform bundle"
  rm -rf "$bundle_root"
  tar -C "$(dirname "$bundle_root")" -xJf .device/platform.tar.xz || return 1
  # The newest glibc symbol version a library asks for, and the bundle's glibc: a library
  # built for a newer glibc than the bundle carries (a distribution's NCCL, say) cannot load
  # beside it, so the CUDA Python wheels' copies (built for old glibc) are tried too.
  glibc_need() { grep -a -o 'GLIBC_2\.[0-9]\+' "$1" | sort -u -V | tail -1; }
  local have wheels
  have=$(glibc_need "$bundle_root/lib/libc.so.6")
  wheels=$($py -c "import nvidia; print(' '.join(nvidia.__path__))" 2>/dev/null)
  for want in libcudart.so.13 libcublasLt.so.13 libcublas.so.13 libnccl.so.2 libcuda.so.1; do
    found=""
    ldp=${LD_LIBRARY_PATH:-}
    for cand in $(for dir in ${ldp//:/ } "$cuda_root"/lib64 "$cuda_root"/lib \
      "$cuda_root"/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
      /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do echo "$dir/$want"; done
      ldconfig -p 2>/dev/null | awk -v w="$want" '$1 == w {print $NF}'
      [ -n "$wheels" ] && find $wheels -name "$want" 2>/dev/null); do
      [ -e "$cand" ] || continue
      if [ "$(printf '%s\n%s\n' "$(glibc_need "$cand")" "$have" | sort -V | tail -1)" = "$have" ]
      then found=$cand; break; fi
      echo "skipped $cand: needs $(glibc_need "$cand"), the bundle has $have"
    done
    if [ -n "$found" ]; then ln -sf "$found" "$bundle_root/lib/$want"; else echo "not found: $want"; fi
  done
  # Where the tests look for the binaries (never over a build that is there).
  while read -r name path; do
    mkdir -p "$(dirname "$path")"
    [ -e "$path" ] || ln -s "$bundle_root/bin/$name" "$path"
  done <"$bundle_root/paths"
  "$bundle_root/bin/macrohardd" --help | head -1
  unpacked=1
}

# The engine's test and bench binaries: the bundle's, if they start here; else built here.
gpu_tests="$build/engine_gpu_tests"
gpu_bench="$build/gpu_bench"
engine_binaries() {
  if [ "${MH_BUILD:-0}" != 1 ] && unpack_bundle; then
    if "$bundle_root/bin/engine_gpu_tests" --list-test-cases >"$scratch/start.log" 2>&1 &&
      "$bundle_root/bin/gpu_bench" --help >>"$scratch/start.log" 2>&1; then
      gpu_tests="$bundle_root/bin/engine_gpu_tests"
      gpu_bench="$bundle_root/bin/gpu_bench"
      echo "engine binaries: the bundle's"
      return 0
    fi
    echo "the bundle's engine binaries did not start here:"
    tail -5 "$scratch/start.log" | sed 's/^/    /'
  fi
  [ -x "$build/gpu_bench" ] && [ "${built:-0}" = 1 ] && return 0
  step "build (platform/engine on its own, sm_90)"
  cmake -S platform/engine -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${doctest[@]}" \
    "${extra[@]}" >"$scratch/configure.log" 2>&1 || { tail -30 "$scratch/configure.log"; return 1; }
  cmake --build "$build" 2>&1 | tee "$out/build.log" | tail -3
  [ -x "$build/gpu_bench" ] || { echo "the build failed"; grep -m20 -B2 -A8 error "$out/build.log"; return 1; }
  [ -x "$build/engine_gpu_tests" ] ||
    echo "no doctest header was carried: the GPU tests were not built (bench/gpu/run.sh prepare)"
  built=1
}

if [ "$mode" = check ] || [ "$mode" = all ]; then
  engine_binaries || exit 1
  if [ -x "$gpu_tests" ]; then
    step "GPU tests"
    run_cases "$gpu_tests" "$out/gpu_tests.log"
    grep -h -o "cuBLASLt GELU: .*" "$out/gpu_tests.log" | head -1
  fi
fi

if [ "$mode" = platform ] || [ "$mode" = all ]; then
  if unpack_bundle; then
    step "platform GPU tests"
    run_cases "$bundle_root/bin/integration_gpu_tests" "$out/platform_gpu_tests.log"
  else
    echo "no .device/platform.tar.xz: prepare it here, carry .device"
    [ "$mode" = platform ] && exit 1
  fi
fi

if [ "$mode" = bench ] || [ "$mode" = all ]; then
  engine_binaries || exit 1
  models="$scratch/models"
  step "ops: ours, then PyTorch's"
  timeout 120 "$gpu_bench" | tee "$out/ours_ops.jsonl"
  PYTHONUNBUFFERED=1 timeout 180 $py bench/gpu/torch_peer.py ops | tee "$out/peer_ops.jsonl"
  step "training GPT-2 124M: PyTorch (torch.compile, bf16), then ours"
  PYTHONUNBUFFERED=1 timeout 300 $py bench/gpu/torch_peer.py train --batch 16 | tee "$out/peer_train.jsonl"
  # One process a configuration: a fault in one leaves the others' figures.
  : >"$out/ours_train.jsonl"
  for m in bf16 bf16-simt fp32 profile; do
    timeout 180 "$gpu_bench" --ops 0 --train-batch 16 --train-mode $m --train-steps 5 |
      grep '"train_' | tee -a "$out/ours_train.jsonl"
  done
  step "decoding: transformers generate, then ours on the same weights"
  PYTHONUNBUFFERED=1 timeout 300 $py bench/gpu/torch_peer.py decode --save "$models" --tokens 64 \
    | tee "$out/peer_decode.jsonl"
  for m in gpt2-124m llama-1b; do
    [ -d "$models/$m" ] && timeout 240 "$gpu_bench" --ops 0 --decode "$models/$m" \
      --decode-tokens 32 | grep '"decode"' | tee -a "$out/ours_decode.jsonl"
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
    if r.get("op") == "train_profile":
        total = sum(r["ms"].values()) or 1
        top = sorted(r["ms"].items(), key=lambda kv: -kv[1])[:14]
        print("  bf16 step by op (share of device time): " +
              ", ".join(f"{k} {v / total:.0%}" for k, v in top))
        continue
    if r.get("op") == "train_phases":
        print(f"  {r['impl']:<16} step phases: forward+backward {r['forward_backward_ms']:.1f} ms, "
              f"reduce {r['reduce_ms']:.1f} ms, AdamW {r['adamw_ms']:.1f} ms")
        continue
    ratio = f"  {r['tokens_per_s'] / peer_rate:.2f}x pytorch" if peer_rate else ""
    print(f"train GPT-2 124M  {r['impl']:<16}{r['tokens_per_s']:>10.0f} tok/s  MFU {r['mfu']:.1%}"
          f"{ratio}")
for r in rows("peer_decode.jsonl") + rows("ours_decode.jsonl"):
    if r.get("op") == "decode":
        dtype = r.get('dtype', 'bf16' if 'bf16' in r['impl'] else 'fp32')
        print(f"decode {os.path.basename(r['model']):<10} batch {r['batch']:>3}  "
              f"{r['impl']:<24}{dtype:<6}{r['tokens_per_s']:>10.1f} tok/s")
PY
  # The figures in one file.
  (cd "$out" && tar -cf figures.tar ./*.jsonl && rm -f ./*.jsonl)
fi
