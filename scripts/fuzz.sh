#!/usr/bin/env bash
# Fuzzes the parsers of outside input with libFuzzer under AddressSanitizer + UBSan, one target after another:
#   gguf      the GGUF reader (tests/fuzz/fuzz_gguf.cpp)
#   jinja     the Jinja interpreter: a chat template and a conversation (tests/fuzz/fuzz_jinja.cpp)
#   requests  the request lines of `pagedllm batch` (tests/fuzz/fuzz_requests.cpp)
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      (default: all three, 60 s each)
#   scripts/fuzz.sh SECONDS                     (all three, SECONDS each)
#
# Builds the sanitizer build (scripts/setup.sh --sanitize: clang, build-sanitize/), seeds each target (GGUF:
# writer-made synthetic files, ../shared/models/stories260K.gguf and the tokenizer-test vocab files; Jinja: the built-in
# templates, tests/golden/templates/*.jinja and ../shared/chat-templates/*.jinja, each with a few conversations;
# requests: lines using every field, and broken ones), runs each for SECONDS and prints "N executions, M crashes"
# per target. Exits non-zero when a fuzzer found a crash (the input is kept under build-sanitize/fuzz-artifacts/TARGET/
# to reproduce: build-sanitize/fuzz_TARGET FILE). What each fuzzer learned stays in build-sanitize/fuzz-corpus/TARGET/.
set -euo pipefail

targets=(gguf jinja requests)
seconds=60
if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
elif [ $# -ge 1 ]; then
  case "$1" in
    all) ;;
    gguf|jinja|requests) targets=("$1") ;;
    *) echo "usage: $0 [gguf|jinja|requests|all] [SECONDS]" >&2; exit 2 ;;
  esac
  shift
  if [ $# -ge 1 ]; then seconds="$1"; shift; fi
fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ] || [ $# -gt 0 ]; then
  echo "usage: $0 [gguf|jinja|requests|all] [SECONDS]  (SECONDS: a positive whole number)" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-sanitize"
shared="${PAGEDLLM_SHARED_DIR:-$root/../shared}"

# ---------------------------------------------------------------- build: the sanitizer build holds the targets
"$root/scripts/setup.sh" --sanitize --no-model >/dev/null

# ---------------------------------------------------------------- seeds, one folder per target
# Writes the seeds of target $1 into $2 and prints the largest seed's size.
write_seeds() {
  local target="$1" dir="$2"
  case "$target" in
    gguf)
      PAGEDLLM_FUZZ_WRITE_SEEDS="$dir" "$build/fuzz_gguf"
      for f in "$shared/models/stories260K.gguf" "$shared"/tokenizer-tests/*.gguf; do
        [ -f "$f" ] && cp "$f" "$dir/"
      done
      ;;
    jinja)
      PAGEDLLM_FUZZ_WRITE_SEEDS="$dir" "$build/fuzz_jinja"
      local conversation='[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}, '
      conversation+='{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]'
      for f in "$root"/tests/golden/templates/*.jinja "$shared"/chat-templates/*.jinja; do
        [ -f "$f" ] || continue
        { cat "$f"; printf '\0%s' "$conversation"; } >"$dir/file_$(basename "$f").seed"
      done
      ;;
    requests)
      local n=0
      while IFS= read -r line; do
        printf '%s\n' "$line" >"$dir/line_$((n += 1)).seed"
      done <<'LINES'
{"id": "a", "prompt": "Once upon a time", "max_tokens": 16}
{"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "n": 2}
{"prompt": "x", "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 42, "stop": ["\n", "END"]}
{"prompt": "x", "repeat_penalty": 1.1, "frequency_penalty": 0.5, "presence_penalty": -0.5, "stop": "."}
{"prompt": "x", "temperature": 1e999, "max_tokens": -1, "n": 1000, "seed": -1, "top_k": 2147483648}
{"prompt": "x", "unknown_field": [1, 2, {"deep": null}], "id": 1.5}
{"prompt": "\ud800 \u00e9 \ud83d\ude00", "messages": []}
{"messages": [{"role": 3}], "stop": ["", "a"]}
[1, 2, 3]
{"prompt": "unterminated
LINES
      ;;
  esac
  local largest=0 size
  for f in "$dir"/*; do
    size=$(stat -c %s "$f")
    [ "$size" -gt "$largest" ] && largest=$size
  done
  echo "$largest"
}

# ---------------------------------------------------------------- run each target
status_all=0
summary=()
for target in "${targets[@]}"; do
  fuzzer="$build/fuzz_$target"
  seeds="$build/fuzz-seeds/$target"
  corpus="$build/fuzz-corpus/$target"       # grows across runs: what the fuzzer learned is kept
  artifacts="$build/fuzz-artifacts/$target"
  rm -rf "$seeds"
  mkdir -p "$seeds" "$corpus" "$artifacts"
  largest=$(write_seeds "$target" "$seeds")
  # Room to grow past the seeds, not so much that inputs get slow.
  max_len=$largest
  [ "$target" != gguf ] && max_len=$((largest * 2 > 4096 ? largest * 2 : 4096))
  echo "fuzz_$target: $(ls "$seeds" | wc -l) seeds in $seeds, largest $largest bytes; running ${seconds} s"
  log="$build/fuzz-$target.log"
  before=$(ls "$artifacts" | wc -l)
  set +e
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" UBSAN_OPTIONS="print_stacktrace=1" \
    "$fuzzer" "$corpus" "$seeds" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  status=$?
  set -e
  after=$(ls "$artifacts" | wc -l)
  crashes=$((after - before))
  executions=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  tail -n 12 "$log"
  line="fuzz_$target: ${executions:-0} executions, $crashes crashes in ${seconds} s (log: $log)"
  echo "$line"
  echo
  summary+=("$line")
  if [ "$crashes" -ne 0 ]; then
    echo "reproduce with: $fuzzer $artifacts/<file>" >&2
    status_all=1
  fi
done
printf '%s\n' "${summary[@]}"
exit "$status_all"
