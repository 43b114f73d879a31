#!/usr/bin/env bash
# Runs `swift test` (arguments passed through) and keeps its output in .build/test-output.log.
# When a test fails, the failures and the issues they recorded are printed once more at the
# very end, so a CI log that only keeps its tail still says which test failed and why.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
LOG=.build/test-output.log
mkdir -p .build

# Drones the tests start on Docker create the default isolated network (plane-backends);
# the run removes it again when it was not there before (its containers are gone by then).
SOCKET=/var/run/docker.sock
network_exists() { [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCKET" http://docker/networks/plane-backends 2>/dev/null)" = 200 ]; }
had_network=0
network_exists && had_network=1

# At most this many test cases run at once (Swift Testing starts every one at once by
# default: on a 2-core machine hundreds of suites then start processes and containers in
# the same seconds, and tests timed in seconds starved; CI saw several fail that way).
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${TEST_PARALLEL_WIDTH:-8}"
swift test "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
if [ "$had_network" = 0 ] && network_exists; then
  curl -s -o /dev/null -X DELETE --unix-socket "$SOCKET" http://docker/networks/plane-backends || true
  network_exists && echo "run-tests: the plane-backends network could not be removed (containers left on it?)"
fi
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
