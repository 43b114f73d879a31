"""WebSocket peer for the proxy tests.

echo: one connection sends 1..N and expects each echoed back in order.
load: C connections, all open at once, each sends M messages and expects the echoes.
The URL names the host the proxy routes on; the TCP connection goes to 127.0.0.1:--port.
Prints "ok ..." and exits 0, or prints what went wrong and exits 1.
"""
import argparse
import asyncio
import ssl
import sys
import time

from websockets.asyncio.client import connect


def context(ca):
    return ssl.create_default_context(cafile=ca) if ca else None


async def echo(args):
    headers = [tuple(h.split(": ", 1)) for h in args.header]
    async with connect(args.url, ssl=context(args.ca), host="127.0.0.1", port=args.port, open_timeout=args.open_timeout,
                       additional_headers=headers) as ws:
        for i in range(1, args.messages + 1):
            await ws.send(str(i))
            reply = await asyncio.wait_for(ws.recv(), 10)
            if reply != str(i):
                print(f"message {i}: got {reply!r}")
                return 1
    print(f"ok {args.messages}")
    return 0


async def load(args):
    connect_gate = asyncio.Semaphore(100)
    all_open = asyncio.Event()
    opened = 0
    peak = 0
    echoed = 0

    async def one(index):
        nonlocal opened, peak, echoed
        async with connect_gate:
            ws = await connect(args.url, ssl=context(args.ca), host="127.0.0.1", port=args.port, open_timeout=60, max_queue=None)
        try:
            opened += 1
            peak = max(peak, opened)
            if opened == args.connections:
                all_open.set()
            await asyncio.wait_for(all_open.wait(), 120)
            for i in range(args.messages):
                text = f"{index}:{i}"
                await ws.send(text)
                reply = await asyncio.wait_for(ws.recv(), 30)
                if reply != text:
                    raise RuntimeError(f"connection {index} message {i}: got {reply!r}")
                echoed += 1
        finally:
            await ws.close()

    started = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(args.connections)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    elapsed = time.monotonic() - started
    if failures:
        print(f"{len(failures)} connections failed; first: {failures[0]!r}")
        return 1
    print(f"ok connections={args.connections} peak_open={peak} echoed={echoed} seconds={elapsed:.2f} messages_per_second={echoed / elapsed:.0f}")
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo", "load"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', sent with the handshake (echo)")
    parser.add_argument("--open-timeout", type=float, default=10)
    parser.add_argument("--messages", type=int, default=6)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(echo(args) if args.mode == "echo" else load(args))


if __name__ == "__main__":
    sys.exit(main())
