import NIOCore
import NIOEmbedded
@testable import PlaneProxy
import PlaneTestSupport

/// Hands out `EmbeddedChannel`s with an `UpstreamHandler` as backend connections, and keeps
/// parked ones in a list: the proxy's handler runs without a socket (the `proxy-exchange`
/// fuzz target and `ProxyHandlerTests` in PlaneProxyTests).
final class EmbeddedUpstreamConnector: UpstreamConnector {
    let loop: EmbeddedEventLoop
    var eventLoop: any EventLoop { loop }
    /// Every connection opened, oldest first.
    private(set) var opened: [EmbeddedChannel] = []
    private(set) var parked: [UpstreamHandler] = []
    /// The next connects fail with this.
    var failConnects: (any Error)?

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func take(_ address: String, hint: inout UpstreamPool.Bucket?, now: NIODeadline) -> UpstreamHandler? {
        parked.popLast()
    }

    func park(_ upstream: UpstreamHandler, address: String, hint: inout UpstreamPool.Bucket?, now: NIODeadline) {
        upstream.owner = nil
        parked.append(upstream)
    }

    func connect(_ address: String, timeout: TimeAmount) -> EventLoopFuture<UpstreamHandler> {
        if let failConnects {
            // As a socket's: later, not within the request's own read.
            let promise = loop.makePromise(of: UpstreamHandler.self)
            loop.assumeIsolated().execute { promise.fail(failConnects) }
            return promise.futureResult
        }
        let handler = UpstreamHandler(maxHeadBytes: 16 * 1024)
        let channel = EmbeddedChannel(loop: loop)
        do {
            try channel.pipeline.syncOperations.addHandler(ReadCounter())
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        } catch {
            return loop.makeFailedFuture(error)
        }
        opened.append(channel)
        let promise = loop.makePromise(of: UpstreamHandler.self)
        promise.assumeIsolated().succeed(handler)
        return promise.futureResult
    }
}
