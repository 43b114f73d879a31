import Foundation
import Logging
import NIOCore
import NIOSSL

/// What a connection attempt needs to complete the NATS handshake.
struct NATSHandshake: Sendable {
    let server: NATSServerURL
    let connectPayload: @Sendable (NATSServerInfo) -> [UInt8]
    let tlsContext: NIOSSLContext?
    let tlsRequiredByClient: Bool
    let promise: EventLoopPromise<NATSServerInfo>
}

/// The NIO edge of a NATS connection: feeds bytes to `NATSProtocolParser`, runs the
/// INFO → (TLS) → CONNECT → PING/PONG handshake, then hands operations to the client.
final class NATSChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase { case awaitingInfo, awaitingPong, established, failed }

    private var parser = NATSProtocolParser()
    private var phase = Phase.awaitingInfo
    private var info: NATSServerInfo?
    private let handshake: NATSHandshake
    private weak var client: NATSClient?

    init(handshake: NATSHandshake, client: NATSClient) {
        self.handshake = handshake
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.feed(unwrapInboundIn(data))
        do {
            while let op = try parser.next() {
                handle(op, context: context)
                if phase == .failed { return }
            }
        } catch {
            client?.logger.warning("nats.protocol_error", metadata: ["nats.server": "\(handshake.server)", "error": "\(error)"])
            fail(error, context: context)
        }
    }

    private func handle(_ op: NATSServerOp, context: ChannelHandlerContext) {
        switch (phase, op) {
        case (_, .ping):
            var buffer = context.channel.allocator.buffer(capacity: 6)
            NATSClientCommand.writePong(into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        case (.awaitingInfo, .info(let info)):
            startSession(info: info, context: context)
        case (.awaitingInfo, _):
            fail(NATSError(.protocolError, "The server at \(handshake.server) did not start with INFO; is it a NATS server?"), context: context)
        case (.awaitingPong, .pong):
            phase = .established
            handshake.promise.succeed(info!)
        case (.awaitingPong, .err(let text)):
            fail(Self.error(fromServer: text, server: handshake.server), context: context)
        case (.awaitingPong, .info(let info)):
            self.info = info
        case (.awaitingPong, _):
            break
        case (.established, _):
            client?.handle(op, channel: context.channel)
        case (.failed, _):
            break
        }
    }

    private func startSession(info: NATSServerInfo, context: ChannelHandlerContext) {
        self.info = info
        let wantTLS = handshake.server.requiresTLS || handshake.tlsRequiredByClient || info.tlsRequired
        if wantTLS {
            guard info.tlsRequired || info.tlsAvailable else {
                fail(NATSError(.tlsFailed, "TLS is required for \(handshake.server) but the server does not offer it; enable TLS in nats-server or drop the TLS requirement."), context: context)
                return
            }
            do {
                let tlsContext = try handshake.tlsContext ?? NIOSSLContext(configuration: .makeClientConfiguration())
                let sslHandler = try NIOSSLClientHandler(context: tlsContext, serverHostname: handshake.server.tlsServerName)
                try context.pipeline.syncOperations.addHandler(sslHandler, position: .first)
            } catch {
                fail(NATSError(.tlsFailed, "Could not start TLS with \(handshake.server).", cause: error), context: context)
                return
            }
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        NATSClientCommand.writeConnect(handshake.connectPayload(info), into: &buffer)
        NATSClientCommand.writePing(into: &buffer)
        phase = .awaitingPong
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    static func error(fromServer text: String, server: NATSServerURL) -> NATSError {
        let lower = text.lowercased()
        if lower.contains("authorization") || lower.contains("authentication") || lower.contains("user") && lower.contains("password") {
            return NATSError(.authorizationFailed, "The NATS server at \(server) refused the credentials ('\(text)'); check the token or user and password.")
        }
        return NATSError(.serverError, "The NATS server at \(server) reported an error: '\(text)'.")
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        if phase == .awaitingInfo || phase == .awaitingPong {
            handshake.promise.fail(error)
        } else if phase == .established, let natsError = error as? NATSError {
            client?.connectionFailed(natsError)
        }
        phase = .failed
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let wrapped: NATSError
        if let e = error as? NATSError {
            wrapped = e
        } else if error is NIOSSLError || String(describing: type(of: error)).contains("SSL") {
            wrapped = NATSError(.tlsFailed, "TLS with \(handshake.server) failed; check that the server certificate is signed by the configured CA and names this host.", cause: error)
        } else {
            wrapped = NATSError(.connectionLost, "The connection to \(handshake.server) failed.", cause: error)
        }
        fail(wrapped, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if phase == .awaitingInfo || phase == .awaitingPong {
            phase = .failed
            handshake.promise.fail(NATSError(.connectionFailed, "The server at \(handshake.server) closed the connection during the handshake."))
        }
        context.fireChannelInactive()
    }
}
