import NIOCore

/// Header rewriting between client and backend (RFC 9110 §7.6.1), straight from the head
/// bytes that arrived into the bytes that leave: hop-by-hop headers (`Connection`, the ones
/// it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`) are not
/// forwarded, except `Connection: upgrade` + `Upgrade` on an upgrade request and its `101`.
/// `Transfer-Encoding` stays, as the proxy forwards chunked bodies chunk for chunk. Every
/// other line goes on as it came (`Host` too); the request gets `X-Forwarded-For`
/// (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`, and loses `Expect` (the proxy
/// answers `100-continue` itself).
public enum ForwardedHeaders {
    /// What the `Connection` header of a response to the client says.
    public enum ConnectionHeader: Sendable {
        /// No `Connection` header (HTTP/1.1 keep-alive).
        case none
        case close
        /// For an HTTP/1.0 client that asked for keep-alive.
        case keepAlive
        /// A `101`: `Connection: upgrade` and the backend's `Upgrade`.
        case upgrade
    }

    /// Writes the head sent to the backend for a client request.
    public static func writeUpstreamRequest(_ head: HTTP1Head, target: String, clientAddress: String?, scheme: String, upgrade: Bool, into buffer: inout ByteBuffer) {
        let named = namedByConnection(head)
        let upgradeValue = upgrade ? head.firstIndex(of: .upgrade) : nil
        let host = head.firstIndex(of: .host)
        let capacity = requestCapacity(head, target: target, clientAddress: clientAddress, scheme: scheme)
        _ = head.bytes.withUnsafeReadableBytes { source in
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { destination in
                var out = HeadWriter(destination)
                out.write(source, 0, Int(head.methodEnd))
                out.write(" ")
                out.write(string: target)
                out.write(" HTTP/1.1\r\n")
                for index in head.fields.indices {
                    let field = head.fields[index]
                    switch field.known {
                    case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect, .xForwardedProto, .xForwardedHost, .xForwardedFor:
                        continue
                    default:
                        if !named.isEmpty, named.contains(head.name(at: index).lowercased()) { continue }
                        out.writeLine(of: field, in: source)
                    }
                }
                if let upgradeValue {
                    out.write("Connection: upgrade\r\n")
                    out.writeHeader("Upgrade: ", valueOf: head.fields[upgradeValue], in: source)
                }
                // X-Forwarded-For: the values that came (in order), then the client's address.
                var wroteForwardedFor = false
                for field in head.fields where field.known == .xForwardedFor && field.valueEnd > field.valueStart {
                    out.write(wroteForwardedFor ? ", " as StaticString : "X-Forwarded-For: ")
                    out.write(source, Int(field.valueStart), Int(field.valueEnd))
                    wroteForwardedFor = true
                }
                if let clientAddress {
                    out.write(wroteForwardedFor ? ", " as StaticString : "X-Forwarded-For: ")
                    out.write(string: clientAddress)
                    wroteForwardedFor = true
                }
                if wroteForwardedFor { out.write("\r\n") }
                out.write("X-Forwarded-Proto: ")
                out.write(string: scheme)
                out.write("\r\n")
                if let host { out.writeHeader("X-Forwarded-Host: ", valueOf: head.fields[host], in: source) }
                out.write("\r\n")
                return out.count
            }
        }
    }

    /// Writes the head sent to the client for a backend response (always as HTTP/1.1).
    /// `keepTransferEncoding` is false when the proxy takes the chunks apart (HTTP/1.0 client).
    public static func writeDownstreamResponse(_ head: HTTP1Head, connection: ConnectionHeader, keepTransferEncoding: Bool = true, into buffer: inout ByteBuffer) {
        let named = namedByConnection(head)
        let upgradeValue = connection == .upgrade ? head.firstIndex(of: .upgrade) : nil
        let capacity = responseCapacity(head)
        _ = head.bytes.withUnsafeReadableBytes { source in
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { destination in
                var out = HeadWriter(destination)
                out.write("HTTP/1.1 ")
                var statusLineEnd = head.startLineEnd - 1
                if statusLineEnd > head.statusCodeStart, source[statusLineEnd - 1] == 0x0D { statusLineEnd -= 1 }
                out.write(source, head.statusCodeStart, statusLineEnd)
                out.write("\r\n")
                for index in head.fields.indices {
                    let field = head.fields[index]
                    switch field.known {
                    case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade:
                        continue
                    case .transferEncoding where !keepTransferEncoding:
                        continue
                    default:
                        if !named.isEmpty, named.contains(head.name(at: index).lowercased()) { continue }
                        out.writeLine(of: field, in: source)
                    }
                }
                switch connection {
                case .none: break
                case .close: out.write("Connection: close\r\n")
                case .keepAlive: out.write("Connection: keep-alive\r\n")
                case .upgrade:
                    out.write("Connection: upgrade\r\n")
                    if let upgradeValue { out.writeHeader("Upgrade: ", valueOf: head.fields[upgradeValue], in: source) }
                }
                out.write("\r\n")
                return out.count
            }
        }
    }

    /// At least the bytes `writeUpstreamRequest` writes: the head's lines (each at most one
    /// byte longer with CRLF), the new start line and the added header lines (X-Forwarded-Host
    /// and the forwarded X-Forwarded-For values repeat bytes of the head). A buffer
    /// allocated with this capacity is written without growing.
    public static func requestCapacity(_ head: HTTP1Head, target: String, clientAddress: String?, scheme: String) -> Int {
        2 * head.bytes.readableBytes + head.fields.count + Int(head.methodEnd) + target.utf8.count + (clientAddress?.utf8.count ?? 0) + scheme.utf8.count + 160
    }

    /// At least the bytes `writeDownstreamResponse` writes: the head's lines (each at most one
    /// byte longer with CRLF), the new status line and Connection/Upgrade (the Upgrade value
    /// repeats bytes of the head).
    public static func responseCapacity(_ head: HTTP1Head) -> Int {
        2 * head.bytes.readableBytes + head.fields.count + 96
    }

    /// Copies pieces of a head into memory reserved for it, one bounds check per piece
    /// (`ByteBuffer`'s own writes check capacity and uniqueness for each of the twenty or
    /// so pieces of a head).
    struct HeadWriter {
        let destination: UnsafeMutableRawBufferPointer
        private(set) var count = 0

        init(_ destination: UnsafeMutableRawBufferPointer) {
            self.destination = destination
        }

        mutating func write(_ bytes: UnsafeRawBufferPointer) {
            precondition(count + bytes.count <= destination.count, "a head is larger than the capacity reserved for it")
            guard let source = bytes.baseAddress, bytes.count > 0 else { return }
            (destination.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
            count += bytes.count
        }

        mutating func write(_ source: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
            write(UnsafeRawBufferPointer(rebasing: source[start..<end]))
        }

        mutating func write(_ text: StaticString) {
            write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }

        /// Named apart from `write(_: StaticString)`, so that literals take that one (a
        /// literal passed as `String` costs reference counting for nothing).
        mutating func write(string text: String) {
            // Native and small strings are contiguous UTF-8 (no copy of the string to a `var`).
            if text.utf8.withContiguousStorageIfAvailable({ write(UnsafeRawBufferPointer($0)) }) != nil { return }
            var text = text
            text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
        }

        /// A header line of `source` as it came, without trailing whitespace, ended with CRLF.
        mutating func writeLine(of field: HTTP1Head.Field, in source: UnsafeRawBufferPointer) {
            write(source, Int(field.lineStart), Int(field.valueEnd))
            write("\r\n")
        }

        /// `name` (with its colon and space), the value of a field of `source`, CRLF.
        mutating func writeHeader(_ name: StaticString, valueOf field: HTTP1Head.Field, in source: UnsafeRawBufferPointer) {
            write(name)
            write(source, Int(field.valueStart), Int(field.valueEnd))
            write("\r\n")
        }
    }

    /// Extra hop-by-hop header names the `Connection` header lists (its usual tokens
    /// `close`, `keep-alive` and `upgrade` name headers removed anyway).
    private static func namedByConnection(_ head: HTTP1Head) -> Set<String> {
        var named: Set<String> = []
        for index in head.fields.indices where head.fields[index].known == .connection {
            for token in HTTP1Head.tokens(head.value(at: index)) where token != "close" && token != "keep-alive" && token != "upgrade" {
                named.insert(token)
            }
        }
        return named
    }
}
