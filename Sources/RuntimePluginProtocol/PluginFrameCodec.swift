import PlaneCore
import NIOCore

/// Frames on a NIO channel: bytes in, one decoded message (or why not) per frame out. A
/// frame whose JSON is not a message is passed on as a failure (the framing is intact, so
/// the connection can go on); an oversized length prefix is a channel error (it cannot).
public struct PluginFrameToMessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Result<PluginMessage, PluginProtocolError>

    /// The framing itself, the pure state machine the protocol's unit tests feed byte by byte.
    private var frames = PluginFrameDecoder()

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let bytes = buffer.readBytes(length: buffer.readableBytes), !bytes.isEmpty { frames.feed(bytes) }
        // Every complete frame now: NIO calls again only when more bytes arrive.
        while let payload = try frames.next() {
            let message = Result { () throws(PluginProtocolError) -> PluginMessage in try PluginMessage.decode(payload) }
            context.fireChannelRead(wrapInboundOut(message))
        }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Writes each `PluginMessage` as one frame.
public struct PluginMessageToFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = PluginMessage

    public init() {}

    public func encode(data: PluginMessage, out: inout ByteBuffer) throws {
        let payload = JSONWriter.write(data.json)
        out.writeInteger(UInt32(payload.count))
        out.writeBytes(payload)
    }
}
