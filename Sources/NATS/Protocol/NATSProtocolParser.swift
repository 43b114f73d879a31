import Foundation
import NIOCore

/// The server side of the NATS protocol as a state machine: feed it bytes in any chunking
/// (down to one byte at a time) and pull complete operations with `next()`. Anything that is
/// not the protocol throws a `.protocolError`; the caller then resets the connection.
public struct NATSProtocolParser: Sendable {
    /// Longest control line accepted (the server's own default limit is 4 KiB for clients).
    public static let maximumControlLineLength = 64 * 1024
    /// Largest payload accepted, independent of what INFO says (server max is 64 MiB).
    public static let maximumPayloadLength = 64 * 1024 * 1024

    private enum State: Sendable {
        case controlLine
        case payload(subject: String, sid: UInt64, replyTo: String?, headerLength: Int, totalLength: Int)
    }

    private var buffer: ByteBuffer
    private var state: State = .controlLine
    /// Where the search for CRLF resumes, relative to the reader index.
    private var scanOffset = 0

    public init() {
        buffer = ByteBufferAllocator().buffer(capacity: 16 * 1024)
    }

    /// The most memory the parser keeps once everything fed is parsed: after a large
    /// message it starts again from a small buffer, rather than keeping (and, while delivered
    /// payloads still share it, copying) one as large as the largest message seen.
    static let keptCapacity = 1 << 20

    /// Bytes reserved for input now.
    var capacity: Int { buffer.capacity }

    public mutating func feed(_ bytes: ByteBuffer) {
        var bytes = bytes
        if buffer.readerIndex > 0, buffer.readerIndex >= buffer.writerIndex {
            if buffer.capacity > Self.keptCapacity {
                buffer = ByteBufferAllocator().buffer(capacity: Swift.max(16 * 1024, bytes.readableBytes))
            } else {
                buffer.clear()
            }
        } else if buffer.readerIndex > 256 * 1024 {
            buffer.discardReadBytes()
        }
        buffer.writeBuffer(&bytes)
    }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        b.writeBytes(bytes)
        feed(b)
    }

    /// The next complete operation, or nil when more bytes are needed.
    public mutating func next() throws(NATSError) -> NATSServerOp? {
        while true {
            switch state {
            case .controlLine:
                guard let line = try takeControlLine() else { return nil }
                if let op = try parseControlLine(line) { return op }
            case .payload(let subject, let sid, let replyTo, let headerLength, let totalLength):
                guard buffer.readableBytes >= totalLength + 2 else { return nil }
                let start = buffer.readerIndex
                guard buffer.getInteger(at: start + totalLength, as: UInt8.self) == 0x0D,
                      buffer.getInteger(at: start + totalLength + 1, as: UInt8.self) == 0x0A else {
                    throw NATSError(.protocolError, "Message payload is not followed by CRLF (wrong length in MSG/HMSG).")
                }
                var headers: NATSHeaders?
                if headerLength > 0 {
                    let view = buffer.readableBytesView.prefix(headerLength)
                    headers = try NATSHeaders.parse(view)
                }
                let payload = buffer.getSlice(at: start + headerLength, length: totalLength - headerLength)!
                buffer.moveReaderIndex(forwardBy: totalLength + 2)
                state = .controlLine
                scanOffset = 0
                return .msg(NATSMessage(subject: subject, replyTo: replyTo, headers: headers, payload: payload, sid: sid))
            }
        }
    }

    private mutating func takeControlLine() throws(NATSError) -> [UInt8]? {
        let view = buffer.readableBytesView
        var i = view.startIndex + scanOffset
        while i < view.endIndex {
            if view[i] == 0x0A {
                var end = i
                if end > view.startIndex, view[end - 1] == 0x0D { end -= 1 }
                let line = Array(view[view.startIndex..<end])
                buffer.moveReaderIndex(forwardBy: i - view.startIndex + 1)
                scanOffset = 0
                return line
            }
            i += 1
        }
        scanOffset = view.count
        if view.count > Self.maximumControlLineLength {
            throw NATSError(.protocolError, "Control line longer than \(Self.maximumControlLineLength) bytes.")
        }
        return nil
    }

    /// The operation name of a control line, matched case-insensitively without allocating.
    private enum OpName { case msg, hmsg, ping, pong, ok, err, info, unknown }

    private static func opName(_ line: ArraySlice<UInt8>) -> OpName {
        func lower(_ b: UInt8) -> UInt8 { b | 0x20 }
        func matches(_ word: StaticString) -> Bool {
            guard line.count == word.utf8CodeUnitCount else { return false }
            let w = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for (i, c) in w.enumerated() where lower(line[line.startIndex + i]) != c { return false }
            return true
        }
        switch line.first {
        case UInt8(ascii: "M"), UInt8(ascii: "m"): return matches("msg") ? .msg : .unknown
        case UInt8(ascii: "H"), UInt8(ascii: "h"): return matches("hmsg") ? .hmsg : .unknown
        case UInt8(ascii: "P"), UInt8(ascii: "p"): return matches("ping") ? .ping : matches("pong") ? .pong : .unknown
        case UInt8(ascii: "+"): return line.count == 3 && lower(line[line.startIndex + 1]) == UInt8(ascii: "o") && lower(line[line.startIndex + 2]) == UInt8(ascii: "k") ? .ok : .unknown
        case UInt8(ascii: "-"): return matches("-err") ? .err : .unknown
        case UInt8(ascii: "I"), UInt8(ascii: "i"): return matches("info") ? .info : .unknown
        default: return .unknown
        }
    }

    private static func parseInt(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for b in bytes {
            guard b >= 0x30, b <= 0x39 else { return nil }
            value = value * 10 + Int(b - 0x30)
        }
        return value
    }

    private mutating func parseControlLine(_ line: [UInt8]) throws(NATSError) -> NATSServerOp? {
        if line.isEmpty { return nil }
        let opEnd = line.firstIndex(where: { $0 == 0x20 || $0 == 0x09 }) ?? line.endIndex
        let name = Self.opName(line[..<opEnd])
        let rest = line[opEnd...]
        switch name {
        case .msg, .hmsg:
            let isHeader = name == .hmsg
            let op = isHeader ? "HMSG" : "MSG"
            let args = rest.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
            let expected = isHeader ? [4, 5] : [3, 4]
            guard expected.contains(args.count) else {
                throw NATSError(.protocolError, "\(op) with \(args.count) arguments.")
            }
            guard let sidValue = Self.parseInt(args[1]) else { throw NATSError(.protocolError, "\(op) with an invalid sid.") }
            let hasReply = args.count == expected[1]
            let replyTo = hasReply ? String(decoding: args[2], as: UTF8.self) : nil
            let total = Self.parseInt(args[args.count - 1])
            let header = isHeader ? Self.parseInt(args[args.count - 2]) : 0
            guard let total, let header, header <= total, total <= Self.maximumPayloadLength else {
                throw NATSError(.protocolError, "\(op) with invalid sizes.")
            }
            if isHeader, header == 0 { throw NATSError(.protocolError, "HMSG with an empty header block.") }
            state = .payload(subject: String(decoding: args[0], as: UTF8.self), sid: UInt64(sidValue), replyTo: replyTo, headerLength: header, totalLength: total)
            return nil
        case .ping: return .ping
        case .pong: return .pong
        case .ok: return .ok
        case .err:
            var text = String(decoding: rest, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            return .err(text)
        case .info:
            let json = Data(rest.drop(while: { $0 == 0x20 || $0 == 0x09 }))
            do {
                return .info(try JSONDecoder().decode(NATSServerInfo.self, from: json))
            } catch {
                throw NATSError(.protocolError, "INFO does not carry valid JSON.", cause: NATSErrorCause(error))
            }
        case .unknown:
            let shown = String(decoding: line.prefix(32), as: UTF8.self)
            throw NATSError(.protocolError, "Unknown protocol operation '\(shown)'.")
        }
    }
}
