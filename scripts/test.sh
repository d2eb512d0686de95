#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite, printing the failures.
#
#   scripts/test.sh              everything CI runs: the suite on the normal build (build/), the suite again under
#                                AddressSanitizer + UBSan (build-sanitize/), and a short run of each fuzz target
#                                (PAGEDLLM_CI_FUZZ_SECONDS each, default 5)
#   scripts/test.sh --quick      the suite on the normal build only
#   scripts/test.sh --sanitize   the suite on the sanitizer build only
#   scripts/test.sh --fuzz [S]   the libFuzzer targets (GGUF reader, Jinja interpreter, batch request lines), S seconds
#                                each (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
fuzz_seconds=60
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=normal ;;
    --sanitize) mode=sanitize ;;
    --fuzz) mode=fuzz; if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then fuzz_seconds="$2"; shift; fi ;;
    *) echo "test.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

suite() {  # $1: build folder
  (cd "$1" && ctest --output-on-failure -j "$(nproc)" --timeout 900)
}

case "$mode" in
  fuzz) exec scripts/fuzz.sh "$fuzz_seconds" ;;
  normal) scripts/setup.sh; suite build ;;
  sanitize) scripts/setup.sh --sanitize; suite build-sanitize ;;
  all)
    scripts/setup.sh
    suite build
    echo "test.sh: the suite again, under AddressSanitizer + UBSan"
    scripts/setup.sh --sanitize
    suite build-sanitize
    echo "test.sh: a short run of each fuzz target"
    scripts/fuzz.sh "${PAGEDLLM_CI_FUZZ_SECONDS:-5}"
    ;;
esac
