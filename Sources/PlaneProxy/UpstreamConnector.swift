import NIOCore

/// Where a `ProxyHandler` gets its connections to backends: the seam between the
/// connection's protocol and the sockets. The real one is the event loop's `UpstreamPool`
/// (kept-alive connections, `ClientBootstrap` for new ones); tests hand out
/// `EmbeddedChannel`s, so the handler runs without a socket.
///
/// Every connection carries an `UpstreamHandler`. A `hint` is the caller's to keep between
/// calls (the pool's bucket for the last address: the next request to the same backend
/// finds it without hashing the address); a connector may ignore it.
protocol UpstreamConnector: AnyObject {
    var eventLoop: any EventLoop { get }

    /// A kept-alive connection to `address`, if an open one is idle.
    func take(_ address: String, hint: inout UpstreamPool.Bucket?, now: NIODeadline) -> UpstreamHandler?

    /// Parks a connection after a complete exchange (or closes it if it cannot be kept).
    func park(_ upstream: UpstreamHandler, address: String, hint: inout UpstreamPool.Bucket?, now: NIODeadline)

    /// Opens a new connection to `address`.
    func connect(_ address: String, timeout: TimeAmount) -> EventLoopFuture<UpstreamHandler>
}

extension UpstreamPool: UpstreamConnector {
    func take(_ address: String, hint: inout Bucket?, now: NIODeadline) -> UpstreamHandler? {
        let bucket = bucket(for: address, cached: hint)
        hint = bucket
        return take(from: bucket, now: now)
    }

    func park(_ upstream: UpstreamHandler, address: String, hint: inout Bucket?, now: NIODeadline) {
        let bucket = bucket(for: address, cached: hint)
        hint = bucket
        give(upstream, to: bucket, now: now)
    }

    func connect(_ address: String, timeout: TimeAmount) -> EventLoopFuture<UpstreamHandler> {
        connectChannel(address, timeout: timeout).flatMapThrowing { channel in
            do {
                return try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            } catch {
                channel.close(promise: nil)
                throw error
            }
        }
    }
}
