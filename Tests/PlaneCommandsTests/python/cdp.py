"""Drives the page of a headless Chromium over the DevTools protocol, one step per run.

    cdp.py PORT navigate URL
    cdp.py PORT wait EXPRESSION TIMEOUT_SECS   # until the expression is truthy; prints it
    cdp.py PORT eval EXPRESSION                # prints the value as JSON
    cdp.py PORT screenshot PATH                # a PNG of the page

Exits 1 with a message when a step fails (a wait that runs out prints the last value).
Only loopback is ever contacted.
"""
import asyncio
import base64
import itertools
import json
import sys
import time
import urllib.request

import websockets


def page_socket(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        targets = json.load(answer)
    for target in targets:
        if target.get("type") == "page":
            return target["webSocketDebuggerUrl"]
    raise SystemExit("no page target")


class Page:
    def __init__(self, socket):
        self.socket = socket
        self.ids = itertools.count(1)

    async def call(self, method, **params):
        ident = next(self.ids)
        await self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise SystemExit(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            return {"exception": result["exceptionDetails"].get("text", "")}
        return result.get("result", {}).get("value")


async def main(port, step, args):
    async with websockets.connect(page_socket(port), max_size=64 << 20) as socket:
        page = Page(socket)
        if step == "navigate":
            await page.call("Page.navigate", url=args[0])
        elif step == "wait":
            deadline = time.monotonic() + float(args[1])
            value = None
            while time.monotonic() < deadline:
                value = await page.evaluate(args[0])
                if value and not (isinstance(value, dict) and "exception" in value):
                    print(json.dumps(value))
                    return
                await asyncio.sleep(0.2)
            raise SystemExit(f"timed out; last value: {json.dumps(value)}")
        elif step == "eval":
            print(json.dumps(await page.evaluate(args[0])))
        elif step == "screenshot":
            await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=720, deviceScaleFactor=1, mobile=False)
            shot = await page.call("Page.captureScreenshot", format="png")
            with open(args[0], "wb") as out:
                out.write(base64.b64decode(shot["data"]))
        else:
            raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
