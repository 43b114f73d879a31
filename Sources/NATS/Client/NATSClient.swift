import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A NATS client on SwiftNIO: one connection to one server of a list, reconnecting with
/// backoff and jitter, restoring subscriptions, buffering publishes while disconnected (up to
/// a bound), request/reply on one muxed inbox, PING-based stale detection, graceful drain.
///
/// Thread-safe; all state lives in one `Mutex`. Publishing never hops to an actor: bytes are
/// appended to a buffer and flushed in batches on the connection's event loop.
public final class NATSClient: Sendable {
    public let configuration: NATSClientConfiguration
    let logger: Logger
    let group: any EventLoopGroup
    /// The event loop every connection of this client runs on. Latency-sensitive code can run
    /// on it (e.g. an actor whose executor is `eventLoop.executor`) to avoid thread hops.
    public let eventLoop: any EventLoop
    let state: Mutex<State>
    let inboxPrefix: String
    let requestIDs = Atomic<UInt64>(1)
    private let tlsContext: NIOSSLContext?

    enum Status: Equatable { case idle, connecting, connected, reconnecting, draining, closed }

    struct SubscriptionEntry {
        var subject: String
        var queue: String?
        var continuation: AsyncStream<NATSMessage>.Continuation
        let backlog: SubscriptionBacklog
        var max: Int?
        var delivered = 0
        var dropped = 0
    }

    struct RequestWaiter {
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var deadline: NIODeadline
        var subject: String
        var timeout: Duration
    }

    struct PongWaiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>?
    }

    struct State {
        var status: Status = .idle
        var channel: (any Channel)?
        var server: NATSServerURL?
        var serverInfo: NATSServerInfo?
        var pool: ServerPool
        var nextSID: UInt64 = 1
        var subscriptions: [UInt64: SubscriptionEntry] = [:]
        var outBuffer: ByteBuffer
        var flushScheduled = false
        var bytesInFlight = 0
        var backpressureWaiters: [CheckedContinuation<Void, Never>] = []
        var reconnectBuffer: ByteBuffer
        /// One entry per PING in flight, in order; PONGs answer them first in, first out. A
        /// keepalive PING or a cancelled flush keeps its slot with no continuation.
        var pongWaiters: [PongWaiter] = []
        var pingsOutstanding = 0
        var pendingRequests: [UInt64: RequestWaiter] = [:]
        var inboxSID: UInt64?
        var eventContinuations: [UInt64: AsyncStream<NATSClientEvent>.Continuation] = [:]
        var nextEventID: UInt64 = 1
        var loopTask: Task<Void, Never>?
        /// Expires requests; one sweep for all of them instead of a timer per request.
        var requestSweeper: RepeatedTask?
        /// An INFO that came on a connection after its handshake and before `install` made
        /// it the live one: newer than the handshake's, so `install` takes it.
        var infoBeforeInstall: (channel: ObjectIdentifier, info: NATSServerInfo)?
        /// The server's `-ERR` lines and lame-duck notices, as logged.
        var serverErrorLog = LogRateLimit(interval: .seconds(1))
        var lameDuckLog = LogRateLimit(interval: .seconds(10))
    }

    /// Publishers wait while more than this many bytes are queued or in flight.
    static let highWaterMark = 16 * 1024 * 1024
    static let lowWaterMark = 4 * 1024 * 1024

    public init(configuration: NATSClientConfiguration, logger: Logger = Logger(label: "plane.nats"), eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws(NATSError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.group = eventLoopGroup
        self.eventLoop = eventLoopGroup.next()
        self.inboxPrefix = "\(configuration.inboxPrefix).\(Self.nuid())"
        self.tlsContext = try configuration.tls?.makeContext()
        let allocator = ByteBufferAllocator()
        state = Mutex(State(
            pool: ServerPool(servers: configuration.servers, baseWait: configuration.reconnectWait, maxWait: configuration.maxReconnectWait, jitter: configuration.reconnectJitter),
            outBuffer: allocator.buffer(capacity: 64 * 1024),
            reconnectBuffer: allocator.buffer(capacity: 0)
        ))
    }

    deinit {
        let (channel, task) = state.withLock { ($0.channel, $0.loopTask) }
        state.withLock { $0.requestSweeper?.cancel() }
        task?.cancel()
        channel?.close(promise: nil)
    }

    /// A random 22-character token (like NATS "NUIDs") for inbox names.
    static func nuid() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        var rng = SystemRandomNumberGenerator()
        return String((0..<22).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] })
    }

    // MARK: Status

    /// Whether the client currently has a working connection.
    public var isConnected: Bool { state.withLock { $0.status == .connected } }

    /// The INFO of the server currently connected to.
    public var serverInfo: NATSServerInfo? { state.withLock { $0.serverInfo } }

    /// The server currently connected to.
    public var connectedServer: NATSServerURL? { state.withLock { $0.status == .connected ? $0.server : nil } }

    /// A new stream of connection events; it ends when the client closes.
    public func events() -> AsyncStream<NATSClientEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: NATSClientEvent.self, bufferingPolicy: .bufferingNewest(256))
        let id: UInt64? = state.withLock { s in
            guard s.status != .closed else { return nil }
            let id = s.nextEventID
            s.nextEventID += 1
            s.eventContinuations[id] = continuation
            return id
        }
        if let id {
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.eventContinuations.removeValue(forKey: id) }
            }
        } else {
            continuation.finish()
        }
        return stream
    }

    func emit(_ event: NATSClientEvent) {
        let continuations = state.withLock { Array($0.eventContinuations.values) }
        for c in continuations { c.yield(event) }
    }

    // MARK: Connecting

    /// Connects to the first server of the list that answers, trying the list
    /// `initialConnectAttempts` times. After this, the client reconnects on its own.
    public func connect() async throws {
        let servers: [NATSServerURL] = try state.withLock { s throws(NATSError) in
            switch s.status {
            case .idle: s.status = .connecting
            case .closed, .draining: throw NATSError(.closed, "This NATS client was closed; create a new one.")
            default: throw NATSError(.invalidArgument, "connect() was already called on this NATS client.")
            }
            return s.pool.servers
        }
        do {
            try await connect(to: servers)
        } catch {
            state.withLock { s in if s.status == .connecting { s.status = .idle } }
            throw error
        }
    }

    private func connect(to servers: [NATSServerURL]) async throws {
        var lastError: (any Error)?
        for attempt in 0..<configuration.initialConnectAttempts {
            if attempt > 0 {
                var rng = SystemRandomNumberGenerator()
                let pool = state.withLock { $0.pool }
                try await Task.sleep(for: pool.backoff(round: attempt, using: &rng))
            }
            for server in servers {
                do {
                    let (channel, info) = try await establish(to: server)
                    try install(channel: channel, info: info, server: server)
                    emit(.connected(server: server.description))
                    logger.info("nats.connected", metadata: ["nats.server": "\(server)", "nats.server_version": "\(info.version)"])
                    let task = Task { [weak self] () -> Void in await self?.connectionLoop(channel: channel) }
                    state.withLock { $0.loopTask = task }
                    return
                } catch let error as NATSError where error.code == .authorizationFailed || error.code == .tlsFailed {
                    lastError = error
                    logger.warning("nats.connect_failed", metadata: ["nats.server": "\(server)", "error": "\(error)"])
                } catch let error as NATSError where error.code == .closed {
                    throw error
                } catch {
                    if error is CancellationError { throw error }
                    lastError = error
                    logger.debug("nats.connect_failed", metadata: ["nats.server": "\(server)", "error": "\(error)"])
                }
            }
        }
        if let e = lastError as? NATSError, e.code == .authorizationFailed || e.code == .tlsFailed { throw e }
        let list = servers.map(\.description).joined(separator: ", ")
        throw NATSError(.connectionFailed, "Could not connect to NATS at \(list). Is nats-server running there and reachable?", cause: lastError.map { NATSErrorCause($0) })
    }

    /// Opens a TCP connection and completes the NATS handshake.
    func establish(to server: NATSServerURL) async throws -> (any Channel, NATSServerInfo) {
        let promise = eventLoop.makePromise(of: NATSServerInfo.self)
        let handshake = NATSHandshake(
            server: server,
            connectPayload: { [configuration] info in
                // Captures only Sendable values.
                NATSClient.makeConnectPayload(configuration: configuration, server: server, info: info)
            },
            tlsContext: tlsContext,
            tlsRequiredByClient: configuration.tls?.required == true,
            promise: promise
        )
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(configuration.connectTimeout.timeAmount))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let self else { throw NATSError(.closed, "The NATS client was released.") }
                    try channel.pipeline.syncOperations.addHandler(NATSChannelHandler(handshake: handshake, client: self))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: server.host, port: server.port).get()
        } catch {
            promise.fail(error)
            throw NATSError(.connectionFailed, "Could not open a connection to \(server).", cause: NATSErrorCause(error))
        }
        let timeout = eventLoop.scheduleTask(in: .nanoseconds(configuration.connectTimeout.timeAmount)) {
            promise.fail(NATSError(.connectionFailed, "The NATS handshake with \(server) timed out."))
            channel.close(promise: nil)
        }
        do {
            let info = try await promise.futureResult.get()
            timeout.cancel()
            return (channel, info)
        } catch {
            timeout.cancel()
            channel.close(promise: nil)
            throw error
        }
    }

    static func makeConnectPayload(configuration: NATSClientConfiguration, server: NATSServerURL, info: NATSServerInfo) -> [UInt8] {
        var fields: [(String, String)] = [
            ("echo", configuration.echo ? "true" : "false"), ("headers", "true"), ("lang", "\"swift\""),
            ("no_responders", "true"), ("pedantic", "false"), ("protocol", "1"),
            ("tls_required", server.requiresTLS || configuration.tls?.required == true ? "true" : "false"),
            ("verbose", "false"), ("version", "\"0.1.0\""),
        ]
        func quoted(_ s: String) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: [s], options: [])) ?? Data("[\"\"]".utf8)
            return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
        }
        if let name = configuration.name { fields.append(("name", quoted(name))) }
        var user: String?, pass: String?, token: String?
        if let u = server.user {
            if let p = server.password { user = u; pass = p } else { token = u }
        } else {
            switch configuration.auth {
            case .none: break
            case .token(let t): token = t
            case .userPassword(let u, let p): user = u; pass = p
            }
        }
        if let token { fields.append(("auth_token", quoted(token))) }
        if let user { fields.append(("user", quoted(user))) }
        if let pass { fields.append(("pass", quoted(pass))) }
        return Array(("{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}").utf8)
    }

    /// Makes `channel` the live connection: restores subscriptions, then sends what was
    /// buffered while disconnected, in that order, ahead of anything published later.
    func install(channel: any Channel, info handshakeInfo: NATSServerInfo, server: NATSServerURL) throws(NATSError) {
        var discovery = ServerPool.DiscoveryChange()
        var info = handshakeInfo
        let schedule: Bool = try state.withLock { s throws(NATSError) in
            if s.status == .closed || s.status == .draining {
                channel.close(promise: nil)
                throw NATSError(.closed, "The NATS client was closed while connecting.")
            }
            if let later = s.infoBeforeInstall, later.channel == ObjectIdentifier(channel) { info = later.info }
            s.infoBeforeInstall = nil
            s.channel = channel
            s.server = server
            s.serverInfo = info
            s.pool.connected(to: server)
            discovery = s.pool.updateDiscovered(info.connectURLs, current: server)
            var buffer = channel.allocator.buffer(capacity: 4096 + s.reconnectBuffer.readableBytes + s.outBuffer.readableBytes)
            for (sid, entry) in s.subscriptions.sorted(by: { $0.key < $1.key }) {
                NATSClientCommand.writeSubscribe(subject: entry.subject, queue: entry.queue, sid: sid, into: &buffer)
                if let max = entry.max {
                    NATSClientCommand.writeUnsubscribe(sid: sid, max: max - entry.delivered, into: &buffer)
                }
            }
            if let inboxSID = s.inboxSID {
                NATSClientCommand.writeSubscribe(subject: "\(inboxPrefix).*", queue: nil, sid: inboxSID, into: &buffer)
            }
            buffer.writeBuffer(&s.reconnectBuffer)
            s.reconnectBuffer = channel.allocator.buffer(capacity: 0)
            buffer.writeBuffer(&s.outBuffer)
            s.outBuffer = buffer
            s.pingsOutstanding = 0
            s.status = .connected
            let schedule = !s.flushScheduled
            s.flushScheduled = true
            return schedule
        }
        infoApplied(info, server: server, discovery: discovery)
        if schedule { channel.eventLoop.execute { self.flushPending(channel: channel) } }
    }

    /// Logs and tells what an INFO of the live connection changed.
    private func infoApplied(_ info: NATSServerInfo, server: NATSServerURL, discovery: ServerPool.DiscoveryChange) {
        logDiscovery(discovery, from: server)
        guard info.lameDuckMode else { return }
        if let unlogged = state.withLock({ $0.lameDuckLog.admit(at: .now) }) {
            var metadata: Logger.Metadata = ["nats.server": "\(server)"]
            if unlogged > 0 { metadata["nats.unlogged"] = "\(unlogged)" }
            logger.info("nats.lame_duck_mode", metadata: metadata)
        }
        emit(.lameDuckMode(server: server.description))
    }

    /// Logs what a server's advertised servers changed in the list of servers to try.
    private func logDiscovery(_ change: ServerPool.DiscoveryChange, from server: NATSServerURL?) {
        guard change != .init() else { return }
        let metadata: Logger.Metadata = ["nats.server": "\(server.map(\.description) ?? "?")", "nats.servers_added": "\(change.added)",
                                         "nats.servers_removed": "\(change.removed)", "nats.servers_ignored": "\(change.ignored)"]
        if change.becameLimited {
            logger.warning("nats.advertised_servers_limited", metadata: metadata)
        } else {
            logger.debug("nats.advertised_servers_changed", metadata: metadata)
        }
    }

    /// Watches the live connection; when it drops, reconnects with backoff until closed.
    private func connectionLoop(channel firstChannel: any Channel) async {
        var channel = firstChannel
        while !Task.isCancelled {
            let pingTask = startPingTimer(channel: channel)
            try? await channel.closeFuture.get()
            pingTask.cancel()
            let lost: NATSServerURL? = disconnected(channel: channel)
            guard let lost else { return }
            emit(.disconnected(server: lost.description))
            logger.warning("nats.disconnected", metadata: ["nats.server": "\(lost)"])
            guard let next = await reconnect() else { return }
            channel = next
        }
    }

    /// Marks the connection lost; returns the server it was connected to, or nil when the
    /// client is closing.
    private func disconnected(channel: any Channel) -> NATSServerURL? {
        let (server, pongWaiters, backpressure): (NATSServerURL?, [PongWaiter], [CheckedContinuation<Void, Never>]) = state.withLock { s in
            guard s.channel === channel else { return (nil, [], []) }
            s.channel = nil
            let pongs = s.pongWaiters
            s.pongWaiters = []
            let waiters = s.backpressureWaiters
            s.backpressureWaiters = []
            s.bytesInFlight = 0
            guard s.status == .connected else { return (nil, pongs, waiters) }
            s.status = .reconnecting
            // Unsent publishes are kept for the next connection, within the bound.
            if s.outBuffer.readableBytes <= configuration.reconnectBufferSize {
                s.reconnectBuffer.writeBuffer(&s.outBuffer)
            }
            s.outBuffer.clear()
            s.flushScheduled = false
            s.pool.disconnected()
            return (s.server, pongs, waiters)
        }
        for waiter in pongWaiters { waiter.continuation?.resume(throwing: NATSError(.connectionLost, "The connection to NATS was lost before the server answered.")) }
        for waiter in backpressure { waiter.resume() }
        return server
    }

    /// Tries servers until one accepts; nil when the client closed or gave up.
    private func reconnect() async -> (any Channel)? {
        var attempts = 0
        while true {
            let next: (NATSServerURL, Duration)? = state.withLock { s in
                guard s.status == .reconnecting else { return nil }
                return s.pool.next()
            }
            guard let (server, delay) = next else { return nil }
            do {
                if delay > .zero { try await Task.sleep(for: delay) }
                let (channel, info) = try await establish(to: server)
                try install(channel: channel, info: info, server: server)
                emit(.reconnected(server: server.description))
                logger.info("nats.reconnected", metadata: ["nats.server": "\(server)"])
                return channel
            } catch is CancellationError {
                return nil
            } catch {
                attempts += 1
                logger.debug("nats.reconnect_failed", metadata: ["nats.server": "\(server)", "error": "\(error)"])
                if let max = configuration.maxReconnectAttempts, attempts >= max {
                    logger.error("nats.reconnect_gave_up", metadata: ["attempts": "\(attempts)"])
                    await close()
                    return nil
                }
                if (error as? NATSError)?.code == .closed { return nil }
            }
        }
    }

    private func startPingTimer(channel: any Channel) -> RepeatedTask {
        let interval = TimeAmount.nanoseconds(configuration.pingInterval.timeAmount)
        return channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.sendKeepalive(channel: channel)
        }
    }

    private func sendKeepalive(channel: any Channel) {
        let stale: Bool = state.withLock { s in
            guard s.channel === channel, s.status == .connected else { return false }
            if s.pingsOutstanding >= configuration.maxPingsOutstanding { return true }
            s.pingsOutstanding += 1
            s.pongWaiters.append(PongWaiter(id: 0, continuation: nil))
            NATSClientCommand.writePing(into: &s.outBuffer)
            if !s.flushScheduled {
                s.flushScheduled = true
                channel.eventLoop.execute { self.flushPending(channel: channel) }
            }
            return false
        }
        if stale {
            logger.warning("nats.stale_connection", metadata: ["nats.pings_outstanding": "\(configuration.maxPingsOutstanding)"])
            channel.close(promise: nil)
        }
    }

    /// A fatal error on an established connection (e.g. a protocol error): it is reset.
    func connectionFailed(_ error: NATSError) {
        emit(.serverError(error.message))
    }

    // MARK: Inbound

    func handle(_ op: NATSServerOp, channel: any Channel) {
        switch op {
        case .msg(let message): deliver(message)
        case .pong: pongReceived()
        case .info(let info):
            let applied: (NATSServerURL, ServerPool.DiscoveryChange)? = state.withLock { s in
                guard let live = s.channel, live === channel, let server = s.server else {
                    // Right after the handshake, before the connection is installed (or on
                    // one being replaced): `install` takes the newest.
                    s.infoBeforeInstall = (ObjectIdentifier(channel), info)
                    return nil
                }
                s.serverInfo = info
                return (server, s.pool.updateDiscovered(info.connectURLs, current: server))
            }
            if let (server, discovery) = applied { infoApplied(info, server: server, discovery: discovery) }
        case .err(let text):
            // At most one line a second: a server can send -ERR lines without end.
            if let unlogged = state.withLock({ $0.serverErrorLog.admit(at: .now) }) {
                var metadata: Logger.Metadata = ["error": "\(text)"]
                if unlogged > 0 { metadata["nats.unlogged"] = "\(unlogged)" }
                logger.warning("nats.server_error", metadata: metadata)
            }
            emit(.serverError(text))
        case .ok, .ping: break
        }
    }

    private func pongReceived() {
        let waiter: CheckedContinuation<Void, any Error>? = state.withLock { s in
            s.pingsOutstanding = 0
            return s.pongWaiters.isEmpty ? nil : s.pongWaiters.removeFirst().continuation
        }
        waiter?.resume()
    }

    private enum Delivery {
        case none
        case subscription(AsyncStream<NATSMessage>.Continuation, SubscriptionBacklog, finish: Bool, subject: String)
        case request(RequestWaiter)
    }

    private func deliver(_ message: NATSMessage) {
        let delivery: Delivery = state.withLock { s in
            if message.sid == s.inboxSID {
                let prefixCount = inboxPrefix.utf8.count + 1
                guard message.subject.utf8.count > prefixCount,
                      let id = UInt64(String(decoding: message.subject.utf8.dropFirst(prefixCount), as: UTF8.self)),
                      let waiter = s.pendingRequests.removeValue(forKey: id) else { return .none }
                return .request(waiter)
            }
            guard var entry = s.subscriptions[message.sid] else { return .none }
            entry.delivered += 1
            let finish = entry.max.map { entry.delivered >= $0 } ?? false
            if finish { s.subscriptions.removeValue(forKey: message.sid) } else { s.subscriptions[message.sid] = entry }
            return .subscription(entry.continuation, entry.backlog, finish: finish, subject: entry.subject)
        }
        switch delivery {
        case .none: break
        case .request(let waiter):
            if message.status == 503 {
                waiter.continuation.resume(throwing: NATSError(.noResponders, "Nobody is subscribed to the request's subject (NATS 503 no responders)."))
            } else {
                waiter.continuation.resume(returning: message)
            }
        case .subscription(let continuation, let backlog, let finish, let subject):
            // Room in bytes first, then in messages; a message that finds neither is dropped.
            let size = SubscriptionBacklog.size(of: message)
            var dropped = true
            if backlog.reserve(size) {
                switch continuation.yield(message) {
                case .enqueued: dropped = false
                case .dropped: backlog.release(size)
                case .terminated: backlog.release(size); dropped = false
                @unknown default: dropped = false
                }
            }
            if dropped {
                let count: Int = state.withLock { s in
                    guard var entry = s.subscriptions[message.sid] else { return 0 }
                    entry.dropped += 1
                    s.subscriptions[message.sid] = entry
                    return entry.dropped
                }
                if count == 1 || count % 1000 == 0 {
                    logger.warning("nats.slow_consumer", metadata: ["nats.subject": "\(subject)", "nats.sid": "\(message.sid)", "nats.dropped": "\(count)"])
                    emit(.slowConsumer(subject: subject, sid: message.sid, dropped: count))
                }
            }
            if finish { continuation.finish() }
        }
    }

    // MARK: Outbound

    /// Appends a command to the outgoing buffer (or the reconnect buffer while disconnected).
    /// Returns true when the caller should wait for backpressure to ease.
    @discardableResult
    func enqueue(size: Int, _ write: (inout ByteBuffer) -> Void) throws(NATSError) -> Bool {
        let (channel, overHighWater) = try state.withLock { s throws(NATSError) in
            try enqueueLocked(&s, size: size, write)
        }
        if let channel { channel.eventLoop.execute { self.flushPending(channel: channel) } }
        return overHighWater
    }

    /// `enqueue` for callers that already hold the lock; the returned channel (if any) must
    /// get a `flushPending` scheduled once the lock is released.
    func enqueueLocked(_ s: inout State, size: Int, _ write: (inout ByteBuffer) -> Void) throws(NATSError) -> ((any Channel)?, Bool) {
        switch s.status {
        case .connected:
            write(&s.outBuffer)
            let over = s.outBuffer.readableBytes + s.bytesInFlight > Self.highWaterMark
            if !s.flushScheduled {
                s.flushScheduled = true
                return (s.channel, over)
            }
            return (nil, over)
        case .idle, .connecting, .reconnecting:
            guard s.reconnectBuffer.readableBytes + size <= configuration.reconnectBufferSize else {
                throw NATSError(.reconnectBufferFull, "Not connected to NATS and the reconnect buffer (\(configuration.reconnectBufferSize) bytes) is full; the message was not sent.")
            }
            write(&s.reconnectBuffer)
            return (nil, false)
        case .draining, .closed:
            throw NATSError(.closed, "The NATS client is closed; nothing more can be sent.")
        }
    }

    static func checkPayloadSize(_ size: Int, _ s: State) throws(NATSError) {
        let limit = s.serverInfo?.maxPayload ?? 1_048_576
        if size > limit {
            throw NATSError(.payloadTooLarge, "The message of \(size) bytes exceeds the server's max_payload of \(limit) bytes.")
        }
    }

    func flushPending(channel: any Channel) {
        let buffer: ByteBuffer? = state.withLock { s in
            s.flushScheduled = false
            guard s.channel === channel, s.outBuffer.readableBytes > 0 else { return nil }
            let buffer = s.outBuffer
            s.outBuffer = channel.allocator.buffer(capacity: max(64 * 1024, min(buffer.capacity, 1 << 20)))
            s.bytesInFlight += buffer.readableBytes
            return buffer
        }
        guard let buffer else { return }
        let size = buffer.readableBytes
        channel.writeAndFlush(buffer).whenComplete { [weak self] _ in
            self?.written(size)
        }
    }

    private func written(_ size: Int) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.bytesInFlight = max(0, s.bytesInFlight - size)
            guard s.outBuffer.readableBytes + s.bytesInFlight <= Self.lowWaterMark, !s.backpressureWaiters.isEmpty else { return [] }
            let w = s.backpressureWaiters
            s.backpressureWaiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Suspends while too much is queued for the socket.
    func waitForBackpressure() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s in
                if s.status != .connected || s.outBuffer.readableBytes + s.bytesInFlight <= Self.lowWaterMark { return true }
                s.backpressureWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

}

/// Wraps a non-Sendable error as a Sendable cause.
struct NATSErrorCause: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ error: any Error) { description = String(describing: error) }
}
