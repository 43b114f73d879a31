import NIOCore

/// Counts the reads asked of a channel (they pass through it towards the socket): a handler
/// test puts it in front of the handler under test to see whether that handler lets a read
/// through or holds it (backpressure).
public final class ReadCounter: ChannelOutboundHandler {
    public typealias OutboundIn = ByteBuffer
    public private(set) var reads = 0

    public init() {}

    public func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}
