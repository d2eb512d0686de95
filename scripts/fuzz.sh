#!/usr/bin/env bash
# Fuzzes the GGUF reader (tests/fuzz/fuzz_gguf.cpp) with libFuzzer under AddressSanitizer + UBSan.
#
#   scripts/fuzz.sh [SECONDS]      (default 60)
#
# Builds with clang into build-fuzz/ (override with PAGEDLLM_FUZZ_BUILD_DIR), seeds a corpus with writer-made
# synthetic files, ../shared/models/stories260K.gguf and the tokenizer-test vocab files, runs for SECONDS and
# prints "N executions, M crashes". Exits non-zero when the fuzzer found a crash (the input is kept under
# build-fuzz/fuzz-artifacts/ to reproduce: build-fuzz/fuzz_gguf FILE).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: $0 [SECONDS]  (a positive whole number of seconds)" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PAGEDLLM_FUZZ_BUILD_DIR:-$root/build-fuzz}"
shared="${PAGEDLLM_SHARED_DIR:-$root/../shared}"

# ---------------------------------------------------------------- tools: clang and libFuzzer (only when missing)
missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v clang++ >/dev/null 2>&1 || missing+=(clang)
clang_major="$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)"
if [ -z "$clang_major" ] || ! dpkg -s "libclang-rt-${clang_major}-dev" >/dev/null 2>&1; then
  # Debian's clang 14 ships libFuzzer and the sanitizer runtimes in libclang-rt-14-dev.
  missing+=("libclang-rt-${clang_major:-14}-dev")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# ---------------------------------------------------------------- build
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
# -fsanitize=fuzzer-no-link gives the core library the coverage instrumentation libFuzzer steers by.
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPAGEDLLM_FUZZ=ON -DPAGEDLLM_CUDA=OFF -DPAGEDLLM_SANITIZE=address,undefined -DPAGEDLLM_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" --target fuzz_gguf -j "$(nproc)"
fuzzer="$build/fuzz_gguf"

# ---------------------------------------------------------------- seeds
seeds="$build/fuzz-seeds"
corpus="$build/fuzz-corpus"       # grows across runs: what the fuzzer learned is kept
artifacts="$build/fuzz-artifacts"
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"
PAGEDLLM_FUZZ_WRITE_SEEDS="$seeds" "$fuzzer"
for f in "$shared/models/stories260K.gguf" "$shared"/tokenizer-tests/*.gguf; do
  [ -f "$f" ] && cp "$f" "$seeds/"
done
max_len=0
for f in "$seeds"/*; do
  size=$(stat -c %s "$f")
  [ "$size" -gt "$max_len" ] && max_len=$size
done
echo "seeds: $(ls "$seeds" | wc -l) files in $seeds, largest $max_len bytes"

# ---------------------------------------------------------------- run
log="$build/fuzz.log"
before=$(ls "$artifacts" | wc -l)
set +e
ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" UBSAN_OPTIONS="print_stacktrace=1" \
  "$fuzzer" "$corpus" "$seeds" \
  -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
status=$?
set -e
after=$(ls "$artifacts" | wc -l)
crashes=$((after - before))
executions=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
tail -n 25 "$log"
echo
echo "fuzz_gguf: ${executions:-0} executions, $crashes crashes in ${seconds} s (log: $log)"
if [ "$crashes" -ne 0 ]; then
  echo "reproduce with: $fuzzer $artifacts/<file>" >&2
  exit 1
fi
