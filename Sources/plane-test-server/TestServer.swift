import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A small HTTP/1.1 + WebSocket server:
/// - `GET /` answers `Hello World!`; `GET /exit/{n}` answers, then exits with code n;
///   `GET /headers` returns the request headers as a JSON object; `GET /env` its environment;
/// - for proxy tests: `/upload` answers `received {n}` with the request body's size,
///   `/echo` streams the request body back as it arrives, `/download/{n}` streams n bytes,
///   `/slow/{ms}` answers after a delay, `/sse/{count}/{ms}` streams `count` server-sent events
///   `ms` apart, `/partial` promises 100 bytes, sends 10 and closes;
/// - for sandbox tests (SandboxProbes): `/probe/write/{path}` (create a file), `/probe/read/{path}`,
///   `/probe/mount/{path}` (the mount options there), `/probe/sandbox` (unshare, keyctl and mount
///   results, capabilities, no_new_privs, seccomp mode), `/probe/spawn/{n}` (start up to n
///   child processes), `/probe/allocate/{mib}` (allocate and touch memory), `/probe/fill/{mib}`
///   (write that many MiB to `/plane-fill`);
/// - any path with a WebSocket upgrade echoes text and binary messages;
/// - env `EXIT_CODE` (+ `EXIT_TIMEOUT` in ms) exits after the delay without serving;
/// - env `START_DELAY_MS` waits that long (at most a day) before it listens: a backend that
///   is slow to become Ready;
/// - env `START_AFTER_FILE` waits until that path exists (at most a day) before it listens:
///   a test decides when the backend becomes Ready;
/// - listens on `0.0.0.0:$PORT` (default 8080; `HOST` overrides the address);
/// - prints one line at start and one per request; exits with 0 on SIGTERM unless
///   `IGNORE_SIGTERM=1`.
struct TestServer {
    let environment: [String: String]

    func run() async throws {
        if let codeText = environment["EXIT_CODE"], let code = Int32(codeText) {
            let delay = UInt64(environment["EXIT_TIMEOUT"].flatMap(UInt64.init) ?? 0)
            say("plane-test-server: exiting with code \(code) after \(delay) ms")
            try await Task.sleep(for: .milliseconds(delay))
            exit(code)
        }
        if let delay = environment["START_DELAY_MS"].flatMap(UInt64.init), delay > 0 {
            say("plane-test-server: listening in \(min(delay, 86_400_000)) ms")
            try await Task.sleep(for: .milliseconds(min(delay, 86_400_000)))
        }
        if let gate = environment["START_AFTER_FILE"], !gate.isEmpty {
            say("plane-test-server: listening once \(gate) exists")
            let deadline = ContinuousClock.now + .seconds(86_400)
            while !FileManager.default.fileExists(atPath: gate), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let host = environment["HOST"] ?? "0.0.0.0"
        let port = environment["PORT"].flatMap(Int.init) ?? 8080
        let environment = self.environment
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 1 << 24,
                    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(WebSocketEchoHandler())
                        }
                    })
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.removeHandler(name: HTTPHandler.name, promise: nil)
                        }))
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(environment: environment), name: HTTPHandler.name)
                }
            }
            .bind(host: host, port: port).get()
        say("plane-test-server: listening on \(host):\(channel.localAddress?.port ?? port)")
        try await channel.closeFuture.get()
    }
}

final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    static let name = "plane-test-server.http"

    let environment: [String: String]
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var echoing = false

    init(environment: [String: String]) { self.environment = environment }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
            if head.uri.hasPrefix("/echo") {
                echoing = true
                var headers = HTTPHeaders()
                headers.add(name: "Transfer-Encoding", value: "chunked")
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            }
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            if echoing { context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        case .end:
            guard let head else { return }
            self.head = nil
            if echoing {
                echoing = false
                say("plane-test-server: \(head.method) \(head.uri) 200")
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                return
            }
            if let special = respondForProxyTests(to: head, context: context), special { return }
            respond(to: head, context: context)
        }
    }

    /// The proxy-test paths; true when handled.
    private func respondForProxyTests(to head: HTTPRequestHead, context: ChannelHandlerContext) -> Bool? {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        if path == "/upload" {
            reply(head, .ok, "received \(bodyBytes)", context: context)
        } else if path.hasPrefix("/download/"), let size = Int(path.dropFirst("/download/".count)), size >= 0 {
            say("plane-test-server: \(head.method) \(head.uri) 200")
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: String(size))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            streamDownload(remaining: size, context: context)
        } else if path.hasPrefix("/slow/"), let milliseconds = Int64(path.dropFirst("/slow/".count)), (0...Self.maxDelayMilliseconds).contains(milliseconds) {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
                let (handler, context) = loopBound.value
                handler.reply(head, .ok, "slept \(milliseconds) ms", context: context)
            }
        } else if path.hasPrefix("/sse/"), case let parts = path.dropFirst("/sse/".count).split(separator: "/"), parts.count == 2,
                  let count = Int(parts[0]), let milliseconds = Int64(parts[1]), count >= 0, (0...Self.maxDelayMilliseconds).contains(milliseconds) {
            // Server-sent events: `count` events `milliseconds` apart, chunked.
            say("plane-test-server: \(head.method) \(head.uri) 200")
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/event-stream")
            headers.add(name: "Cache-Control", value: "no-cache")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            streamEvents(next: 1, count: count, every: .milliseconds(milliseconds), context: context)
        } else if path == "/partial" {
            say("plane-test-server: \(head.method) \(head.uri) 200")
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "100")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "0123456789")))), promise: nil)
            context.close(promise: nil)
        } else {
            return nil
        }
        return true
    }

    /// The longest delay `/slow` and `/sse` take (a day; a larger one would overflow `TimeAmount`).
    static let maxDelayMilliseconds: Int64 = 86_400_000

    /// Writes server-sent event `next` of `count` (`data: n`), then the next after `every`.
    private func streamEvents(next: Int, count: Int, every: TimeAmount, context: ChannelHandlerContext) {
        guard next <= count else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "data: \(next)\n\n")))), promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: every) {
            let (handler, context) = loopBound.value
            handler.streamEvents(next: next + 1, count: count, every: every, context: context)
        }
    }

    /// Writes `remaining` bytes in 64 KiB chunks, one chunk in flight at a time (so a slow
    /// reader slows the writer instead of filling memory).
    private func streamDownload(remaining: Int, context: ChannelHandlerContext) {
        guard remaining > 0 else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let size = min(remaining, 64 * 1024)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // The next chunk on a later loop tick: a write that completes at once would run the
        // callback inline, and 16,384 nested calls for a gigabyte overflow the stack.
        let loop = context.eventLoop
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk)))).whenSuccess {
            loop.execute {
                let (handler, context) = loopBound.value
                handler.streamDownload(remaining: remaining - size, context: context)
            }
        }
    }

    private func reply(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String, context: ChannelHandlerContext) {
        say("plane-test-server: \(head.method) \(head.uri) \(status.code)")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        var status = HTTPResponseStatus.ok
        var contentType = "text/plain; charset=utf-8"
        var body: String
        var exitCode: Int32?
        switch path {
        case "/":
            body = "Hello World!"
        case "/headers":
            var object: [String: String] = [:]
            for (name, value) in head.headers {
                let key = name.lowercased()
                object[key] = object[key].map { "\($0), \(value)" } ?? value
            }
            body = Self.json(object)
            contentType = "application/json"
        case "/env":
            body = Self.json(environment)
            contentType = "application/json"
        case "/probe/sandbox":
            body = SandboxProbes.sandbox()
            contentType = "application/json"
        case let p where p.hasPrefix("/probe/spawn/"):
            body = SandboxProbes.spawnChildren(Int(p.dropFirst("/probe/spawn/".count)) ?? 0)
            contentType = "application/json"
        case let p where p.hasPrefix("/probe/allocate/"):
            body = SandboxProbes.allocate(Int(p.dropFirst("/probe/allocate/".count)) ?? 0)
        case let p where p.hasPrefix("/probe/fill/"):
            // /probe/fill/{mib}: write that many MiB to /plane-fill (the writable layer).
            body = SandboxProbes.fill(path: "/plane-fill", megabytes: Int(p.dropFirst("/probe/fill/".count)) ?? 0)
        case let p where p.hasPrefix("/probe/write/"):
            // /probe/write/{absolute path}: create a file there.
            body = SandboxProbes.write(path: String(p.dropFirst("/probe/write".count)))
        case let p where p.hasPrefix("/probe/print/"):
            // /probe/print/{bytes}: that much output on stdout (lines of 100), at most 64 MiB.
            let bytes = min(max(Int(p.dropFirst("/probe/print/".count)) ?? 0, 0), 64 << 20)
            let line = String(repeating: "x", count: 99) + "\n"
            var text = ""
            for _ in 0..<(bytes / 100) { text += line }
            var bytesLeft = Array(text.utf8)[...]
            while !bytesLeft.isEmpty {
                let written = bytesLeft.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { break }
                bytesLeft = bytesLeft.dropFirst(written)
            }
            body = "printed \(bytes / 100 * 100)"
        case let p where p.hasPrefix("/probe/read/"):
            // /probe/read/{absolute path}: the file's first 64 KiB.
            body = SandboxProbes.readFile(path: String(p.dropFirst("/probe/read".count)))
        case let p where p.hasPrefix("/probe/mount/"):
            // /probe/mount/{absolute path}: the options of the mount there (the last one).
            body = SandboxProbes.mountOptions(of: String(p.dropFirst("/probe/mount".count)))
        case let p where p.hasPrefix("/probe/connect/"):
            // /probe/connect/{ipv4}/{port}
            let parts = p.dropFirst("/probe/connect/".count).split(separator: "/")
            body = parts.count == 2 ? SandboxProbes.connect(host: String(parts[0]), port: Int(parts[1]) ?? -1) : "error: use /probe/connect/{ipv4}/{port}"
        case let p where p.hasPrefix("/exit/"):
            if let code = Int32(p.dropFirst("/exit/".count)) {
                body = "Exiting with code \(code)"
                exitCode = code
            } else {
                status = .badRequest
                body = "Use /exit/{code} with an integer code"
            }
        default:
            status = .notFound
            body = "Not found"
        }
        say("plane-test-server: \(head.method) \(head.uri) \(status.code)")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if exitCode != nil { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if let exitCode {
            done.whenComplete { _ in exit(exitCode) }
        } else if !head.isKeepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    static func json(_ object: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(object)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

/// Echoes text and binary messages, answers pings, completes the close handshake.
final class WebSocketEchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var fragments: ByteBuffer?
    private var fragmentOpcode: WebSocketOpcode = .text

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            if frame.fin {
                send(frame.opcode, frame.unmaskedData, context: context)
            } else {
                fragmentOpcode = frame.opcode
                fragments = frame.unmaskedData
            }
        case .continuation:
            var data = frame.unmaskedData
            fragments?.writeBuffer(&data)
            if frame.fin, let whole = fragments {
                fragments = nil
                send(fragmentOpcode, whole, context: context)
            }
        case .ping:
            send(.pong, frame.unmaskedData, context: context)
        case .connectionClose:
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }

    private func send(_ opcode: WebSocketOpcode, _ data: ByteBuffer, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, data: data)), promise: nil)
    }
}

/// Writes one line to stdout at once (unbuffered, so logs show up while the server runs).
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}
