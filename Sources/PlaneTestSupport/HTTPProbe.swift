import Foundation

/// A minimal blocking HTTP/1.1 and WebSocket client over loopback TCP for tests, so tests
/// of servers do not depend on the code under test.
public struct HTTPProbe: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public let host: String
    public let port: Int
    public var timeout: Duration = .seconds(5)
    /// The `Host` header sent (default `host:port`), e.g. a backend's name behind a proxy.
    public var hostHeader: String?

    public init(host: String = "127.0.0.1", port: Int, hostHeader: String? = nil) {
        self.host = host
        self.port = port
        self.hostHeader = hostHeader
    }

    /// `GET path`; throws when the connection fails or times out. Blocks the calling
    /// thread, so async code uses the async overload.
    @available(*, noasync, message: "blocks a thread of the cooperative pool; use the async overload")
    public func get(_ path: String, headers: [String: String] = [:]) throws -> Response {
        let socket = try TestSocket(host: host, port: port, timeout: timeout)
        defer { socket.close() }
        var request = "GET \(path) HTTP/1.1\r\nHost: \(hostHeader ?? "\(host):\(port)")\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try socket.send(Array(request.utf8))
        let raw = try socket.readToEnd()
        return try Self.parse(raw)
    }

    /// `get` on a thread of its own, so that probes never block the tasks (Swift's
    /// cooperative pool has only as many threads as cores).
    public func get(_ path: String, headers: [String: String] = [:]) async throws -> Response {
        try await SystemProgram.offThePool { try self.get(path, headers: headers) }
    }

    /// Retries `get` until the server answers or `within` passes.
    public func waitUntilAnswering(_ path: String = "/", within: Duration = .seconds(10)) async throws -> Response {
        let deadline = ContinuousClock.now + within
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do { return try await get(path) } catch { lastError = error }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSupportError("no HTTP answer from \(host):\(port)\(path) within \(within): \(String(describing: lastError))")
    }

    static func parse(_ raw: [UInt8]) throws -> Response {
        let text = String(decoding: raw, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestSupportError("incomplete HTTP response: \(text.prefix(200))") }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw TestSupportError("bad status line: \(head[0])") }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    // MARK: Raw exchanges

    /// Sends `request` as is (pieces sent one after another, `pause` between them) and
    /// reads until the server closes the connection or the timeout passes: what arrived,
    /// and whether the server closed it. Off the cooperative pool.
    public func raw(_ pieces: [[UInt8]], pause: Duration = .zero) async throws -> (text: String, closed: Bool) {
        let host = self.host, port = self.port, timeout = self.timeout
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "plane.http-probe.raw").async {
                continuation.resume(with: Result {
                    let socket = try TestSocket(host: host, port: port, timeout: timeout)
                    defer { socket.close() }
                    for (index, piece) in pieces.enumerated() {
                        if index > 0, pause > .zero { Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18) }
                        do { try socket.send(piece) } catch { break }
                    }
                    let (bytes, closed) = socket.readUntilClosedOrTimeout()
                    return (String(decoding: bytes, as: UTF8.self), closed)
                })
            }
        }
    }

    public func raw(_ request: String) async throws -> (text: String, closed: Bool) {
        try await raw([Array(request.utf8)])
    }

    // MARK: Held connections

    /// Connects and sends `request` (if any), and keeps the connection open until the test
    /// closes it: a client that stays, for as long as the test needs, however slow the
    /// machine is.
    public func hold(_ request: String? = nil) async throws -> HeldConnection {
        let host = self.host, port = self.port, timeout = self.timeout
        return try await SystemProgram.offThePool {
            let socket = try TestSocket(host: host, port: port, timeout: timeout)
            if let request { try socket.send(Array(request.utf8)) }
            return HeldConnection(socket: socket)
        }
    }

    // MARK: WebSocket

    /// Opens a WebSocket on `path` (client frames masked, as RFC 6455 requires). Blocks
    /// the calling thread, so async code uses the async overload.
    @available(*, noasync, message: "blocks a thread of the cooperative pool; use the async overload")
    public func webSocket(_ path: String = "/") throws -> TestWebSocket {
        let socket = try TestSocket(host: host, port: port, timeout: timeout)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = "GET \(path) HTTP/1.1\r\nHost: \(hostHeader ?? "\(host):\(port)")\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try socket.send(Array(request.utf8))
        let head = try socket.readUntil(Array("\r\n\r\n".utf8))
        let response = try Self.parse(head)
        guard response.status == 101 else {
            socket.close()
            throw TestSupportError("WebSocket upgrade refused with \(response.status)")
        }
        return TestWebSocket(socket: socket)
    }

    /// `webSocket(_:)` on a thread of its own.
    public func webSocket(_ path: String = "/") async throws -> TestWebSocket {
        try await SystemProgram.offThePool { try self.webSocket(path) }
    }
}

/// A connection a test keeps open (`HTTPProbe.hold`).
public final class HeldConnection: @unchecked Sendable {
    let socket: TestSocket
    init(socket: TestSocket) { self.socket = socket }

    /// The response head (status line and headers) the server sent, waiting up to the
    /// probe's timeout for it.
    public func head() async throws -> String {
        try await SystemProgram.offThePool { String(decoding: try self.socket.readUntil(Array("\r\n\r\n".utf8)), as: UTF8.self) }
    }

    /// Whether the server closed the connection within the probe's timeout.
    public func closedByServer() async -> Bool {
        (try? await SystemProgram.offThePool { self.socket.readUntilClosedOrTimeout().1 }) ?? false
    }

    public func close() { socket.close() }
}

public final class TestWebSocket: @unchecked Sendable {
    let socket: TestSocket
    init(socket: TestSocket) { self.socket = socket }

    public enum Opcode: UInt8, Sendable { case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

    public func send(_ opcode: Opcode, _ payload: [UInt8]) throws {
        var frame: [UInt8] = [0x80 | opcode.rawValue]
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame.append(0x80 | 126)
            frame.append(contentsOf: [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)])
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        frame.append(contentsOf: mask)
        frame.append(contentsOf: payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        try socket.send(frame)
    }

    public func sendText(_ text: String) throws { try send(.text, Array(text.utf8)) }

    /// Reads one (unfragmented) frame from the server.
    public func receive() throws -> (Opcode, [UInt8]) {
        let header = try socket.read(exactly: 2)
        guard let opcode = Opcode(rawValue: header[0] & 0x0F) else { throw TestSupportError("unknown opcode \(header[0] & 0x0F)") }
        var length = Int(header[1] & 0x7F)
        if length == 126 {
            let b = try socket.read(exactly: 2)
            length = Int(b[0]) << 8 | Int(b[1])
        } else if length == 127 {
            let b = try socket.read(exactly: 8)
            length = b.reduce(0) { $0 << 8 | Int($1) }
        }
        return (opcode, length == 0 ? [] : try socket.read(exactly: length))
    }

    public func close() {
        try? send(.close, [0x03, 0xE8])
        socket.close()
    }
}

/// A blocking TCP socket with a read/write timeout.
final class TestSocket: @unchecked Sendable {
    private var fd: Int32
    private var buffered: [UInt8] = []

    /// - Parameter source: the local address to connect from (another loopback address
    ///   plays another client); the kernel's choice when nil.
    init(host: String, port: Int, timeout: Duration, source: String? = nil) throws {
        fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed") }
        let socket = fd
        if let source, Self.withAddress(source, port: 0, { bind(socket, $0, $1) }) != 0 {
            let error = errno
            close()
            throw TestSupportError("bind to \(source) failed (errno \(error))")
        }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard Self.withAddress(host, port: port, { connect(socket, $0, $1) }) == 0 else {
            let error = errno
            // Through close(): a class whose init throws after setting every property is
            // deinitialized, and deinit closing the same number again once closed a socket
            // another thread had just been given (NIO crashed with EBADF in CI).
            close()
            throw TestSupportError("connect to \(host):\(port) failed (errno \(error))")
        }
    }

    /// `call`'s result with the IPv4 `host:port` as a `sockaddr` and its length.
    private static func withAddress(_ host: String, port: Int, _ call: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestSupportError("send failed (errno \(errno))") }
            offset += n
        }
    }

    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw TestSupportError("recv failed or timed out (errno \(errno))") }
        if n == 0 { return false }
        buffered.append(contentsOf: chunk[..<n])
        return true
    }

    func read(exactly count: Int) throws -> [UInt8] {
        while buffered.count < count {
            guard try fill() else { throw TestSupportError("connection closed after \(buffered.count) of \(count) bytes") }
        }
        defer { buffered.removeFirst(count) }
        return Array(buffered.prefix(count))
    }

    func readUntil(_ marker: [UInt8]) throws -> [UInt8] {
        while true {
            if let range = buffered.firstRange(of: marker) {
                let result = Array(buffered[..<range.upperBound])
                buffered.removeFirst(range.upperBound)
                return result
            }
            guard try fill() else { throw TestSupportError("connection closed before the marker") }
        }
    }

    /// Everything until the peer closes (true) or a read times out (false).
    func readUntilClosedOrTimeout() -> ([UInt8], Bool) {
        var closed = false
        while true {
            do {
                if try !fill() { closed = true; break }
            } catch {
                closed = errno == ECONNRESET
                break
            }
        }
        defer { buffered.removeAll() }
        return (buffered, closed)
    }

    /// What one `recv` returns (buffered bytes first): nil when the peer closed, empty
    /// when the read timed out or the connection was reset.
    func readSome() -> [UInt8]? {
        if !buffered.isEmpty { defer { buffered.removeAll() }; return buffered }
        do {
            guard try fill() else { return nil }
        } catch {
            return []
        }
        defer { buffered.removeAll() }
        return buffered
    }

    /// Whether the peer has closed (or reset) the connection, without waiting or consuming
    /// what it sent.
    func peerHasClosed() -> Bool {
        guard fd >= 0 else { return true }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Sends FIN (no more bytes from this side) and keeps reading possible.
    func shutdownWrite() { if fd >= 0 { _ = shutdown(fd, Int32(SHUT_WR)) } }

    /// Closes with a reset (`SO_LINGER` zero), as a killed client's kernel may.
    func abort() {
        guard fd >= 0 else { return }
        var value = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func readToEnd() throws -> [UInt8] {
        while try fill() {}
        defer { buffered.removeAll() }
        return buffered
    }

    func close() {
        if fd >= 0 { Foundation.close(fd); fd = -1 }
    }

    deinit { close() }
}
