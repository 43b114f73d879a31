import Logging
import NIOCore
import NIOEmbedded
import PlaneCore
@testable import PlaneProxy

/// The proxy's connection handling as a hostile client and hostile backends can drive it:
/// `ProxyHandler` (so `ProxyConnectionStateMachine`) on embedded channels, fed a client's
/// bytes and backends' bytes in any chunking, interleaved with closes, half-closes, stalled
/// writes, failed connects, a backend becoming Ready or going away, and time passing (the
/// header, response and hold timers). It must never trap (the handler's own assertions
/// included), and once every connection has closed no exchange and no upgraded connection
/// may still count as open: a leak there would keep a backend from ever being swept.
enum ProxyExchangeFuzzTarget {
    /// The input: a script of steps, the client's bytes and the backends' bytes, split at
    /// the first two NUL bytes. Each step byte: its low three bits say what happens, the
    /// other five how much.
    static let exchange = FuzzTarget("proxy-exchange", "ProxyHandler on embedded channels driven by a client and backends sending, closing and stalling in any order, with time passing: never traps; once all is closed no exchange or upgraded connection counts as open.") { raw in
        var input = FuzzInput(raw)
        let parts = FuzzInput.parts(input.rest(), 3)
        var run = Run()
        var clientBytes = parts[1][...]
        var backendBytes = parts[2][...]
        for step in parts[0].prefix(256) {
            let amount = Int(step >> 3)
            switch step & 7 {
            case 0: run.clientSends(take(&clientBytes, 1 + amount * 4))
            case 1: run.backendSends(take(&backendBytes, 1 + amount * 16))
            case 2: run.backendCloses(halfway: amount & 1 == 1)
            case 3: run.clientCloses(halfway: amount & 1 == 1)
            case 4: run.loop.advanceTime(by: .milliseconds(Int64(amount) * 500))
            case 5: run.writability(ofClient: amount & 1 == 0, writable: amount & 2 == 0)
            case 6: run.connector.failConnects = amount & 1 == 1 ? ProxyError(.upstreamUnreachable, "refused") : nil
            default: run.routesChange(amount)
            }
            run.settle()
        }
        run.closeEverything()
        let idle = run.routes.idleTime(of: "foobar", now: .now + .seconds(3600))
        FuzzTarget.require(idle != .zero, "an exchange still counts as open after every connection closed")
        let startingIdle = run.routes.idleTime(of: "starting", now: .now + .seconds(3600))
        FuzzTarget.require(startingIdle != .zero, "an exchange still counts as open after every connection closed")
        FuzzTarget.require(run.metrics.openUpgradedConnections == 0, "an upgraded connection still counts as open after every connection closed")
    }

    private static func take(_ bytes: inout ArraySlice<UInt8>, _ count: Int) -> ArraySlice<UInt8> {
        let piece = bytes.prefix(count)
        bytes = bytes.dropFirst(piece.count)
        return piece
    }

    /// One client connection to a proxy whose route table has `foobar` (Ready, no token)
    /// and `starting` (starting, token `secret`).
    private struct Run {
        let loop = EmbeddedEventLoop()
        let connector: EmbeddedUpstreamConnector
        let client: EmbeddedChannel
        let routes = RouteTable(maxHeldRequests: 4)
        let metrics = ProxyMetrics()

        init() {
            connector = EmbeddedUpstreamConnector(loop: loop)
            client = EmbeddedChannel(loop: loop)
            var configuration = ProxyConfiguration()
            configuration.upstreamResponseTimeout = .seconds(4)
            configuration.headerReadTimeout = .seconds(3)
            configuration.idleTimeout = .seconds(6)
            configuration.holdWhileStarting = .seconds(2)
            configuration.maxHeaderBytes = 2048
            configuration.maxHeaderCount = 16
            configuration.allowPathRouting = true
            routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:9", bearerToken: nil))
            routes.starting("starting", bearerToken: "secret")
            let shared = ProxyContext(router: ProxyRouter(cluster: "plane.test", allowPathRouting: true), routes: routes, configuration: configuration,
                                      metrics: metrics, pools: UpstreamPools(maxIdle: 1, maxHeadBytes: 1024), logger: Logger(label: "fuzz.proxy"), scheme: "https")
            do {
                try client.pipeline.syncOperations.addHandler(ProxyHandler(shared: shared, connector: connector))
                try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
            } catch {
                FuzzTarget.require(false, "the embedded client could not be set up: \(error)")
            }
        }

        /// The backend connection the proxy talks to now (the newest open one).
        private var backend: EmbeddedChannel? { connector.opened.last { $0.isActive } }

        func clientSends(_ bytes: ArraySlice<UInt8>) {
            guard client.isActive, !bytes.isEmpty else { return }
            _ = try? client.writeInbound(ByteBuffer(bytes: bytes))
            client.pipeline.fireChannelReadComplete()
        }

        func backendSends(_ bytes: ArraySlice<UInt8>) {
            guard let backend, !bytes.isEmpty else { return }
            _ = try? backend.writeInbound(ByteBuffer(bytes: bytes))
            backend.pipeline.fireChannelReadComplete()
        }

        /// The backend's side ends its output (half-close) or goes away.
        func backendCloses(halfway: Bool) {
            guard let backend else { return }
            if halfway {
                backend.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            } else {
                try? backend.close().wait()
            }
        }

        func clientCloses(halfway: Bool) {
            guard client.isActive else { return }
            if halfway {
                client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            } else {
                try? client.close().wait()
            }
        }

        func writability(ofClient: Bool, writable: Bool) {
            let channel = ofClient ? client : backend
            guard let channel, channel.isActive, channel.isWritable != writable else { return }
            channel.isWritable = writable
            channel.pipeline.fireChannelWritabilityChanged()
        }

        /// `starting` becomes Ready or ends; `foobar` ends or comes back.
        func routesChange(_ amount: Int) {
            switch amount & 3 {
            case 0: routes.add(RouteTable.Route(backendID: "starting", address: "127.0.0.1:9", bearerToken: "secret"))
            case 1: routes.remove("starting")
            case 2: routes.remove("foobar")
            default: routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:9", bearerToken: nil))
            }
        }

        /// Runs what is due and drops what the proxy wrote (as sockets would take it).
        func settle() {
            loop.run()
            while (try? client.readOutbound(as: ByteBuffer.self)) != nil {}
            for channel in connector.opened {
                while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
            }
        }

        func closeEverything() {
            if client.isActive { try? client.close().wait() }
            for channel in connector.opened where channel.isActive { try? channel.close().wait() }
            settle()
            loop.advanceTime(by: .seconds(3600))
            settle()
        }
    }
}
