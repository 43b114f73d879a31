"""A socket.io server (python-socketio on aiohttp) for the proxy tests: event "echo" is
acknowledged with {"echo": data, "transport": ...}. Listens on 127.0.0.1:PORT."""
import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app)


@sio.event
async def echo(sid, data):
    return {"echo": data, "transport": sio.transport(sid)}


if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("socketio-server: listening", flush=True))
