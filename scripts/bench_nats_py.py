"""Reference benchmark with nats-py: the same measurements as Sources/NATSBench."""
import asyncio
import json
import sys
import time

import nats


async def main(url: str, messages: int, size: int, requests: int) -> None:
    payload = b"x" * size
    publisher = await nats.connect(url, name="nats-py-bench", pending_size=64 * 1024 * 1024)
    start = time.perf_counter()
    for _ in range(messages):
        await publisher.publish("bench.pub", payload)
    await publisher.flush(timeout=120)
    publish_elapsed = time.perf_counter() - start

    responder = await nats.connect(url, name="nats-py-responder")

    async def echo(msg):
        await msg.respond(msg.data)

    await responder.subscribe("bench.echo", cb=echo)
    await responder.flush()
    for _ in range(100):
        await publisher.request("bench.echo", payload, timeout=10)
    start = time.perf_counter()
    for _ in range(requests):
        await publisher.request("bench.echo", payload, timeout=10)
    request_elapsed = time.perf_counter() - start

    concurrency = 64

    async def worker():
        for _ in range(requests // concurrency):
            await publisher.request("bench.echo", payload, timeout=10)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    concurrent_elapsed = time.perf_counter() - start
    await responder.close()
    await publisher.close()
    print(json.dumps({
        "client": "nats-py " + nats.__version__ if hasattr(nats, "__version__") else "nats-py",
        "messages": messages, "payload_bytes": size, "requests": requests,
        "publish_msgs_per_sec": messages / publish_elapsed,
        "request_round_trips_per_sec": requests / request_elapsed,
        "concurrent_request_round_trips_per_sec": (requests // concurrency * concurrency) / concurrent_elapsed,
        "concurrency": concurrency,
    }, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
