import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PlaneHTTPServer
import ServiceLifecycle
import Synchronization

/// `[metrics]` in `drone.toml`.
public struct MetricsEndpointConfiguration: Sendable, Hashable {
    public var bindHost = "127.0.0.1"
    public var port = 9090
    public init() {}
}

/// A small HTTP listener that answers `GET /metrics` with the Prometheus text a renderer
/// produces (and `GET /healthz` with `ok`); everything else is 404. A `Service`.
public final class MetricsEndpoint: Service, Sendable {
    public let configuration: MetricsEndpointConfiguration
    private let render: @Sendable () async -> String
    private let logger: Logger
    private let channel = Mutex<(any Channel)?>(nil)
    /// Scrapers are few: connections beyond this are closed at once, and one that sends no
    /// whole request within `requestTimeout` is closed.
    let connections = ConnectionLimit(limit: 64)
    static let requestTimeout = TimeAmount.seconds(30)

    public init(configuration: MetricsEndpointConfiguration, logger: Logger, render: @escaping @Sendable () async -> String) {
        self.configuration = configuration
        self.logger = logger
        self.render = render
    }

    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    public func start() async throws {
        guard channel.withLock({ $0 == nil }) else { return }
        let render = self.render
        let connections = self.connections
        let bound: any Channel
        do {
            bound = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard connections.admit() else {
                            channel.close(promise: nil)
                            return
                        }
                        channel.closeFuture.whenComplete { _ in connections.release() }
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(limit: Self.requestTimeout))
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render))
                    }
                }
                .bind(host: configuration.bindHost, port: configuration.port).get()
        } catch {
            throw ProxyError(.bindFailed, "The metrics endpoint cannot listen on \(configuration.bindHost):\(configuration.port); change [metrics] port.", cause: error)
        }
        channel.withLock { $0 = bound }
        logger.info("metrics.listening", metadata: ["address": "\(configuration.bindHost):\(bound.localAddress?.port ?? configuration.port)"])
    }

    public func run() async throws {
        try await start()
        guard let bound = channel.withLock({ $0 }) else { return }
        await withGracefulShutdownHandler {
            try? await bound.closeFuture.get()
        } onGracefulShutdown: {
            bound.close(promise: nil)
        }
    }

    public func stop() async {
        if let bound = channel.withLock({ $0 }) { try? await bound.close() }
    }
}

final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    private let render: @Sendable () async -> String
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () async -> String) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?").first.map(String.init) ?? "/"
            let keepAlive = head.isKeepAlive
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            switch (head.method, path) {
            case (.GET, "/metrics"):
                let render = self.render
                let promise = loop.makePromise(of: String.self)
                promise.completeWithTask { await render() }
                promise.futureResult.whenSuccess { text in
                    let (handler, context) = bound.value
                    handler.respond(.ok, text, contentType: "text/plain; version=0.0.4", keepAlive: keepAlive, context: context)
                }
            case (.GET, "/healthz"):
                respond(.ok, "ok\n", contentType: "text/plain", keepAlive: keepAlive, context: context)
            default:
                respond(.notFound, "", contentType: "text/plain", keepAlive: keepAlive, context: context)
            }
        }
    }

    /// Bytes that are not HTTP: answered 400 by NIO's error handler, closed here.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func respond(_ status: HTTPResponseStatus, _ body: String, contentType: String, keepAlive: Bool, context: ChannelHandlerContext) {
        SimpleHTTPResponse.write(status, body: body, contentType: contentType, keepAlive: keepAlive, context: context)
    }
}
