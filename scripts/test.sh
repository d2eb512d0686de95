#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite, printing the failures.
#
#   scripts/test.sh              the suite on the normal build
#   scripts/test.sh --sanitize   the suite on an AddressSanitizer + UBSan build (build-sanitize/)
#   scripts/test.sh --fuzz [S]   the libFuzzer targets (GGUF reader, Jinja interpreter, batch request lines), S seconds
#                                each (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=normal
fuzz_seconds=60
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) mode=sanitize ;;
    --fuzz) mode=fuzz; if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then fuzz_seconds="$2"; shift; fi ;;
    *) echo "test.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

case "$mode" in
  fuzz) exec scripts/fuzz.sh "$fuzz_seconds" ;;
  sanitize) scripts/setup.sh --sanitize; build_dir=build-sanitize ;;
  *) scripts/setup.sh; build_dir=build ;;
esac

cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 900
