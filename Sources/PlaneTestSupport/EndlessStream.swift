import NIOCore

/// A peer that sends the same message over and over, read in pieces of one size: the
/// reads of a connection that never pauses, cut wherever the size falls (inside a message
/// unless the size is a multiple of the message's length).
public struct EndlessStream: Sequence, IteratorProtocol {
    private let bytes: [UInt8]
    private let readSize: Int
    private var offset = 0

    /// `message` repeated to at least 64 KiB (so that a read copies long runs at once), read
    /// `readSize` bytes at a time.
    public init(repeating message: [UInt8], readSize: Int) {
        precondition(!message.isEmpty && readSize > 0)
        bytes = Array(repeating: message, count: Swift.max(1, 65_536 / message.count + 1)).flatMap { $0 }
        self.readSize = readSize
    }

    public mutating func next() -> ByteBuffer? {
        var read = ByteBuffer()
        read.reserveCapacity(readSize)
        while read.readableBytes < readSize {
            let end = Swift.min(bytes.count, offset + readSize - read.readableBytes)
            read.writeBytes(bytes[offset..<end])
            offset = end == bytes.count ? 0 : end
        }
        return read
    }
}
