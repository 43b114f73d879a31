"""A socket.io client (python-socketio) for the proxy tests: connects through the proxy
(every host name resolves to 127.0.0.1), with the given transports, emits "echo" and
waits for the acknowledgement; with --hold, stays connected that many seconds and does it
again. Prints "ok <transport> <ack>" and exits 0, else exits 1.

With --url-file instead of --url, the client starts (interpreter, imports) and then waits
until that file exists, reads the URL from it, waits --delay seconds and connects: a test can
start its clients before the backend exists and time their connections from the moment it
writes the file, however slowly Python starts on a busy machine."""
import argparse
import asyncio
import os
import socket
import ssl
import sys
import time

import aiohttp
import socketio
from aiohttp.abc import AbstractResolver


class Loopback(AbstractResolver):
    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


async def run(args):
    if args.ready_file:
        # Started and imported: the slow part of a Python start on a busy machine is over.
        with open(args.ready_file, "w") as f:
            f.write("ready")
    if args.url_file:
        deadline = time.monotonic() + 300
        while not os.path.exists(args.url_file):
            if time.monotonic() > deadline:
                print(f"{args.url_file} never appeared")
                return 1
            await asyncio.sleep(0.05)
        with open(args.url_file) as f:
            args.url = f.read().strip()
        await asyncio.sleep(args.delay)
    ssl_context = ssl.create_default_context(cafile=args.ca) if args.ca else False
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=Loopback(), ssl=ssl_context))
    client = socketio.AsyncClient(http_session=session, reconnection=False)
    try:
        await client.connect(args.url, transports=args.transports.split(","), socketio_path=args.path, wait_timeout=10)
        upgraded_to = client.transport()
        if "websocket" in args.transports and "polling" in args.transports:
            # Let the polling → websocket upgrade happen.
            for _ in range(50):
                if client.transport() == "websocket":
                    break
                await asyncio.sleep(0.1)
            upgraded_to = client.transport()
        ack = await client.call("echo", "hello through plane", timeout=10)
        if ack.get("echo") != "hello through plane":
            print(f"bad ack {ack!r}")
            return 1
        if args.hold > 0:
            await asyncio.sleep(args.hold)
            if not client.connected:
                print("disconnected while held")
                return 1
            ack = await client.call("echo", "still here", timeout=10)
            if ack.get("echo") != "still here":
                print(f"bad ack after holding {ack!r}")
                return 1
        print(f"ok {upgraded_to} {ack['transport']}")
        return 0
    finally:
        await client.disconnect()
        await session.close()


def main():
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url")
    source.add_argument("--url-file", help="wait for this file, then connect to the URL it holds")
    parser.add_argument("--delay", type=float, default=0, help="seconds to wait after --url-file appeared")
    parser.add_argument("--ready-file", help="written once the client has started, before it waits for --url-file")
    parser.add_argument("--path", default="socket.io")
    parser.add_argument("--transports", default="polling,websocket")
    parser.add_argument("--ca")
    parser.add_argument("--hold", type=float, default=0, help="seconds to stay connected before a second event")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
