/// The framing of the runtime plugin protocol: every message is one frame, a 4-byte
/// big-endian length followed by that many bytes of UTF-8 JSON.
public enum PluginFrame {
    /// The longest payload either side accepts (a frame announcing more ends the connection).
    public static let maximumLength = 16 << 20

    /// `payload` with its length prefix.
    public static func encode(_ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff), UInt8(length & 0xff)] + payload
    }
}

/// Splits a byte stream into frames, whatever the bytes' chunking: a pure state machine fed
/// with the bytes as they arrive.
public struct PluginFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    /// Appends received bytes.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame's payload, nil when more bytes are needed; a length above
    /// `PluginFrame.maximumLength` is an error (the connection cannot be resynchronised).
    public mutating func next() throws(PluginProtocolError) -> [UInt8]? {
        guard buffer.count - start >= 4 else { return nil }
        let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length <= PluginFrame.maximumLength else {
            throw PluginProtocolError(.frameTooLong, "A frame announces \(length) bytes; the limit is \(PluginFrame.maximumLength).")
        }
        guard buffer.count - start - 4 >= length else { return nil }
        let payload = Array(buffer[(start + 4)..<(start + 4 + length)])
        start += 4 + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 64 << 10 {
            buffer.removeFirst(start)
            start = 0
        }
        return payload
    }

    /// Bytes received but not yet returned as a frame.
    public var pendingByteCount: Int { buffer.count - start }
}
