#!/usr/bin/env bash
# The GPU check: one command that builds pagedllm with CUDA (in its own build directory), runs `pagedllm info
# --devices`, the CUDA tests, greedy `run` and `batch` on the GPU against the CPU, and the GPU benchmarks (batch-1
# decode of a synthetic Llama-3-8B-shaped F16 model with its share of the HBM roofline; flash prefill attention at
# 4k beside the naive attention in the same run), then writes REPORT_DIR/report.md and the logs beside it.
#
#   scripts/gpu-check.sh [REPORT_DIR]        (default: ./gpu-report)
#
# Fetches nothing (the GPU machines are offline). Models: ../shared/models/stories260K.gguf or
# ./shared/models/stories260K.gguf, and models/SmolLM2-135M-Instruct.Q4_1.gguf when present (tests that need a
# missing file say so and skip). Build dependencies the machine lacks (fmt, CLI11, doctest, nlohmann-json, PCRE2,
# libedit, pkg-config) are taken from .gpu-deps/*.deb when that folder exists (scripts/gpu-deps.sh fills it on a
# machine with network access), unpacked under the build directory, never into /.
#
# Environment: PAGEDLLM_GPU_BUILD_DIR (default build-gpu-check), PAGEDLLM_BENCH_MODEL (a synthetic preset for the
# decode benchmark, default llama-3-8b), PAGEDLLM_GPU_CHECK_SKIP_BENCH=1 to skip the benchmarks.
# Budget: under 8 minutes on an H100 (build ~3 min on 16 cores, tests ~2, benchmarks ~2).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORT_DIR=${1:-./gpu-report}
mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
BUILD=${PAGEDLLM_GPU_BUILD_DIR:-$ROOT/build-gpu-check}
JOBS=$(nproc 2>/dev/null || echo 4)
REPORT=$REPORT_DIR/report.md
START=$(date +%s)
FAILURES=()

elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[gpu-check $(elapsed)s] $*" | tee -a "$REPORT_DIR/gpu-check.log"; }
# run_step NAME TIMEOUT_SECONDS COMMAND...: logs to REPORT_DIR/NAME.log, records a failure, never aborts.
run_step() {
  local name=$1 limit=$2
  shift 2
  note "$name: $*"
  local begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$REPORT_DIR/$name.log" 2>&1
  local status=$?
  local took=$(( $(date +%s) - begin ))
  echo "$name $status $took" >>"$REPORT_DIR/steps.txt"
  if [ $status -ne 0 ]; then
    FAILURES+=("$name (exit $status$([ $status -eq 124 ] && echo ', timed out'))")
    note "$name FAILED (exit $status) after ${took}s; see $name.log"
  else
    note "$name ok (${took}s)"
  fi
  return $status
}

: >"$REPORT_DIR/steps.txt"
: >"$REPORT_DIR/gpu-check.log"
rm -f "$REPORT_DIR/bench.txt"

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l | tr -d ' ') changed files"
  echo "host: $(uname -srm), $JOBS cores"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "nvidia-smi: not available"
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not on PATH"
  cmake --version | head -1
  command -v ninja >/dev/null && echo "ninja $(ninja --version)" || echo "ninja: not found"
} >"$REPORT_DIR/environment.log" 2>&1
note "environment: $(head -c 2000 "$REPORT_DIR/environment.log" | tr '\n' ' ' | cut -c1-300)"

# nvcc lives in /usr/local/cuda/bin on the CUDA images; CMake finds it there too, this is for the log above.
export PATH=$PATH:/usr/local/cuda/bin

# One architecture (the device's own) builds twice as fast as the default 80;90.
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
[ -n "$ARCH" ] || ARCH="80;90"

# ---------------------------------------------------------------- dependencies from .gpu-deps (optional)
CMAKE_EXTRA=()
if compgen -G "$ROOT/.gpu-deps/*.deb" >/dev/null; then
  DEPS=$BUILD/deps
  rm -rf "$DEPS"
  mkdir -p "$DEPS"
  for deb in "$ROOT"/.gpu-deps/*.deb; do dpkg -x "$deb" "$DEPS"; done
  # The .pc files say prefix=/usr; point them at the unpacked tree.
  find "$DEPS" -name '*.pc' -exec sed -i "s|^prefix=/usr|prefix=$DEPS/usr|" {} +
  export PKG_CONFIG_PATH=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEPS/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  CMAKE_EXTRA+=("-DCMAKE_PREFIX_PATH=$DEPS/usr")
  if ! command -v pkg-config >/dev/null && [ -x "$DEPS/usr/bin/pkgconf" ]; then
    CMAKE_EXTRA+=("-DPKG_CONFIG_EXECUTABLE=$DEPS/usr/bin/pkgconf")
  fi
  note "dependencies unpacked from .gpu-deps into $DEPS"
fi

# The shared test models: ../shared beside the checkout, or shared/ inside it (what a device machine receives).
SHARED=""
for candidate in "$ROOT/../shared" "$ROOT/shared"; do
  if [ -f "$candidate/models/stories260K.gguf" ]; then SHARED=$(cd "$candidate" && pwd); break; fi
done
[ -n "$SHARED" ] && CMAKE_EXTRA+=("-DPAGEDLLM_SHARED_DIR=$SHARED") || note "stories260K.gguf not found: its tests will skip"
SMOLLM=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$SMOLLM" ] || note "$SMOLLM not found: its test will skip"

# ---------------------------------------------------------------- build
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
TARGETS=(pagedllm test_cuda_ops test_cuda_plan test_cuda_mma_layout test_cuda_bench)
if run_step configure 300 cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DPAGEDLLM_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "${CMAKE_EXTRA[@]}" &&
   run_step build 420 cmake --build "$BUILD" --parallel "$JOBS" --target "${TARGETS[@]}"; then
  BUILT=1
else
  BUILT=0
fi

# ---------------------------------------------------------------- tests and checks
if [ $BUILT -eq 1 ]; then
  run_step devices 60 "$BUILD/pagedllm" info --devices
  run_step test_cuda_plan 120 "$BUILD/test_cuda_plan"
  run_step test_cuda_mma_layout 120 "$BUILD/test_cuda_mma_layout"
  run_step test_cuda_ops 420 "$BUILD/test_cuda_ops"

  if [ -n "$SHARED" ]; then
    STORIES=$SHARED/models/stories260K.gguf
    # Greedy text on both devices must be the same (stdout holds only the text with --stats none).
    run_step run_cpu 60 "$BUILD/pagedllm" run -m "$STORIES" -p "Once upon a time" -n 48 --temp 0 --device cpu --stats none
    run_step run_cuda 60 "$BUILD/pagedllm" run -m "$STORIES" -p "Once upon a time" -n 48 --temp 0 --device cuda --stats none
    run_step run_cuda_stats 60 "$BUILD/pagedllm" run -m "$STORIES" -p "Once upon a time" -n 48 --temp 0 --device cuda --stats text
    # `batch` on the GPU: the same requests' texts as on the CPU.
    printf 'Once upon a time\nThe little dog\nLily and Ben went to the park\nOne day, a big bird\n' >"$REPORT_DIR/batch-prompts.txt"
    run_step batch_cpu 120 "$BUILD/pagedllm" batch -m "$STORIES" -i "$REPORT_DIR/batch-prompts.txt" --format text \
      -o "$REPORT_DIR/batch-cpu.jsonl" -n 32 --temp 0 --device cpu --progress off
    run_step batch_cuda 120 "$BUILD/pagedllm" batch -m "$STORIES" -i "$REPORT_DIR/batch-prompts.txt" --format text \
      -o "$REPORT_DIR/batch-cuda.jsonl" -n 32 --temp 0 --device cuda --progress off
  fi

  if [ "${PAGEDLLM_GPU_CHECK_SKIP_BENCH:-0}" != 1 ]; then
    export PAGEDLLM_BENCH_OUT=$REPORT_DIR/bench.txt
    run_step bench 300 "$BUILD/test_cuda_bench" --no-skip
  fi
fi

# ---------------------------------------------------------------- report
same_output() {  # the generated text of two `run --stats none` logs
  [ -s "$REPORT_DIR/$1.log" ] && [ -s "$REPORT_DIR/$2.log" ] || { echo "not run"; return; }
  if cmp -s "$REPORT_DIR/$1.log" "$REPORT_DIR/$2.log"; then
    echo "identical"
  else
    echo "DIFFERENT (see $1.log and $2.log)"
  fi
}
same_batch() {
  [ -f "$REPORT_DIR/batch-cpu.jsonl" ] && [ -f "$REPORT_DIR/batch-cuda.jsonl" ] || { echo "not run"; return; }
  python3 - "$REPORT_DIR/batch-cpu.jsonl" "$REPORT_DIR/batch-cuda.jsonl" <<'EOF' 2>&1
import json, sys
def texts(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        out[str(r.get("id"))] = r.get("text", r.get("output", r.get("completion", json.dumps(r.get("samples", "")))))
    return out
a, b = texts(sys.argv[1]), texts(sys.argv[2])
print("identical" if a == b and a else f"DIFFERENT: {sum(a.get(k) != b.get(k) for k in a)} of {len(a)} requests differ")
EOF
}
summary_line() { [ -f "$REPORT_DIR/$1.log" ] && grep -E '^\[doctest\] (test cases|assertions)' "$REPORT_DIR/$1.log" | tr '\n' ' ' || echo "not run"; }

{
  echo "# pagedllm GPU check"
  echo
  echo '```'
  cat "$REPORT_DIR/environment.log"
  echo '```'
  echo
  echo "Total time: $(elapsed) s. Build directory: $BUILD (CUDA architectures: $ARCH)."
  echo
  echo "## Steps"
  echo
  echo "| step | exit | seconds |"
  echo "| --- | --- | --- |"
  while read -r name status took; do echo "| $name | $status | $took |"; done <"$REPORT_DIR/steps.txt"
  echo
  echo "## Tests"
  echo
  for t in test_cuda_plan test_cuda_mma_layout test_cuda_ops; do echo "- $t: $(summary_line $t)"; done
  if [ -f "$REPORT_DIR/test_cuda_ops.log" ]; then
    skipped=$(grep -c 'skipped:' "$REPORT_DIR/test_cuda_ops.log")
    echo "- test cases that printed a skip message: $skipped"
    grep 'skipped:' "$REPORT_DIR/test_cuda_ops.log" | sort | uniq -c | sed 's/^/  - /'
  fi
  echo "- greedy \`run\` text, CPU vs CUDA: $(same_output run_cpu run_cuda)"
  echo "- \`batch\` texts, CPU vs CUDA: $(same_batch)"
  echo
  if [ -f "$REPORT_DIR/run_cuda_stats.log" ]; then
    echo
    echo "\`run --device cuda --stats text\` on stories260K:"
    echo
    echo '```'
    cat "$REPORT_DIR/run_cuda_stats.log"
    echo '```'
  fi
  echo
  echo "## Devices"
  echo
  echo '```'
  [ -f "$REPORT_DIR/devices.log" ] && cat "$REPORT_DIR/devices.log"
  echo '```'
  echo
  echo "## Benchmarks"
  echo
  if [ -f "$REPORT_DIR/bench.txt" ]; then
    echo '```'
    cat "$REPORT_DIR/bench.txt"
    echo '```'
  else
    echo "not run"
  fi
  echo
  if [ ${#FAILURES[@]} -eq 0 ]; then
    echo "Result: every step passed."
  else
    echo "Result: FAILED steps:"
    for f in "${FAILURES[@]}"; do echo "- $f"; done
  fi
  echo
  echo "Logs: $(cd "$REPORT_DIR" && ls *.log | tr '\n' ' ')"
} >"$REPORT"

note "report written to $REPORT"
cat "$REPORT"
[ ${#FAILURES[@]} -eq 0 ]
