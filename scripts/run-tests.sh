#!/usr/bin/env bash
# Runs `swift test` (arguments passed through) and keeps its output in .build/test-output.log.
# When a test fails, the failures and the issues they recorded are printed once more at the
# very end, so a CI log that only keeps its tail still says which test failed and why.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
LOG=.build/test-output.log
mkdir -p .build

swift test "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo
  echo "=== run-tests: swift test failed (exit $status); the failures, from $LOG ==="
  # Swift Testing marks a failure with ✘ and prints the issue's details on indented lines
  # after it; XCTest prints "error:" lines.
  awk '/✘/ { print; keep = 1; next }
       keep && /^[[:space:]]/ { print; next }
       { keep = 0 }
       /: error: / { print }' "$LOG" | tail -n 200
fi
exit "$status"
