#!/usr/bin/env bash
# The test command. On a fresh Debian 12 machine it installs what it needs (apt-get, through
# scripts/install-deps.sh), then builds and runs the whole suite twice: a RelWithDebInfo build
# with warnings as errors, and a Debug build under AddressSanitizer + UndefinedBehaviorSanitizer.
# Exits non-zero on any failure.
#
#   scripts/test.sh            everything
#   scripts/test.sh -L unit    only tests with a ctest label (unit, integration, conformance)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
ctest_args=("$@")
status=0
passed=0
failed=0

scripts/format-check.sh || status=1

suite() {
  local dir=$1; shift
  echo "=== $dir: configure and build"
  # explicit checks: errexit does not apply inside a function called as `suite ... || x`
  if ! cmake -S . -B "$dir" -DTG_WERROR=ON "$@" >/dev/null || ! cmake --build "$dir" -j"$jobs"; then
    failed=$((failed + 1))  # a build that fails counts as one failure
    return 1
  fi
  echo "=== $dir: test"
  local rc=0
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$jobs" "${ctest_args[@]}") | tee "$dir/ctest.log" || rc=1
  local line
  line=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$dir/ctest.log" | tail -1)
  if [ -n "$line" ]; then
    local f t
    read -r f _ _ _ _ t <<<"$line"
    failed=$((failed + f))
    passed=$((passed + t - f))
  else
    failed=$((failed + 1))  # ctest did not get as far as a summary
  fi
  return $rc
}

suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo || status=1

# Sanitizer findings abort the process, so they fail the test that caused them; leaks at exit
# make the process exit non-zero, which every integration test checks.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
suite build-asan -DCMAKE_BUILD_TYPE=Debug "-DTG_SANITIZE=address;undefined" || status=1

[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1  # e.g. the format check
echo "scripts/test.sh: both builds, ctest tests:"
echo "$passed passed, $failed failed"
exit $status
