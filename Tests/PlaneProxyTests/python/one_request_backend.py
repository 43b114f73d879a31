"""A backend that answers one request per connection and closes a connection on the
request after that without answering (as a server whose keep-alive timeout ran out just as
the request arrived); `Connection: close` is honoured. Usage: one_request_backend.py PORT.

Every answer is `HTTP/1.1 200` with keep-alive and the body `{connection} {method} {path}`;
`GET /count` answers with the number of requests seen per method, dropped ones included, as
JSON."""
import asyncio
import json
import sys

seen = {}
connections = 0


async def serve(reader, writer):
    global connections
    connections += 1
    number = connections
    answered = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                if name.strip().lower() == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            seen[method] = seen.get(method, 0) + 1
            if answered:
                break
            answered += 1
            body = (json.dumps(seen) if path == "/count" else f"{number} {method} {path}").encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
