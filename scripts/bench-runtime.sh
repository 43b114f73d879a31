#!/usr/bin/env bash
# Benchmarks the Docker runtime: time from start to the first HTTP 200 of plane-test-server,
# against the same done by hand (docker run + a curl loop); median of 20 each. Writes the
# "Runtime start" section of docs/benchmarks.md. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
RUNS=${RUNS:-20}

bash scripts/bootstrap.sh
bash scripts/docker-daemon.sh start
trap 'bash scripts/docker-daemon.sh stop' EXIT
echo "bench: building (release) and packaging plane-test-server"
swift build -c release --product RuntimeBench >/dev/null
swift package --allow-writing-to-package-directory build-image --product plane-test-server --tag bench >/dev/null
docker load -i .build/plane-images/plane-test-server/plane-test-server.tar >/dev/null
IMAGE=plane-test-server:bench

ours=$(.build/release/RuntimeBench "$IMAGE" "$RUNS")
echo "$ours"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
manual=()
for i in $(seq 0 "$RUNS"); do
  port=$(free_port)
  start=$(date +%s%N)
  docker run -d --rm --network host -e PORT="$port" --name "bench-manual-$i" "$IMAGE" >/dev/null
  until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.002; done
  end=$(date +%s%N)
  docker stop -t 2 "bench-manual-$i" >/dev/null
  [ "$i" -gt 0 ] && manual+=("$(( (end - start) / 1000 ))")
done

python3 - "$ours" "${manual[@]}" <<'PY'
import json, os, re, statistics, sys, datetime, platform
ours = json.loads(sys.argv[1])["samples_ms"]
manual = [int(x) / 1000 for x in sys.argv[2:]]
mo, mm = statistics.median(ours), statistics.median(manual)
section = f"""<!-- bench-runtime:start -->
## Runtime start: Docker

Measured by `make bench-runtime` (`scripts/bench-runtime.sh`) on {os.cpu_count()} cores, {platform.system()} {platform.release()}, {datetime.date.today().isoformat()}.
Time from the start call to the first HTTP 200 of `plane-test-server` (host networking, image already loaded), median of {len(ours)} runs after one warm-up:

| Path | Median (ms) | Min (ms) | Max (ms) |
|---|---:|---:|---:|
| `DockerRuntime.start` + HTTP probe | {mo:.1f} | {min(ours):.1f} | {max(ours):.1f} |
| `docker run -d` + curl loop (by hand) | {mm:.1f} | {min(manual):.1f} | {max(manual):.1f} |

Overhead of our path: {(mo - mm) / mm * 100:+.1f} % (goal: under +10 %). The hand-made path also pays for
starting the `docker` CLI and a `curl` process per probe, which the in-process path avoids.
<!-- bench-runtime:end -->
"""
path = "docs/benchmarks.md"
doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
if "<!-- bench-runtime:start -->" in doc:
    doc = re.sub(r"<!-- bench-runtime:start -->.*?<!-- bench-runtime:end -->\n", section, doc, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
print(section)
PY
