#!/usr/bin/env python3
"""Connect by key: ask a Plane controller for the process of a key, wait until it is
ready, talk to it, and (optionally) stop it. Standard library only.

    python3 connect.py --api http://127.0.0.1:9090 --token "$PLANE_API_TOKEN" \
        --key doc-42 --service editor [--user ada] [--proxy 127.0.0.1:8443] [--terminate]

--proxy sends the requests to the backend as plain HTTP to that address with the backend's
host name in `Host` (as on a test machine without DNS or certificates); without it, the
backend's https:// URL is used. Prints one JSON object per step. docs/client-guide.md
explains each call; CI runs this file (ClientGuideTests).
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def call(method, url, token=None, body=None, headers=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_ready(status_url, timeout):
    """Follows the backend's state as Server-Sent Events until Ready (or an end)."""
    deadline = time.monotonic() + timeout
    last_id = None
    while time.monotonic() < deadline:
        request = urllib.request.Request(status_url + "/stream")
        if last_id:
            request.add_header("Last-Event-ID", last_id)  # resume where the last stream stopped
        try:
            with urllib.request.urlopen(request, timeout=max(1, deadline - time.monotonic())) as stream:
                for raw in stream:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("data: "):
                        state = json.loads(line[6:])["state"]
                        print(json.dumps({"step": "state", "state": state}), flush=True)
                        if state == "Ready":
                            return state
                        if state not in ("Loading", "Starting"):
                            return state
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            time.sleep(0.2)  # the stream broke: reconnect with Last-Event-ID
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--user")
    parser.add_argument("--proxy")
    parser.add_argument("--terminate", action="store_true")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    body = {"key": args.key, "spawn_config": {"service": args.service}}
    if args.user:
        body["user"] = args.user
    status, text = call("POST", args.api + "/ctrl/connect", args.token, body)
    if status != 200:
        print(json.dumps({"step": "connect", "status": status, "error": text}))
        return 1
    backend = json.loads(text)
    print(json.dumps({"step": "connect", "backend_id": backend["backend_id"], "spawned": backend["spawned"], "url": backend["url"]}), flush=True)

    if wait_until_ready(backend["status_url"], args.timeout) != "Ready":
        return 1

    host = backend["url"].split("://", 1)[1]
    url, headers = (("http://" + args.proxy + "/", {"Host": host}) if args.proxy else (backend["url"] + "/", {}))
    status, text = call("GET", url, backend["token"], headers=headers)
    print(json.dumps({"step": "request", "status": status, "body": text}), flush=True)
    status_without, _ = call("GET", url, None, headers=headers)
    print(json.dumps({"step": "request_without_token", "status": status_without}), flush=True)

    if args.terminate:
        status, text = call("DELETE", args.api + "/ctrl/backend/" + backend["backend_id"], args.token)
        print(json.dumps({"step": "terminate", "status": status}), flush=True)
        print(json.dumps({"step": "state", "state": wait_until_ended(backend["status_url"], args.timeout)}), flush=True)
    return 0


def wait_until_ended(status_url, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, text = call("GET", status_url)
        if status == 200 and json.loads(text)["state"] not in ("Loading", "Starting", "Ready"):
            return json.loads(text)["state"]
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    sys.exit(main())
