import NIOCore
import NIOPosix

/// Keep-alive connections to backends, one pool per event loop (a client connection and
/// its upstream connection always share a loop, so a request never changes threads), at
/// most `maxIdle` idle connections per backend address; an idle connection closes after
/// `idleLifetime` or when the backend closes it.
final class UpstreamPool: @unchecked Sendable {
    // Confined to `eventLoop`: every method asserts it.
    let eventLoop: any EventLoop
    private let maxIdle: Int
    private let idleLifetime: TimeAmount
    private var idle: [String: Bucket] = [:]
    private var sweeper: RepeatedTask?

    private let maxHeadBytes: Int
    private let maxHeaderCount: Int

    struct IdleConnection {
        var handler: UpstreamHandler
        var since: NIODeadline
    }

    /// The idle connections to one address. A client connection keeps the bucket of its
    /// last request (`bucket(for:cached:)`), so that the next request to the same backend
    /// finds it without hashing the address.
    final class Bucket: @unchecked Sendable {
        // Confined to the pool's event loop, as the pool is.
        let address: String
        fileprivate(set) var connections: [IdleConnection] = []
        /// Taken out of the pool (the sweeper found it empty): a kept reference is stale.
        fileprivate(set) var retired = false

        init(address: String) {
            self.address = address
        }
    }

    private let sweepInterval: TimeAmount

    /// - Parameter sweepInterval: how often idle connections past `idleLifetime` are closed
    ///   (default: half the lifetime); `take` never hands out one past it either.
    init(eventLoop: any EventLoop, maxIdle: Int, maxHeadBytes: Int, maxHeaderCount: Int = 100, idleLifetime: TimeAmount = .seconds(30), sweepInterval: TimeAmount? = nil) {
        self.maxHeaderCount = maxHeaderCount
        self.eventLoop = eventLoop
        self.maxIdle = maxIdle
        self.maxHeadBytes = maxHeadBytes
        self.idleLifetime = idleLifetime
        self.sweepInterval = sweepInterval ?? .nanoseconds(idleLifetime.nanoseconds / 2)
    }

    /// Closes connections idle for longer than `idleLifetime`; one repeated task per pool
    /// instead of a timer per returned connection, running only while the pool holds
    /// connections. It holds the pool strongly: a weak reference would give the pool a
    /// side table, and every retain and release of it (one each per request) would take
    /// the runtime's slow path.
    private func startSweeping() {
        guard sweeper == nil else { return }
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: max(idleLifetime, sweepInterval), delay: sweepInterval) { task in
            self.sweep()
            if self.idle.isEmpty {
                task.cancel()
                self.sweeper = nil
            }
        }
    }

    /// Closes the connections idle past their lifetime; an emptied bucket leaves the pool.
    private func sweep() {
        let cutoff = NIODeadline.now() - idleLifetime
        for (address, bucket) in idle {
            let stale = bucket.connections.filter { $0.since < cutoff }
            bucket.connections.removeAll { $0.since < cutoff }
            if bucket.connections.isEmpty {
                bucket.retired = true
                idle[address] = nil
            }
            // After the list changed: a close reports back into `drop`.
            for connection in stale { connection.handler.close() }
        }
    }

    /// The bucket for `address`: `cached` if it is still this pool's bucket for it. A new
    /// bucket starts the sweeper, which removes it once it is empty: a backend that never
    /// got a connection back (it refused them all, or it is gone) leaves no bucket behind.
    func bucket(for address: String, cached: Bucket? = nil) -> Bucket {
        if let cached, !cached.retired, cached.address == address { return cached }
        if let bucket = idle[address] { return bucket }
        let bucket = Bucket(address: address)
        idle[address] = bucket
        startSweeping()
        return bucket
    }

    /// An idle connection from the bucket, if one is still open.
    func take(from bucket: Bucket, now: NIODeadline) -> UpstreamHandler? {
        eventLoop.preconditionInEventLoop()
        let cutoff = now - idleLifetime
        // In place: a copy of the list per request would cost more than the request. An
        // emptied bucket stays until the sweeper passes. Stale connections close only
        // after the list is let go of: a close reports back into `drop`.
        var stale: [UpstreamHandler] = []
        let handler = Self.popUsable(&bucket.connections, cutoff: cutoff, stale: &stale)
        for handler in stale { handler.close() }
        return handler
    }

    private static func popUsable(_ list: inout [IdleConnection], cutoff: NIODeadline, stale: inout [UpstreamHandler]) -> UpstreamHandler? {
        while let last = list.popLast() {
            if last.handler.isActive, last.since >= cutoff { return last.handler }
            stale.append(last.handler)
        }
        return nil
    }

    /// Returns a connection after a complete exchange to the bucket it was taken for
    /// (`bucket(for:cached:)`); closes it when the bucket is full.
    func give(_ handler: UpstreamHandler, to bucket: Bucket, now: NIODeadline) {
        eventLoop.preconditionInEventLoop()
        handler.owner = nil
        guard handler.isActive, handler.reusable, !bucket.retired, Self.park(IdleConnection(handler: handler, since: now), in: &bucket.connections, max: maxIdle) else {
            handler.close()
            return
        }
        startSweeping()
        handler.parked(in: self, bucket: bucket)
    }

    private static func park(_ connection: IdleConnection, in list: inout [IdleConnection], max: Int) -> Bool {
        guard list.count < max else { return false }
        list.append(connection)
        return true
    }

    /// Forgets an idle connection (it closed).
    func drop(_ handler: UpstreamHandler, from bucket: Bucket) {
        eventLoop.preconditionInEventLoop()
        guard let index = bucket.connections.firstIndex(where: { $0.handler === handler }) else { return }
        bucket.connections.remove(at: index)
    }

    /// Closes every idle connection (shutdown).
    func closeAll() {
        eventLoop.preconditionInEventLoop()
        let buckets = idle.values
        idle = [:]
        for bucket in buckets {
            bucket.retired = true
            let connections = bucket.connections
            bucket.connections = []
            for connection in connections { connection.handler.close() }
        }
        sweeper?.cancel()
        sweeper = nil
    }

    /// Opens a new connection to `address` on this pool's loop, with an `UpstreamHandler`.
    func connectChannel(_ address: String, timeout: TimeAmount) -> EventLoopFuture<any Channel> {
        let maxHeadBytes = self.maxHeadBytes
        let maxHeaderCount = self.maxHeaderCount
        guard let (host, port) = Self.split(address) else {
            return eventLoop.makeFailedFuture(ProxyError(.upstreamUnreachable, "The backend address '\(address)' is not host:port."))
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(maxHeadBytes: maxHeadBytes, maxHeaderCount: maxHeaderCount))
                }
            }
            .connect(host: host, port: port)
    }

    /// `host:port` or `[v6]:port`.
    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }
}

/// One pool per event loop of the proxy's group.
final class UpstreamPools: Sendable {
    private let pools = PerEventLoop<UpstreamPool>()
    private let maxIdle: Int
    private let maxHeadBytes: Int
    private let maxHeaderCount: Int

    init(maxIdle: Int, maxHeadBytes: Int, maxHeaderCount: Int = 100) {
        self.maxHeaderCount = maxHeaderCount
        self.maxIdle = maxIdle
        self.maxHeadBytes = maxHeadBytes
    }

    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        pools.value(for: eventLoop) { UpstreamPool(eventLoop: $0, maxIdle: maxIdle, maxHeadBytes: maxHeadBytes, maxHeaderCount: maxHeaderCount) }
    }

    func closeAll() {
        for pool in pools.values {
            pool.eventLoop.execute { pool.closeAll() }
        }
    }
}
