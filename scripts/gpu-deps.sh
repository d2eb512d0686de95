#!/usr/bin/env bash
# Run where the package mirror can be reached: downloads the Debian packages that scripts/gpu-check.sh unpacks on
# an offline GPU machine whose image lacks pagedllm's build dependencies (fmt, CLI11, doctest, nlohmann-json,
# PCRE2, libedit, pkg-config), into .gpu-deps/ (a few MB, ignored by git through .git/info/exclude). Give the
# folder to the GPU machine with the tree (device tool: carry [".gpu-deps"]).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$ROOT/.gpu-deps"
EXCLUDE=$(git -C "$ROOT" rev-parse --git-path info/exclude)
case "$EXCLUDE" in /*) ;; *) EXCLUDE=$ROOT/$EXCLUDE ;; esac
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.gpu-deps/' "$EXCLUDE" 2>/dev/null || echo '/.gpu-deps/' >>"$EXCLUDE"
cd "$ROOT/.gpu-deps"
apt-get download libfmt-dev libfmt9 libcli11-dev doctest-dev nlohmann-json3-dev libpcre2-dev libpcre2-8-0 \
  libedit-dev libedit2 libbsd0 libmd0 pkgconf-bin libpkgconf3
du -sh "$ROOT/.gpu-deps"
