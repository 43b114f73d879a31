import NIOCore
import NIOPosix
import Synchronization

/// A tiny scripted NATS server on 127.0.0.1 for faults a real nats-server will not produce:
/// it completes the handshake, then misbehaves as told.
final class ScriptedNATSServer: Sendable {
    enum Behaviour: Sendable {
        /// Answers the handshake, then ignores every PING (a silently dead peer).
        case silentAfterHandshake
        /// Answers the handshake, then sends bytes that are not the NATS protocol.
        case garbageAfterHandshake
        /// Advertises `first` as its cluster's servers (`connect_urls`) in the handshake's
        /// INFO; right after its PONG, `then` in an asynchronous INFO; then closes the
        /// connection.
        case advertisesThenCloses(first: [String], then: [String])
        /// Answers the handshake, then sends `count` `-ERR` lines (of permission violations,
        /// which do not close a connection), then an INFO announcing lame duck mode.
        case errorsAfterHandshake(count: Int)
    }

    final class Counter: Sendable {
        let value = Mutex(0)
    }

    let channel: any Channel
    private let counter = Counter()
    var port: Int { channel.localAddress!.port! }
    var connections: Int { counter.value.withLock { $0 } }

    init(_ behaviour: Behaviour) async throws {
        let counter = self.counter
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                counter.value.withLock { $0 += 1 }
                return child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(Handler(behaviour: behaviour))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let behaviour: Behaviour
        var received = ""
        var handshakeDone = false

        init(behaviour: Behaviour) { self.behaviour = behaviour }

        static func info(connectURLs: [String] = []) -> String {
            let urls = connectURLs.isEmpty ? "" : #","connect_urls":["# + connectURLs.map { "\"\($0)\"" }.joined(separator: ",") + "]"
            return #"INFO {"server_id":"SCRIPTED","version":"2.9.10","headers":true,"max_payload":1048576"# + urls + "}\r\n"
        }

        func channelActive(context: ChannelHandlerContext) {
            var advertised: [String] = []
            if case .advertisesThenCloses(let first, _) = behaviour { advertised = first }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: Self.info(connectURLs: advertised))), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            guard !handshakeDone, received.contains("CONNECT"), received.contains("PING\r\n") else { return }
            handshakeDone = true
            var pong = "PONG\r\n"
            // Right behind the PONG, in the same write, as nats-server sends an INFO when its
            // cluster changes then: it arrives before the client has made the connection its
            // live one.
            if case .advertisesThenCloses(_, let then) = behaviour { pong += Self.info(connectURLs: then) }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: pong)), promise: nil)
            let channel = context.channel
            switch behaviour {
            case .garbageAfterHandshake:
                channel.eventLoop.scheduleTask(in: .milliseconds(50)) {
                    channel.writeAndFlush(ByteBuffer(string: "GARBAGE NOT NATS\r\n"), promise: nil)
                }
            case .advertisesThenCloses:
                channel.eventLoop.scheduleTask(in: .milliseconds(300)) { channel.close(promise: nil) }
            case .errorsAfterHandshake(let count):
                var burst = ByteBuffer()
                for index in 0..<count { burst.writeString("-ERR 'Permissions Violation for Publish to \"x.\(index)\"'\r\n") }
                burst.writeString(#"INFO {"server_id":"SCRIPTED","version":"2.9.10","headers":true,"max_payload":1048576,"ldm":true}"# + "\r\n")
                channel.writeAndFlush(burst, promise: nil)
            case .silentAfterHandshake:
                break
            }
        }
    }
}
