"""Connect-to-first-200 client for scripts/bench-connect.sh.

For each of --runs new keys: POST /ctrl/connect for --service, then at once GET / through
the drone's proxy with the connect's token (the proxy holds it until the backend is Ready),
retrying only on a refused connection; the time from the connect call to the 200. The
backend is then terminated (hard) before the next run, not timed. Prints one JSON line:
{"service", "samples_ms", "p50_ms", "p99_ms"}.
"""
import argparse
import http.client
import json
import statistics
import sys
import time
import uuid


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--cluster", default="plane.test")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--warm-metrics", help="the drone's /metrics URL: before each connect, wait until its warm pool is full")
    parser.add_argument("--warm-size", type=int, default=1)
    args = parser.parse_args()
    api = http.client.HTTPConnection("127.0.0.1", args.api_port, timeout=60)
    auth = {"Authorization": f"Bearer {args.token}"}

    def connect(key):
        body = json.dumps({"key": key, "spawn_config": {"service": args.service}})
        api.request("POST", "/ctrl/connect", body=body, headers={**auth, "Content-Type": "application/json"})
        response = api.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"connect: {response.status} {text[:300]!r}")
        return json.loads(text)

    def first_200(backend, token):
        while True:
            proxy = http.client.HTTPConnection("127.0.0.1", args.proxy_port, timeout=60)
            try:
                proxy.request("GET", "/", headers={"Host": f"{backend}.{args.cluster}", "Authorization": f"Bearer {token}"})
                response = proxy.getresponse()
                body = response.read()
                if response.status == 200:
                    return
                raise RuntimeError(f"GET through the proxy: {response.status} {body[:300]!r}")
            finally:
                proxy.close()

    def terminate(backend):
        api.request("DELETE", f"/ctrl/backend/{backend}?hard=true", headers=auth)
        api.getresponse().read()

    def warm_backends():
        import urllib.request
        text = urllib.request.urlopen(args.warm_metrics, timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith('plane_warm_pool_backends{pool="%s"}' % args.service):
                return int(line.split()[-1])
        return 0

    def wait_for_pool():
        deadline = time.monotonic() + 60
        while warm_backends() < args.warm_size:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm pool did not fill within 60 s")
            time.sleep(0.02)

    samples = []
    for index in range(args.warmup + args.runs):
        if args.warm_metrics:
            wait_for_pool()
        started = time.perf_counter()
        reply = connect(f"bench-{uuid.uuid4()}")
        first_200(reply["backend_id"], reply["token"])
        elapsed = (time.perf_counter() - started) * 1000
        if index >= args.warmup:
            samples.append(elapsed)
        terminate(reply["backend_id"])
    print(json.dumps({"service": args.service, "samples_ms": samples, "p50_ms": statistics.median(samples),
                      "p99_ms": percentile(samples, 0.99)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
