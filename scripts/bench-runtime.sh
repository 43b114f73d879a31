#!/usr/bin/env bash
# Benchmarks backend start: time from the start call to the first HTTP 200 of
# plane-test-server with a warm image, for the OCI runtime with runc and with crun, the
# Docker runtime, and a hand-made `runc run -d` of a prepared bundle (median of RUNS each, in
# one run); then the drone's memory per idle backend with IDLE_BACKENDS idle backends.
# Writes the "Runtime start" section of docs/benchmarks.md. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
RUNS=${RUNS:-20}
IDLE_BACKENDS=${IDLE_BACKENDS:-200}
IDLE_RUNTIMES=${IDLE_RUNTIMES:-oci-runc docker}

bash scripts/bootstrap.sh
bash scripts/docker-daemon.sh start
work=$(mktemp -d)
cleanup() { bash scripts/docker-daemon.sh stop; rm -rf "$work"; }
trap cleanup EXIT
echo "bench: building (release) and packaging plane-test-server"
bash scripts/release-build.sh --product RuntimeBench >/dev/null
bash scripts/release-build.sh --product plane >/dev/null
swift package --allow-writing-to-package-directory build-image --product plane-test-server --tag bench >/dev/null
docker load -i .build/plane-images/plane-test-server/plane-test-server.tar >/dev/null
BENCH=.build/release/RuntimeBench
PLANE=$(pwd)/.build/release/plane
LAYOUT=$(pwd)/.build/plane-images/plane-test-server/oci
RUNC=$(command -v runc)

# The hand-made bundle: the image's layers unpacked into rootfs/, config.json from `runc spec`
# with the image's command and environment, host networking, no terminal.
mkdir -p "$work/bundle/rootfs"
(cd "$work/bundle" && "$RUNC" spec)
python3 - "$LAYOUT" "$work/bundle" <<'PY'
import json, subprocess, sys
layout, bundle = sys.argv[1], sys.argv[2]
blob = lambda digest: f"{layout}/blobs/sha256/{digest.split(':')[1]}"
index = json.load(open(f"{layout}/index.json"))
manifest = json.load(open(blob(next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "bench")["digest"])))
image = json.load(open(blob(manifest["config"]["digest"])))["config"]
for layer in manifest["layers"]:
    subprocess.run(["tar", "-xf", blob(layer["digest"]), "-C", f"{bundle}/rootfs"], check=True)
spec = json.load(open(f"{bundle}/config.json"))
spec["process"]["terminal"] = False
spec["process"]["args"] = (image.get("Entrypoint") or []) + (image.get("Cmd") or [])
spec["process"]["env"] = image.get("Env") or []
spec["process"]["cwd"] = image.get("WorkingDir") or "/"
spec["root"]["readonly"] = False
spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
json.dump(spec, open(f"{bundle}/config.json", "w"))
PY

# The same by hand with the config.json the OCI runtime writes (Docker's capabilities, the
# seccomp profile, masked paths, cgroup limits), so the difference is the runtime's own work.
mkdir -p "$work/bundle-sandboxed"
"$BENCH" oci-config "oci-layout:$LAYOUT:bench" "$PLANE" "$work/bundle-sandboxed/config.json" >/dev/null
python3 - "$work/bundle-sandboxed/config.json" "$work/bundle/rootfs" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["root"] = {"path": sys.argv[2], "readonly": False}
json.dump(spec, open(sys.argv[1], "w"))
PY

results="$work/results"
: > "$results"
# The same sandbox without its seccomp filter: what compiling and loading the profile costs.
mkdir -p "$work/bundle-unconfined"
python3 - "$work/bundle-sandboxed/config.json" "$work/bundle-unconfined/config.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
del spec["linux"]["seccomp"]
json.dump(spec, open(sys.argv[2], "w"))
PY

for path in bundle bundle-sandboxed bundle-unconfined oci-runc oci-crun docker oci-crun-isolated docker-isolated; do
  echo "bench: start latency, $path ($RUNS runs)"
  case "$path" in
    bundle) "$BENCH" bundle "$RUNC" "$work/bundle" "$RUNS" >> "$results" ;;
    bundle-sandboxed) "$BENCH" bundle "$RUNC" "$work/bundle-sandboxed" "$RUNS" | sed 's/"runc-by-hand"/"runc-by-hand-sandboxed"/' >> "$results" ;;
    bundle-unconfined) "$BENCH" bundle "$RUNC" "$work/bundle-unconfined" "$RUNS" | sed 's/"runc-by-hand"/"runc-by-hand-unconfined"/' >> "$results" ;;
    oci-runc) "$BENCH" oci runc "oci-layout:$LAYOUT:bench" "$PLANE" "$RUNS" >> "$results" ;;
    oci-crun) "$BENCH" oci crun "oci-layout:$LAYOUT:bench" "$PLANE" "$RUNS" >> "$results" ;;
    docker) "$BENCH" docker plane-test-server:bench "$RUNS" host >> "$results" ;;
    oci-crun-isolated) "$BENCH" oci crun "oci-layout:$LAYOUT:bench" "$PLANE" "$RUNS" isolated >> "$results" ;;
    docker-isolated) "$BENCH" docker plane-test-server:bench "$RUNS" isolated >> "$results" ;;
  esac
done
for runtime in $IDLE_RUNTIMES; do
  echo "bench: drone memory with $IDLE_BACKENDS idle backends, $runtime"
  image="oci-layout:$LAYOUT:bench"
  [ "$runtime" = docker ] && image=plane-test-server:bench
  "$BENCH" idle-memory "$PLANE" "$runtime" "$image" "$IDLE_BACKENDS" >> "$results"
done

python3 - "$results" <<'PY'
import json, os, re, statistics, sys, datetime, platform
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
start = {r["runtime"]: r["samples_ms"] for r in rows if "samples_ms" in r}
memory = [r for r in rows if "drone_kib_per_backend" in r]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
med = {k: statistics.median(v) for k, v in start.items()}
names = {
    "runc-by-hand": "hand-made `runc run -d` of a prepared bundle (`runc spec` defaults)",
    "runc-by-hand-sandboxed": "hand-made `runc run -d`, the OCI runtime's `config.json`",
    "runc-by-hand-unconfined": "hand-made `runc run -d`, the OCI runtime's `config.json` without `linux.seccomp`",
    "oci-runc": "`OCIRuntime.start`, runc",
    "oci-crun": "`OCIRuntime.start`, crun (the default where installed; private mount namespace, hybrid cgroups)",
    "docker": "`DockerRuntime.start`",
    "oci-crun-isolated": "`OCIRuntime.start`, crun, a network namespace per backend (the default network)",
    "docker-isolated": "`DockerRuntime.start`, the drone's bridge network (the default network)",
}
table = "\n".join(f"| {names[k]} | {med[k]:.1f} | {min(v):.1f} | {max(v):.1f} | {med[k] / med['runc-by-hand']:.2f}x | {med[k] / med['runc-by-hand-sandboxed']:.2f}x |"
                  for k, v in start.items())
def verdict(ok): return "met" if ok else "**not met**"
best_oci = min(med["oci-runc"], med["oci-crun"])
hand, sandboxed = med['runc-by-hand'], med['runc-by-hand-sandboxed']
goals = (f"- OCI runtime vs hand-made `runc run` (goal: within 1.3x): against the `runc spec` bundle runc {med['oci-runc'] / hand:.2f}x "
         f"({verdict(med['oci-runc'] <= 1.3 * hand)}), crun {med['oci-crun'] / hand:.2f}x ({verdict(med['oci-crun'] <= 1.3 * hand)}); "
         f"against the same sandbox by hand runc {med['oci-runc'] / sandboxed:.2f}x ({verdict(med['oci-runc'] <= 1.3 * sandboxed)}), "
         f"crun {med['oci-crun'] / sandboxed:.2f}x ({verdict(med['oci-crun'] <= 1.3 * sandboxed)}).\n"
         f"- Docker runtime vs OCI runtime: {med['docker'] / med['oci-runc']:.2f}x (runc), {med['docker'] / med['oci-crun']:.2f}x (crun) slower "
         f"(goal: the OCI runtime at least 2x faster): runc {verdict(med['docker'] >= 2 * med['oci-runc'])}, crun {verdict(med['docker'] >= 2 * med['oci-crun'])}.\n"
         f"- The OCI runtime as configured by default (`[agent.oci] runtime = \"auto\"`: crun where it is installed, as here) is the crun row: "
         f"{med['oci-crun'] / hand:.2f}x the hand-made `runc spec` bundle ({verdict(med['oci-crun'] <= 1.3 * hand)}) and "
         f"{med['docker'] / med['oci-crun']:.2f}x faster than Docker ({verdict(med['docker'] >= 2 * med['oci-crun'])}).")
mem_rows = "\n".join(
    f"| {m['runtime']} | {m['backends']} | {m['drone_idle_rss_kib'] / 1024:.1f} | {m['drone_loaded_rss_kib'] / 1024:.1f} | "
    f"{m['drone_kib_per_backend']:.0f} | " + (f"{m['shim_pss_kib_mean']:.0f} ({m['shims']} shims)" if m["shims"] else "— (containerd's shim, not ours)") +
    f" | {m['start_all_seconds']:.0f} |" for m in memory)
section = f"""<!-- bench-runtime:start -->
## Runtime start

Measured by `make bench-runtime` (`scripts/bench-runtime.sh`) on {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, {datetime.date.today().isoformat()}, all in one run.
Time from the start call to the first HTTP 200 of `plane-test-server` (host networking unless the row says otherwise, image already pulled/unpacked or loaded), probed by the same in-process loop for every path at the address the runtime returns; median of {len(start['oci-runc'])} runs after one warm-up:

| Path | Median (ms) | Min (ms) | Max (ms) | vs `runc spec` by hand | vs same sandbox by hand |
|---|---:|---:|---:|---:|---:|
{table}

{goals}
- Isolated networking (the default since issue 12) against host networking, start to first 200:
  OCI with crun {med['oci-crun-isolated']:.1f} against {med['oci-crun']:.1f} ms ({med['oci-crun-isolated'] / med['oci-crun']:.2f}x: the namespace, the veth
  link and its addresses, made with three `ip` runs), Docker {med['docker-isolated']:.1f} against {med['docker']:.1f} ms
  ({med['docker-isolated'] / med['docker']:.2f}x: dockerd's endpoint on the bridge).

The OCI runtime's path does more than the hand-made ones: it resolves the image, mounts a
fresh overlay root and writes `config.json` per backend, and hands the start to a
`plane oci-shim` process (a standby one, loaded ahead of need) that runs `run --detach` (crun: `create` then `start`,
in a private mount namespace the shim enters itself on this hybrid-cgroup host) with the
container's output in pipes it keeps reading, and reports the container's pid.
The `runc spec` bundle has no seccomp filter, `runc spec`'s smaller capability set and no
cgroup limits; the "same sandbox" bundle is the `config.json` the OCI runtime wrote, so its
row is the price of the sandbox itself. Most of that price is the seccomp filter (the row
without `linux.seccomp`: {med['runc-by-hand-sandboxed'] - med['runc-by-hand-unconfined']:.1f} ms less): runc compiles the
profile (about 350 rules for three ABIs) with libseccomp in every start and offers no way
to hand it a compiled filter. crun does (`run.oci.seccomp_bpf_data`): the OCI runtime
compiles the profile once when it starts and gives crun the program, so a crun start
carries no compilation. Docker pays the same compilation in runc on every start. This is
why the default `[agent.oci] runtime` is `auto`, which takes crun where it is installed;
a drone set to runc pays the compilation on every start.

### Drone memory per idle backend

A real `plane drone` (`make release` build) on a real nats-server, sent spawn requests until the
number of backends below are all `Ready`; resident memory of the drone process before the
first spawn and 10 s after the last backend became ready. With the oci runtime every backend
also has its own `plane oci-shim` process; its proportional set size (shared pages of the
plane executable divided among the processes that map them) is listed separately.

| Runtime | Backends | Drone RSS idle (MiB) | Drone RSS loaded (MiB) | Drone KiB per backend | Shim PSS per backend (KiB) | Time to start all (s) |
|---|---:|---:|---:|---:|---:|---:|
{mem_rows}
<!-- bench-runtime:end -->
"""
path = "docs/benchmarks.md"
doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
if "<!-- bench-runtime:start -->" in doc:
    doc = re.sub(r"<!-- bench-runtime:start -->.*?<!-- bench-runtime:end -->\n", lambda _: section, doc, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
print(section)
PY
