#!/usr/bin/env bash
# Runs every fuzz target of ocapnet for DURATION each (default 5m), one after
# the other (the machines have 2 cores), logging to fuzz-logs/<package>-<target>.log.
# Crashers are written by go test to the package's testdata/fuzz/<target>/,
# where they become part of the corpus that the default test run executes.
#
#   scripts/fuzz.sh [DURATION]          e.g. scripts/fuzz.sh 30s
#   nohup scripts/fuzz.sh 10m &         in the background
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5m}
mkdir -p fuzz-logs
status=0
for pkg in ./wire ./smallcaps ./kernelwire; do
  for target in $(go test "$pkg" -list '^Fuzz' | grep '^Fuzz'); do
    log="fuzz-logs/$(basename "$pkg")-${target}.log"
    echo "fuzzing $pkg $target for $duration (log: $log)"
    if nice go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" >"$log" 2>&1; then
      tail -n 3 "$log" | grep -E 'elapsed|ok' | tail -n 2
    else
      echo "FAILED: $target (see $log)"; status=1
    fi
  done
done
exit $status
