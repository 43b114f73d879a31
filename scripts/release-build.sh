#!/usr/bin/env bash
# The production build (`make release`, docs/operations.md "Building for production"), also
# used by every benchmark: `swift build -c release` with Swift's run-time exclusivity checks
# off in the whole program (`-enforce-exclusivity=unchecked`, SwiftNIO included). Debug
# builds and the test suite keep the checks. Arguments go on to `swift build`
# (e.g. `--product plane`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
exec swift build -c release -Xswiftc -enforce-exclusivity=unchecked "$@"
