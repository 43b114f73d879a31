"""A runtime plugin that misbehaves on purpose, for the drone's tests (standard library only).

    fake_plugin.py old-version   answers hello: it speaks only protocol version 2
    fake_plugin.py hang          greets, then never answers another call
    fake_plugin.py garbage       greets; before each answer sends a frame that is not JSON;
                                 answers the first `list` with a frame longer than the protocol allows
    fake_plugin.py timeless      offers `logs` and streams three lines without times
    fake_plugin.py chatty-exit   writes 2,000 numbered lines and "the last words" to stderr,
                                 then exits before it connects
"""
import json
import os
import socket
import struct
import sys
import time

MODE = sys.argv[1]

if MODE == "chatty-exit":
    for number in range(2000):
        sys.stderr.write("line %d of a plugin that talks a lot\n" % number)
    sys.stderr.write("the last words\n")
    sys.exit(3)


def send(sock, message):
    payload = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def frames(sock):
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 4:
            (length,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + length:
                break
            yield json.loads(buffer[4:4 + length])
            buffer = buffer[4 + length:]


def hello_result(call):
    return {"id": call["id"], "result": {
        "protocol_version": 1, "name": os.environ["PLANE_RUNTIME_NAME"], "version": "0.0.1",
        "capabilities": {"network_modes": ["host"], "mounts": False, "stats": False, "oom_events": False,
                         "calls": ["logs"] if MODE == "timeless" else []},
        "options_schema": None}}


sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["PLANE_RUNTIME_SOCKET"])
for call in frames(sock):
    method = call.get("method")
    if method == "hello":
        if MODE == "old-version":
            send(sock, {"id": call["id"], "error": {"code": "unsupported", "message":
                        "this plugin speaks protocol versions [2]; the drone offered %s" % call["params"]["protocol_versions"]}})
        else:
            send(sock, hello_result(call))
        continue
    if MODE == "hang":
        continue
    if MODE == "timeless" and method == "logs":
        for text in ["one", "two", "three"]:
            send(sock, {"id": call["id"], "item": {"stream": "stdout", "text": text}})
        send(sock, {"id": call["id"], "end": True})
        continue
    if MODE == "timeless":
        send(sock, {"id": call["id"], "result": [] if method == "list" else None})
        continue
    if MODE == "garbage":
        sock.sendall(struct.pack(">I", 9) + b"{not json")
        # Once per plugin directory: the drone lists again after the restart this causes.
        marker = os.path.join(os.path.dirname(os.environ["PLANE_RUNTIME_SOCKET"]), "oversized-sent")
        if method == "list" and not os.path.exists(marker):
            open(marker, "w").close()
            sock.sendall(struct.pack(">I", 0x7fffffff))
            time.sleep(30)
            break
        if method == "status":
            send(sock, {"id": call["id"], "result": {"state": "unknown"}})
        elif method == "list":
            send(sock, {"id": call["id"], "result": []})
        else:
            send(sock, {"id": call["id"], "result": None})
