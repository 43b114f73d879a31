#!/usr/bin/env bash
# Two ProxyBench builds side by side (docs/benchmarks.md): both under load at once, each
# with its own plane-test-server backend and `wrk -t1 -c32`, ROUNDS rounds of DURATION s,
# the two wrk started in alternating order. Prints per round the requests/s of each, their
# ratio, and the CPU per request of each proxy process. On a shared 2-core machine this
# separates two builds better than rounds one after the other, since both see the same noise.
#   BASE_PROXY=/path/to/old/ProxyBench NEW_PROXY=.build/release/ProxyBench bash scripts/bench-proxy-side-by-side.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
BASE_PROXY=${BASE_PROXY:?the ProxyBench to compare against}
NEW_PROXY=${NEW_PROXY:-$BIN/ProxyBench}
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-5}
for program in wrk "$BIN/plane-test-server" "$BASE_PROXY" "$NEW_PROXY"; do
  command -v "$program" >/dev/null 2>&1 || { echo "side-by-side: $program is missing (make bench-proxy builds and installs them)" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_a=$(free_port); backend_b=$(free_port); port_base=$(free_port); port_new=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
PORT=$backend_a HOST=127.0.0.1 "$BIN/plane-test-server" >/dev/null & pids+=($!)
PORT=$backend_b HOST=127.0.0.1 "$BIN/plane-test-server" >/dev/null & pids+=($!)
"$BASE_PROXY" "$port_base" "127.0.0.1:$backend_a" >/dev/null & pids+=($!); base_pid=$!
"$NEW_PROXY" "$port_new" "127.0.0.1:$backend_b" >/dev/null & pids+=($!); new_pid=$!
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then first=$port_base; second=$port_new; else first=$port_new; second=$port_base; fi
  base_before=$(ticks "$base_pid"); new_before=$(ticks "$new_pid")
  wrk -t1 -c32 -d"${DURATION}s" -H "Host: foobar.plane.test" "http://127.0.0.1:$first/" > "$work/first" 2>&1 &
  first_pid=$!
  wrk -t1 -c32 -d"${DURATION}s" -H "Host: foobar.plane.test" "http://127.0.0.1:$second/" > "$work/second" 2>&1
  wait "$first_pid"
  base_ticks=$(( $(ticks "$base_pid") - base_before )); new_ticks=$(( $(ticks "$new_pid") - new_before ))
  if [ "$first" = "$port_base" ]; then base_rps=$(rps "$work/first"); new_rps=$(rps "$work/second"); else base_rps=$(rps "$work/second"); new_rps=$(rps "$work/first"); fi
  python3 - "$round" "$base_rps" "$new_rps" "$base_ticks" "$new_ticks" "$DURATION" "$(getconf CLK_TCK)" <<'PY'
import sys
round_, base, new, base_ticks, new_ticks, duration, hz = sys.argv[1], *map(float, sys.argv[2:])
cpu = lambda ticks, rps: ticks / hz * 1e6 / (rps * duration)
print(f"round {round_}: base {base:.0f} new {new:.0f} new/base {new / base:.3f}  CPU per request: base {cpu(base_ticks, base):.1f} µs, new {cpu(new_ticks, new):.1f} µs")
PY
done
