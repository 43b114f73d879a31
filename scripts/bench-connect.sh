#!/usr/bin/env bash
# Benchmarks connect-by-key end to end (issue 15): the time from `POST /ctrl/connect` with a
# new key to the first 200 through the drone's proxy (the request is sent at once and held
# until the backend is Ready), RUNS times for each of: a Docker drone, an OCI drone (crun),
# each with its default (isolated) network, all on this machine with nats-server and one
# controller. In the same run, the OCI runtime's own start (`RuntimeBench oci crun ...
# isolated`, start call to the first 200) for the ratio. Writes the "Connect to first 200"
# section of docs/benchmarks.md. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
RUNS=${RUNS:-100}

bash scripts/bootstrap.sh
bash scripts/docker-daemon.sh start
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash scripts/docker-daemon.sh stop
  rm -rf "$work"
}
trap cleanup EXIT
echo "bench: building (release) and packaging plane-test-server"
bash scripts/release-build.sh --product RuntimeBench >/dev/null
bash scripts/release-build.sh --product plane >/dev/null
swift package --allow-writing-to-package-directory build-image --product plane-test-server --tag bench >/dev/null
docker load -i .build/plane-images/plane-test-server/plane-test-server.tar >/dev/null
PLANE=$(pwd)/.build/release/plane
LAYOUT=$(pwd)/.build/plane-images/plane-test-server/oci

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: nothing on port $1" >&2; exit 1; }

nats=$(free_port); api=$(free_port); docker_proxy=$(free_port); oci_proxy=$(free_port); oci_metrics=$(free_port)
token="bench-$(python3 -c 'import uuid; print(uuid.uuid4())')"
nats-server -a 127.0.0.1 -p "$nats" -js -sd "$work/jetstream" >"$work/nats.log" 2>&1 & pids+=($!)
wait_port "$nats"
cat > "$work/controller.toml" <<TOML
[nats]
hosts = ["nats://127.0.0.1:$nats"]
[scheduler]
[http]
bind_ip = "127.0.0.1"
port = $api
cluster = "plane.test"
token = "$token"
[http.services.docker]
image = "plane-test-server:bench"
runtime_class = "docker"
[http.services.oci]
image = "oci-layout:$LAYOUT:bench"
runtime_class = "oci"
[http.services.warm]
image = "oci-layout:$LAYOUT:bench"
runtime_class = "oci"
warm_pool = 2
TOML
drone_config() { # name runtime proxy-port ports extra
  cat > "$work/$1.toml" <<TOML
cluster_domain = "plane.test"
drone_id = "bench-$1"
state_dir = "$work/$1-state"
[nats]
hosts = ["nats://127.0.0.1:$nats"]
[agent]
ip = "127.0.0.1"
port_range = "$4"
runtime = "$2"
runtime_classes = ["$1"]
stop_grace_secs = 1
$5
[proxy]
bind_ip = "127.0.0.1"
https_port = $3
TOML
}
drone_config docker docker "$docker_proxy" "26000-26999" ""
drone_config oci oci "$oci_proxy" "27000-27999" "[agent.oci]
runtime = \"crun\"
[metrics]
bind_ip = \"127.0.0.1\"
port = $oci_metrics"
"$PLANE" controller "$work/controller.toml" >"$work/controller.log" 2>&1 & pids+=($!)
"$PLANE" drone "$work/docker.toml" >"$work/docker.log" 2>&1 & pids+=($!)
"$PLANE" drone "$work/oci.toml" >"$work/oci.log" 2>&1 & pids+=($!)
for port in $api $docker_proxy $oci_proxy; do wait_port "$port"; done
# Both drones are candidates once their heartbeats arrived.
for _ in $(seq 100); do
  listed=$("$PLANE" list-drones --json --wait 1 --nats "nats://127.0.0.1:$nats" 2>/dev/null || true)
  if grep -q bench-docker <<<"$listed" && grep -q bench-oci <<<"$listed"; then break; fi
done

results="$work/results.jsonl"
for service in oci docker warm; do
  port=$([ "$service" = docker ] && echo "$docker_proxy" || echo "$oci_proxy")
  warm=()
  [ "$service" = warm ] && warm=(--warm-metrics "http://127.0.0.1:$oci_metrics/metrics" --warm-size 2)
  echo "bench: connect to first 200, $service ($RUNS runs)"
  python3 scripts/bench_connect_client.py --api-port "$api" --token "$token" --service "$service" --proxy-port "$port" --runs "$RUNS" "${warm[@]}" >> "$results" || {
    echo "bench: $service failed; the logs:" >&2; tail -n 20 "$work/controller.log" "$work/oci.log" "$work/docker.log" >&2; exit 1; }
done
hits=$(curl -s "http://127.0.0.1:$oci_metrics/metrics" | awk -F' ' '/^plane_warm_pool_hits_total\{pool="warm"\}/ {print $2}')
echo "bench: the OCI runtime's own start, crun, isolated (20 runs)"
.build/release/RuntimeBench oci crun "oci-layout:$LAYOUT:bench" "$PLANE" 20 isolated >> "$results"

python3 - "$results" "$RUNS" "${hits:-0}" <<'PY'
import datetime, json, os, platform, re, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = sys.argv[2]
hits = sys.argv[3]
connect = {r["service"]: r for r in rows if "service" in r}
oci_start = statistics.median(next(r["samples_ms"] for r in rows if r.get("runtime") == "oci-crun-isolated"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
ratio = connect["oci"]["p50_ms"] / oci_start
verdict = "met" if ratio <= 1.5 else "not met"
warm = connect["warm"]
warm_verdict = "met" if warm["p50_ms"] <= 20 else "not met"
section = f"""<!-- bench-connect:start -->
## Connect to first 200

`make bench-connect` (`scripts/bench-connect.sh`), {datetime.date.today().isoformat()}, {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}:
nats-server, one controller and two drones (Docker; OCI with crun), each backend in its
drone's default isolated network, all on this machine. A client calls `POST /ctrl/connect`
with a new key for a service and at once sends `GET /` through the drone's proxy with the
connect's token (held by the proxy until the backend is `Ready`); the time from the connect
call to the 200, over {runs} connects each (after 3 not counted), each backend terminated
before the next connect. `plane-test-server` image, already on the drone.

| Path | p50 | p99 |
|---|---|---|
| cold, Docker drone | {connect['docker']['p50_ms']:.1f} ms | {connect['docker']['p99_ms']:.1f} ms |
| cold, OCI drone (crun) | {connect['oci']['p50_ms']:.1f} ms | {connect['oci']['p99_ms']:.1f} ms |
| the OCI runtime's own start (crun, isolated; `RuntimeBench`, median of 20) | {oci_start:.1f} ms | |
| warm pool (OCI drone, `warm_pool = 2`, each connect once the pool is full again) | {warm['p50_ms']:.1f} ms | {warm['p99_ms']:.1f} ms |

Warm pool p50: **{warm['p50_ms']:.1f} ms** (goal ≤ 20 ms: {warm_verdict}); the drone counted
{hits} pool hits for the {int(runs) + 3} warm connects. Cold OCI / the OCI runtime's own start, p50: **{ratio:.2f}x** (goal ≤ 1.5x: {verdict}). The
rest is the path around the start: the HTTP API and the lock, scheduling over NATS, the
drone's spawn (its store, the image check), the readiness probe (every 25 ms) and the held
request's release; with a warm pool the start and most of the probe's wait are gone.
<!-- bench-connect:end -->
"""
path = "docs/benchmarks.md"
text = open(path).read()
pattern = re.compile(r"<!-- bench-connect:start -->.*?<!-- bench-connect:end -->\n", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
print(section)
PY
echo "bench: docs/benchmarks.md updated"
