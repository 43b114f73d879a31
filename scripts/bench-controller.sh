#!/usr/bin/env bash
# Benchmarks the controller: schedule decisions per second with 10 drones answering at
# once, and DNS queries per second with dnsperf against our server and against nsd serving
# the same zone. Writes the "Controller" section of docs/benchmarks.md. With BASELINE=<directory
# holding a ControllerBench built from an earlier commit> (and BASELINE_NAME), its DNS server
# is measured in turns with ours in the same run: a change to the DNS answer path before and
# after. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
RECORDS=${RECORDS:-1000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
BASELINE=${BASELINE:-}
BASELINE_NAME=${BASELINE_NAME:-the baseline}

bash scripts/bootstrap.sh
echo "bench: building ControllerBench (release)"
bash scripts/release-build.sh --product ControllerBench >/dev/null
BENCH=.build/release/ControllerBench
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

schedule=()
plain100=()
fleet=()
for run in 1 2 3; do
  schedule+=("$($BENCH schedule 5000 64 10 2>/dev/null)")
  plain100+=("$($BENCH schedule 5000 64 100 2>/dev/null)")
  fleet+=("$($BENCH schedule 5000 64 100 fleet 2>/dev/null)")
done

# The same names for both servers: RECORDS A records, queried 90 % existing, 10 % missing.
python3 - "$RECORDS" "$work" <<'PY'
import random, sys
records, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/plane.test.zone", "w") as zone:
    zone.write("$ORIGIN plane.test.\n$TTL 60\n@ IN SOA ns.plane.test. admin.plane.test. 1 7200 3600 1209600 5\n@ IN NS ns.plane.test.\n")
    for i in range(records):
        zone.write(f"b{i} IN A 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n")
random.seed(7)
with open(f"{work}/queries", "w") as queries:
    for _ in range(20000):
        if random.random() < 0.9:
            queries.write(f"b{random.randrange(records)}.plane.test A\n")
        else:
            queries.write(f"missing{random.randrange(100000)}.plane.test A\n")
PY

dnsperf_qps() { # port
  dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$SECONDS_PER_RUN" -c 20 -T 2 -q 200 2>/dev/null | awk '/Queries per second/ {print $4}'
}

ours_port=$(free_port)
$BENCH dns "$ours_port" "$RECORDS" > "$work/ours.log" 2>&1 &
pids+=($!); ours_pid=$!
until grep -q ready "$work/ours.log"; do sleep 0.1; done
dig @127.0.0.1 -p "$ours_port" +short b1.plane.test A | grep -q 10.0.0.1
ours_qps=()
base_qps=()
if [ -n "$BASELINE" ]; then
  base_port=$(free_port)
  "$BASELINE/ControllerBench" dns "$base_port" "$RECORDS" > "$work/base.log" 2>&1 &
  pids+=($!); base_pid=$!
  until grep -q ready "$work/base.log"; do sleep 0.1; done
  # In turns, every other run the baseline first, so that neither gains from the order.
  for run in 1 2 3 4; do
    if [ $((run % 2)) -eq 1 ]; then ours_qps+=("$(dnsperf_qps "$ours_port")"); base_qps+=("$(dnsperf_qps "$base_port")")
    else base_qps+=("$(dnsperf_qps "$base_port")"); ours_qps+=("$(dnsperf_qps "$ours_port")"); fi
  done
  kill "$base_pid"; wait "$base_pid" 2>/dev/null || true
else
  for run in 1 2 3; do ours_qps+=("$(dnsperf_qps "$ours_port")"); done
fi
kill "$ours_pid"; wait "$ours_pid" 2>/dev/null || true

nsd_port=$(free_port)
cat > "$work/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1
  port: $nsd_port
  server-count: 2
  username: ""
  chroot: ""
  zonesdir: "$work"
  database: ""
  zonelistfile: "$work/zone.list"
  xfrdfile: "$work/xfrd.state"
  xfrdir: "$work"
  pidfile: "$work/nsd.pid"
  logfile: "$work/nsd.log"
  hide-version: yes
  verbosity: 0
  # nsd rate-limits responses per client by default (RRL), which throttles a benchmark
  # sending everything from 127.0.0.1; we measure raw throughput.
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: plane.test
  zonefile: plane.test.zone
CONF
nsd -d -c "$work/nsd.conf" &
pids+=($!)
until dig @127.0.0.1 -p "$nsd_port" +short +time=1 +tries=1 b1.plane.test A 2>/dev/null | grep -q 10.0.0.1; do sleep 0.2; done
nsd_qps=()
for run in 1 2 3; do nsd_qps+=("$(dnsperf_qps "$nsd_port")"); done
nsd_version=$(nsd -v 2>&1 | sed -n 1p)  # sed reads it all: head would end nsd with SIGPIPE

python3 - "$nsd_version" "${schedule[*]}" "${ours_qps[*]}" "${nsd_qps[*]}" "$RECORDS" "${base_qps[*]:-}" "$BASELINE_NAME" "${fleet[*]}" "${plain100[*]}" <<'PY'
import json, os, re, statistics, sys, datetime, platform
nsd_version, schedule, ours, nsd, records = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
base, base_name = [float(x) for x in sys.argv[6].split()], sys.argv[7]
runs = [json.loads(line) for line in re.findall(r"\{[^}]*\}", schedule)]
sched = statistics.median(r["per_second"] for r in runs)
failures = sum(r["failures"] for r in runs)
fleet_runs = [json.loads(line) for line in re.findall(r"\{[^}]*\}", sys.argv[8])]
fleet = statistics.median(r["per_second"] for r in fleet_runs)
fleet_failures = sum(r["failures"] for r in fleet_runs)
plain_runs = [json.loads(line) for line in re.findall(r"\{[^}]*\}", sys.argv[9])]
plain100 = statistics.median(r["per_second"] for r in plain_runs)
fleet_failures += sum(r["failures"] for r in plain_runs)
ours = [float(x) for x in ours]; nsd = [float(x) for x in nsd]
mo, mn = statistics.median(ours), statistics.median(nsd)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
comparison = ""
if base:
    mb = statistics.median(base)
    runs_ours = ", ".join(f"{x:,.0f}" for x in ours)
    runs_base = ", ".join(f"{x:,.0f}" for x in base)
    comparison = (f"\nBefore and after, in turns in the same run (4 runs each): {base_name} answered {mb:,.0f} queries/s, "
                  f"this build {mo:,.0f} (runs: {runs_ours} vs {runs_base}); this build / {base_name}: {mo / mb:.2f}.\n")
section = f"""<!-- bench-controller:start -->
## Controller: scheduling and DNS

Measured by `make bench-controller` (`scripts/bench-controller.sh`) on {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, {datetime.date.today().isoformat()}; median of 3 runs each; everything (nats-server, controller, drones, load generator) on this one machine.

**Schedule decisions per second**: one controller (built by `scripts/release-build.sh`, as `make release` builds `plane`), drones written as test code that answer every spawn `true` at once, 5,000 requests with 64 in flight over NATS. Each decision is a drone choice, one JetStream KV create (the backend id) and a spawn request/reply. In the *mixed fleet* run, 100 drones advertise runtime classes (four, half of the drones also `fast`), capacity and an options schema, and every request asks for a class, a memory limit and a runtime option: the pool, class, options-schema and memory filters run on every decision before the power-of-two choice.

| Measurement | Result |
|---|---:|
| Schedule decisions per second, 10 drones | {sched:,.0f} |
| Schedule decisions per second, 100 drones without classes | {plain100:,.0f} |
| Schedule decisions per second, mixed fleet of 100 drones | {fleet:,.0f} (goal: at least 2,700) |
| Failed requests | {failures + fleet_failures} |

**DNS queries per second** with `dnsperf` (20 clients, 2 threads, {os.environ.get('SECONDS_PER_RUN', '10')} s per run) for A records of `plane.test` ({records} names; 90 % of the queries for existing names, 10 % for missing ones, so NXDOMAIN with SOA is included). Reference: {nsd_version}, `server-count: 2`, response rate limiting off (`rrl-ratelimit: 0`; it throttles one client to 200 answers/s by default), serving a zone file with the same records.

| Server | Queries/s |
|---|---:|
| Plane controller DNS (`PlaneDNS`) | {mo:,.0f} |
| nsd (reference) | {mn:,.0f} |

Ratio: {mo / mn:.2f}x the reference (goal: at least 0.5x). {"Met." if mo / mn >= 0.5 else "NOT met."}
{comparison}<!-- bench-controller:end -->
"""
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- bench-controller:start -->" in doc:
    doc = re.sub(r"<!-- bench-controller:start -->.*?<!-- bench-controller:end -->\n", section, doc, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
print(section)
PY
