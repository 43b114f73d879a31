#!/usr/bin/env python3
"""A Plane runtime plugin in Python, standard library only (docs/runtime-plugins.md).

Runs each backend as a host process: the spec's "image" is an executable's absolute path.
It keeps its state in memory, so it ends its backends when the drone closes the connection
(a plugin killed outright leaves them running) and holds none after a restart. It has no
sandbox; runtimes/process is the one to run in earnest.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

PROTOCOL_VERSIONS = [1]
NAME = os.environ.get("PLANE_RUNTIME_NAME", "python-process")
MAX_FRAME = 16 << 20


class RuntimeError_(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


class Connection:
    """Framed JSON over the drone's unix socket; writes from many threads."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lock = threading.Lock()

    def send(self, message):
        payload = json.dumps(message).encode()
        with self.lock:
            self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def messages(self):
        buffer = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 4:
                (length,) = struct.unpack(">I", buffer[:4])
                if length > MAX_FRAME:
                    return
                if len(buffer) < 4 + length:
                    break
                try:
                    yield json.loads(buffer[4:4 + length])
                except ValueError:
                    pass  # not JSON: skip the frame
                buffer = buffer[4 + length:]


class Backend:
    def __init__(self, spec, process):
        self.spec, self.process = spec, process
        self.lines = []  # (time_ns, stream, text)
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self.read, args=(process.stdout, "stdout"), daemon=True),
                        threading.Thread(target=self.read, args=(process.stderr, "stderr"), daemon=True)]
        for reader in self.readers:
            reader.start()

    def read(self, pipe, stream):
        for raw in iter(pipe.readline, b""):
            with self.changed:
                self.lines.append((time.time_ns(), stream, raw.decode(errors="replace").rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def address(self):
        return {"host": self.spec["network"]["address"], "port": self.spec["port"]}

    def handle(self):
        return {"backend_id": self.spec["backend_id"], "runtime_id": "pid:%d" % self.process.pid, "address": self.address()}


class Runtime:
    def __init__(self, connection):
        self.connection = connection
        self.backends = {}
        self.lock = threading.Lock()
        self.event_streams = set()
        self.cancelled = set()
        threading.Thread(target=self.watch_exits, daemon=True).start()

    # -- calls ------------------------------------------------------------------------

    def start(self, params):
        spec = params["spec"]
        backend_id = spec["backend_id"]
        if spec["network"]["mode"] != "host":
            raise RuntimeError_("invalid_spec", "python-process supports host networking only")
        if not os.access(spec["image"], os.X_OK):
            raise RuntimeError_("image_unavailable", "the executable %s does not exist here" % spec["image"])
        with self.lock:
            if backend_id in self.backends:
                raise RuntimeError_("already_exists", "backend %s exists already" % backend_id)
            process = subprocess.Popen([spec["image"]], env=spec["env"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
            backend = self.backends[backend_id] = Backend(spec, process)
        return backend.handle()

    def status(self, params):
        backend = self.backends.get(params["backend_id"])
        if backend is None:
            return {"state": "unknown"}
        code = backend.process.poll()
        if code is None:
            return {"state": "running", "address": backend.address()}
        if code < 0:
            return {"state": "killed", "signal": -code, "oom": False}
        return {"state": "exited", "code": code}

    def stop(self, params):
        backend = self.backends.get(params["backend_id"])
        if backend is None or backend.process.poll() is not None:
            return None
        self.signal(backend, signal.SIGTERM)
        try:
            backend.process.wait(params.get("grace_ms", 10000) / 1000)
        except subprocess.TimeoutExpired:
            self.signal(backend, signal.SIGKILL)
            backend.process.wait()
        return None

    def remove(self, params):
        self.stop({"backend_id": params["backend_id"], "grace_ms": 0})
        with self.lock:
            self.backends.pop(params["backend_id"], None)
        return None

    def list(self, params):
        with self.lock:
            return [backend.handle() for backend in self.backends.values()]

    def stats(self, params):
        backend = self.backends.get(params["backend_id"])
        if backend is None or backend.process.poll() is not None:
            raise RuntimeError_("not_found", "backend %s is not running" % params["backend_id"])
        pid = backend.process.pid
        before = self.cpu_ns(pid)
        time.sleep(0.1)
        used = self.cpu_ns(pid) - before
        with open("/proc/%d/statm" % pid) as statm:
            memory = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as meminfo:
            total = int(meminfo.readline().split()[1]) * 1024
        percent = min(100.0, used / 1e9 / 0.1 / os.cpu_count() * 100)
        return {"cpu_percent": percent, "memory_bytes": memory, "memory_limit_bytes": max(total, memory), "time_ns": time.time_ns()}

    def logs(self, call_id, params):
        backend = self.backends.get(params["backend_id"])
        if backend is None:
            raise RuntimeError_("not_found", "backend %s does not exist" % params["backend_id"])
        since, sent = params.get("since_ns"), 0
        while call_id not in self.cancelled:
            with backend.changed:
                pending = backend.lines[sent:]
                sent = len(backend.lines)
                ended = backend.process.poll() is not None and not any(r.is_alive() for r in backend.readers)
                if not pending and params.get("follow") and not ended:
                    backend.changed.wait(0.2)
                    continue
            for (time_ns, stream, text) in pending:
                if since is None or time_ns > since:
                    self.connection.send({"id": call_id, "item": {"stream": stream, "text": text, "time_ns": time_ns}})
            if not params.get("follow") or (ended and not pending):
                break
        self.connection.send({"id": call_id, "end": True})

    def events(self, call_id, params):
        with self.lock:
            self.event_streams.add(call_id)
        return "stream"

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def signal(backend, number):
        try:
            os.killpg(backend.process.pid, number)
        except ProcessLookupError:
            pass

    @staticmethod
    def cpu_ns(pid):
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def watch_exits(self):
        reported = set()
        while True:
            with self.lock:
                ended = [(backend_id, b.process.returncode) for backend_id, b in self.backends.items()
                         if b.process.poll() is not None and backend_id not in reported]
                streams = set(self.event_streams) - self.cancelled
            for backend_id, code in ended:
                reported.add(backend_id)
                event = {"backend_id": backend_id, "kind": "exited", "code": code if code >= 0 else 128 - code, "time_ns": time.time_ns()}
                for stream in streams:
                    self.connection.send({"id": stream, "item": event})
            time.sleep(0.1)


def hello_result(params):
    common = set(PROTOCOL_VERSIONS) & set(params.get("protocol_versions", []))
    if not common:
        raise RuntimeError_("unsupported", "%s speaks protocol versions %s; the drone offered %s"
                            % (NAME, PROTOCOL_VERSIONS, params.get("protocol_versions")))
    return {"protocol_version": max(common), "name": NAME, "version": "0.1.0",
            "capabilities": {"network_modes": ["host"], "mounts": False, "stats": True, "oom_events": False,
                             "calls": ["events", "logs", "stats"], "image_pattern": "^/"},
            "options_schema": {"type": "object", "additionalProperties": False, "properties": {}}}


def main():
    path = os.environ.get("PLANE_RUNTIME_SOCKET")
    if not path:
        sys.exit("This is a Plane runtime plugin; the drone starts it with PLANE_RUNTIME_SOCKET set.")
    connection = Connection(path)
    runtime = None
    for message in connection.messages():
        call_id, method, params = message.get("id"), message.get("method"), message.get("params") or {}
        if method is None:
            continue
        if method == "hello":
            try:
                result = hello_result(params)
                runtime = Runtime(connection)
                connection.send({"id": call_id, "result": result})
            except RuntimeError_ as error:
                connection.send({"id": call_id, "error": {"code": error.code, "message": error.message}})
            continue
        if method == "cancel":
            runtime.cancelled.add(params.get("id"))
            with runtime.lock:
                if params.get("id") in runtime.event_streams:
                    connection.send({"id": params.get("id"), "end": True})
            connection.send({"id": call_id, "result": None})
            continue
        threading.Thread(target=answer, args=(connection, runtime, call_id, method, params), daemon=True).start()
    # The drone closed the connection: this plugin's backends end with it.
    for backend in list(runtime.backends.values()) if runtime else []:
        Runtime.signal(backend, signal.SIGKILL)


def answer(connection, runtime, call_id, method, params):
    try:
        if runtime is None:
            raise RuntimeError_("unavailable", "hello must come first")
        if method == "logs":
            return runtime.logs(call_id, params)
        if method == "events":
            return runtime.events(call_id, params)
        handler = {"start": runtime.start, "status": runtime.status, "stop": runtime.stop, "remove": runtime.remove,
                   "list": runtime.list, "stats": runtime.stats}.get(method)
        if handler is None:
            raise RuntimeError_("unsupported", "python-process does not answer %s" % method)
        connection.send({"id": call_id, "result": handler(params)})
    except RuntimeError_ as error:
        connection.send({"id": call_id, "error": {"code": error.code, "message": error.message}})
    except Exception as error:  # a bug here must not kill the plugin
        connection.send({"id": call_id, "error": {"code": "internal", "message": repr(error)}})


if __name__ == "__main__":
    main()
