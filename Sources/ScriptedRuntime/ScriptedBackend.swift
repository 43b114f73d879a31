import ContainerRuntime
import NIOCore
import NIOHTTP1
import NIOPosix
import PlaneCore
import Synchronization

/// One backend of the scripted runtime: an in-process HTTP server on the backend's
/// loopback address that behaves like the `plane-test-server` image — `GET /` answers
/// `Hello World!`, `GET /env` its environment, `GET /exit/{n}` answers and exits with n;
/// `EXIT_CODE` (+ `EXIT_TIMEOUT` ms) exits without serving; `IGNORE_SIGTERM=1` makes a
/// stop wait out the grace period and kill. It logs one line at start and one per request.
final class ScriptedBackend: Sendable {
    let spec: BackendSpec
    let address: BackendAddress
    private weak let host: ScriptedHost?

    private struct State {
        var status: RuntimeStatus = .created
        var server: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var lines: [LogLine] = []
        var lastTime: Timestamp?
        var followers: [Int: AsyncThrowingStream<LogLine, any Error>.Continuation] = [:]
        var nextFollower = 0
        var exitTimer: Task<Void, Never>?
    }

    private let state = Mutex(State())

    init(spec: BackendSpec, address: BackendAddress, host: ScriptedHost) {
        self.spec = spec
        self.address = address
        self.host = host
    }

    var status: RuntimeStatus { state.withLock { $0.status } }

    /// Starts "the process": binds the server, or schedules the scripted exit.
    func run() async throws(RuntimeError) {
        let environment = spec.effectiveEnvironment
        if let code = environment["EXIT_CODE"].flatMap(Int32.init) {
            let delay = environment["EXIT_TIMEOUT"].flatMap(Int64.init) ?? 0
            state.withLock { $0.status = .running(address: address) }
            log("scripted plane-test-server: exiting with code \(code) after \(delay) ms")
            let timer = Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(delay))
                if !Task.isCancelled { self?.exit(code: code) }
            }
            state.withLock { $0.exitTimer = timer }
            return
        }
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { [weak self] channel in
                    guard let self, self.track(channel) else { return channel.close() }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(ScriptedHTTPHandler(backend: self))
                    }
                }
                .bind(host: address.host, port: Int(address.port)).get()
        } catch {
            throw RuntimeError(.internal, "The scripted backend could not listen on \(address).", underlying: error)
        }
        state.withLock {
            $0.server = server
            $0.status = .running(address: address)
        }
        log("scripted plane-test-server: listening on \(address)")
    }

    /// What the server answers; nil code: keep serving.
    func respond(method: HTTPMethod, uri: String) -> (status: HTTPResponseStatus, body: String, exitCode: Int32?) {
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let answer: (HTTPResponseStatus, String, Int32?)
        switch path {
        case "/": answer = (.ok, "Hello World!", nil)
        case "/env":
            let members = spec.effectiveEnvironment.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) }
            answer = (.ok, JSONWriter.string(.object(JSONObject(members))), nil)
        case let p where p.hasPrefix("/exit/"):
            if let code = Int32(p.dropFirst("/exit/".count)) {
                answer = (.ok, "Exiting with code \(code)", code)
            } else {
                answer = (.badRequest, "Use /exit/{code} with an integer code", nil)
            }
        default: answer = (.notFound, "Not found", nil)
        }
        log("scripted plane-test-server: \(method) \(uri) \(answer.0.code)")
        return answer
    }

    /// The process ends with `code`: the server and its connections close, followers of
    /// the logs end, and the drone's event streams hear of it.
    func exit(code: Int32, killed: Bool = false) {
        let ended: (server: (any Channel)?, connections: [any Channel], followers: [AsyncThrowingStream<LogLine, any Error>.Continuation])? = state.withLock { state in
            guard state.status.isRunning || state.status == .created else { return nil }
            state.status = killed ? .killed(signal: 9, outOfMemory: false) : .exited(code: code)
            state.exitTimer?.cancel()
            defer {
                state.server = nil
                state.connections = [:]
                state.followers = [:]
            }
            return (state.server, Array(state.connections.values), Array(state.followers.values))
        }
        guard let ended else { return }
        ended.server?.close(promise: nil)
        for connection in ended.connections { connection.close(promise: nil) }
        for follower in ended.followers { follower.finish() }
        host?.deliver(RuntimeEvent(backendID: spec.backendID, kind: .exited(code: code)), drone: spec.droneID)
        host?.exits.signal(spec.backendID)
    }

    /// SIGTERM: exits with 0, or with `IGNORE_SIGTERM=1` is killed after `grace`.
    func stop(grace: Duration) async {
        guard status.isRunning else { return }
        if spec.effectiveEnvironment["IGNORE_SIGTERM"] == "1" {
            // Like a real runtime, the stop returns as soon as the process is gone (killed by
            // another, harder stop meanwhile).
            let deadline = ContinuousClock.now + grace
            while status.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            guard status.isRunning else { return }
            exit(code: 137, killed: true)
        } else {
            log("scripted plane-test-server: SIGTERM, exiting")
            exit(code: 0)
        }
    }

    func logs(follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: LogLine.self)
        let key: Int? = state.withLock { state in
            for line in state.lines { continuation.yield(line) }
            guard follow, state.status.isRunning else { return nil }
            let key = state.nextFollower
            state.nextFollower += 1
            state.followers[key] = continuation
            return key
        }
        guard let key else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.followers.removeValue(forKey: key) }
        }
        return stream
    }

    /// Records a line with a time strictly after the previous line's (readers resume
    /// after the last time they saw).
    func log(_ text: String) {
        let followers: [AsyncThrowingStream<LogLine, any Error>.Continuation]
        let line: LogLine
        (line, followers) = state.withLock { state in
            var time = Timestamp.now()
            if let last = state.lastTime, time <= last { time = Timestamp(nanosecondsSinceEpoch: last.nanosecondsSinceEpoch + 1) }
            state.lastTime = time
            let line = LogLine(stream: .stdout, text: text, time: time)
            state.lines.append(line)
            return (line, Array(state.followers.values))
        }
        for follower in followers { follower.yield(line) }
    }

    /// Keeps a connection so an exit can close it; false once the backend has ended.
    private func track(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let accepted = state.withLock { state in
            guard state.status.isRunning else { return false }
            state.connections[key] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { [weak self] _ in
                self?.state.withLock { _ = $0.connections.removeValue(forKey: key) }
            }
        }
        return accepted
    }
}

/// HTTP/1.1 for a `ScriptedBackend`; keep-alive as the client asks.
final class ScriptedHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let backend: ScriptedBackend
    private var head: HTTPRequestHead?

    init(backend: ScriptedBackend) { self.backend = backend }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let answer = backend.respond(method: head.method, uri: head.uri)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: String(answer.body.utf8.count))
            let close = answer.exitCode != nil || !head.isKeepAlive
            if close { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: answer.status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            let channel = context.channel
            let backend = backend
            if let code = answer.exitCode {
                done.whenComplete { _ in backend.exit(code: code) }
            } else if close {
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
