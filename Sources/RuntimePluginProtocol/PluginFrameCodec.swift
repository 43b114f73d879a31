import PlaneCore
import NIOCore

/// Frames on a NIO channel: bytes in, one `PluginFrameDecoder.Output` per frame out. A
/// frame whose JSON is not a message is passed on as a failure (the framing is intact, so
/// the connection can go on); an oversized length prefix is a channel error (it cannot).
public struct PluginFrameToMessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Result<PluginMessage, PluginProtocolError>

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= PluginFrame.maximumLength else {
            throw PluginProtocolError(.frameTooLong, "A frame announces \(length) bytes; the limit is \(PluginFrame.maximumLength).")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let payload = buffer.readBytes(length: Int(length)) ?? []
        let message = Result { () throws(PluginProtocolError) -> PluginMessage in try PluginMessage.decode(payload) }
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
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
