"""Half-close through an upgraded connection.

server PORT: answers any request with 101, then reads until the client's end of input,
  then writes "got:<what it read>" and closes.
client PORT HOST: sends an upgrade request for HOST through the proxy, then "hello", then
  shuts down its sending side; prints what comes back until the proxy closes.
"""
import socket
import sys


def server(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    print("half-close-server: listening", flush=True)
    while True:
        connection, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
        rest = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
        connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: plane-test\r\n\r\n")
        while True:
            chunk = connection.recv(4096)
            if not chunk:
                break
            rest += chunk
        connection.sendall(b"got:" + rest)
        connection.close()


def client(port, host):
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: plane-test\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(1)
        if not chunk:
            print(f"closed before the 101: {head!r}")
            return 1
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        print(f"not upgraded: {head!r}")
        return 1
    connection.sendall(b"hello")
    connection.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        chunk = connection.recv(4096)
        if not chunk:
            break
        answer += chunk
    print(answer.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        sys.exit(client(int(sys.argv[2]), sys.argv[3]))
