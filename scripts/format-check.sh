#!/usr/bin/env bash
# Fails when a C file of ours differs from .clang-format. With --fix, rewrites them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -- '*.c' '*.h' 2>/dev/null || find src include sim tests bench -name '*.[ch]')
[ ${#files[@]} -eq 0 ] && exit 0
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
else
  clang-format --dry-run -Werror "${files[@]}"
  echo "format-check: ${#files[@]} files match .clang-format"
fi
