import NIOCore

/// First on the TLS listener's connections, for their first bytes only: a TLS client's
/// first record is a handshake (content type 22), and the handler steps aside for the TLS
/// handler behind it. A client that speaks plain HTTP to the TLS port (`http://host:443`)
/// gets a `400` that says so and a close, as nginx answers, instead of a TLS alert its
/// HTTP parser cannot read; other bytes get a close. Everything read before the decision
/// (the first read) goes on to the TLS handler unchanged.
final class PlainHTTPOnTLSPortHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the first byte of a connection says it speaks.
    enum FirstByte: Equatable {
        /// A TLS handshake record.
        case tls
        /// An upper-case letter: the start of an HTTP method.
        case plainHTTP
        case other

        init(_ byte: UInt8) {
            switch byte {
            case 0x16: self = .tls
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): self = .plainHTTP
            default: self = .other
            }
        }
    }

    static let answer: String = {
        let body = "This port speaks HTTPS: send the request over TLS.\r\n"
        return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
    }()

    private enum State {
        case undecided, passing, refused
    }
    private var state = State.undecided

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .passing:
            context.fireChannelRead(data)
            return
        case .refused:
            return
        case .undecided:
            break
        }
        let bytes = unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        switch FirstByte(first) {
        case .tls:
            state = .passing
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .plainHTTP:
            state = .refused
            let answer = context.channel.allocator.buffer(string: Self.answer)
            context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .other:
            state = .refused
            context.close(promise: nil)
        }
    }
}
