import NIOCore

/// Writes client protocol operations into a buffer.
enum NATSClientCommand {
    static let crlf: [UInt8] = [0x0D, 0x0A]

    static func writePublish(subject: String, replyTo: String?, headers: NATSHeaders?, payload: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        if let headers, !headers.isEmpty {
            let headerBytes = headers.encoded
            buffer.writeString("HPUB ")
            buffer.writeString(subject)
            if let replyTo { buffer.writeString(" "); buffer.writeString(replyTo) }
            buffer.writeString(" \(headerBytes.count) \(headerBytes.count + payload.count)\r\n")
            buffer.writeBytes(headerBytes)
        } else {
            buffer.writeString("PUB ")
            buffer.writeString(subject)
            if let replyTo { buffer.writeString(" "); buffer.writeString(replyTo) }
            buffer.writeString(" ")
            buffer.writeString(String(payload.count))
            buffer.writeBytes(crlf)
        }
        buffer.writeBytes(payload)
        buffer.writeBytes(crlf)
    }

    static func writeSubscribe(subject: String, queue: String?, sid: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeString("SUB \(subject)")
        if let queue { buffer.writeString(" \(queue)") }
        buffer.writeString(" \(sid)\r\n")
    }

    static func writeUnsubscribe(sid: UInt64, max: Int?, into buffer: inout ByteBuffer) {
        if let max { buffer.writeString("UNSUB \(sid) \(max)\r\n") } else { buffer.writeString("UNSUB \(sid)\r\n") }
    }

    static func writePing(into buffer: inout ByteBuffer) { buffer.writeString("PING\r\n") }
    static func writePong(into buffer: inout ByteBuffer) { buffer.writeString("PONG\r\n") }

    static func writeConnect(_ json: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeString("CONNECT ")
        buffer.writeBytes(json)
        buffer.writeBytes(crlf)
    }

    /// A subject or queue name must be non-empty and contain no whitespace or control bytes.
    static func validateToken(_ text: String, what: String) throws(NATSError) {
        if text.isEmpty { throw NATSError(.invalidArgument, "The \(what) is empty.") }
        for byte in text.utf8 where byte <= 0x20 || byte == 0x7F {
            throw NATSError(.invalidArgument, "The \(what) '\(text)' contains whitespace or control characters.")
        }
    }
}
