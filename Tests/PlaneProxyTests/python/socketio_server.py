"""A socket.io server (python-socketio on aiohttp) for the proxy tests: event "echo" is
acknowledged with {"echo": data, "transport": ...}. Usage: socketio_server.py PORT
[PING_INTERVAL_SECONDS]; listens on 127.0.0.1:PORT. A polling client's long-poll GET stays
open for up to the ping interval (python-socketio's default is 25 s)."""
import sys

import socketio
from aiohttp import web

ping_interval = float(sys.argv[2]) if len(sys.argv) > 2 else 25
sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", ping_interval=ping_interval)
app = web.Application()
sio.attach(app)


@sio.event
async def echo(sid, data):
    return {"echo": data, "transport": sio.transport(sid)}


if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("socketio-server: listening", flush=True))
