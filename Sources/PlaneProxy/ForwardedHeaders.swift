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
        buffer.writeString(head.method)
        buffer.writeStaticString(" ")
        buffer.writeString(target)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        let named = namedByConnection(head)
        var forwardedFor: String?
        for index in head.fields.indices {
            let field = head.fields[index]
            switch field.known {
            case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect, .xForwardedProto, .xForwardedHost:
                continue
            case .xForwardedFor:
                let value = head.value(at: index)
                forwardedFor = forwardedFor.map { $0 + ", " + value } ?? value
                continue
            default:
                if !named.isEmpty, named.contains(head.name(at: index).lowercased()) { continue }
                writeLine(field, of: head, into: &buffer)
            }
        }
        if upgrade, let protocols = head.first(.upgrade) {
            buffer.writeStaticString("Connection: upgrade\r\nUpgrade: ")
            buffer.writeString(protocols)
            buffer.writeStaticString("\r\n")
        }
        if let clientAddress {
            buffer.writeStaticString("X-Forwarded-For: ")
            if let forwardedFor, !forwardedFor.isEmpty {
                buffer.writeString(forwardedFor)
                buffer.writeStaticString(", ")
            }
            buffer.writeString(clientAddress)
            buffer.writeStaticString("\r\n")
        } else if let forwardedFor {
            buffer.writeStaticString("X-Forwarded-For: ")
            buffer.writeString(forwardedFor)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("X-Forwarded-Proto: ")
        buffer.writeString(scheme)
        buffer.writeStaticString("\r\n")
        if let host = head.first(.host) {
            buffer.writeStaticString("X-Forwarded-Host: ")
            buffer.writeString(host)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// Writes the head sent to the client for a backend response (always as HTTP/1.1).
    /// `keepTransferEncoding` is false when the proxy takes the chunks apart (HTTP/1.0 client).
    public static func writeDownstreamResponse(_ head: HTTP1Head, connection: ConnectionHeader, keepTransferEncoding: Bool = true, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("HTTP/1.1 ")
        var statusLineEnd = head.startLineEnd - 1
        if statusLineEnd > head.statusCodeStart, head.bytes.getInteger(at: head.bytes.readerIndex + statusLineEnd - 1, as: UInt8.self) == 0x0D { statusLineEnd -= 1 }
        var statusLine = head.slice(head.statusCodeStart, statusLineEnd)
        buffer.writeBuffer(&statusLine)
        buffer.writeStaticString("\r\n")
        let named = namedByConnection(head)
        for index in head.fields.indices {
            let field = head.fields[index]
            switch field.known {
            case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade:
                continue
            case .transferEncoding where !keepTransferEncoding:
                continue
            default:
                if !named.isEmpty, named.contains(head.name(at: index).lowercased()) { continue }
                writeLine(field, of: head, into: &buffer)
            }
        }
        switch connection {
        case .none: break
        case .close: buffer.writeStaticString("Connection: close\r\n")
        case .keepAlive: buffer.writeStaticString("Connection: keep-alive\r\n")
        case .upgrade:
            buffer.writeStaticString("Connection: upgrade\r\n")
            if let protocols = head.first(.upgrade) {
                buffer.writeStaticString("Upgrade: ")
                buffer.writeString(protocols)
                buffer.writeStaticString("\r\n")
            }
        }
        buffer.writeStaticString("\r\n")
    }

    /// A header line as it came, without trailing whitespace, ended with CRLF.
    private static func writeLine(_ field: HTTP1Head.Field, of head: HTTP1Head, into buffer: inout ByteBuffer) {
        var line = head.slice(Int(field.lineStart), Int(field.valueEnd))
        buffer.writeBuffer(&line)
        buffer.writeStaticString("\r\n")
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
