import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One HTTP/1.x message head (request or response) as the bytes it arrived in, with where
/// each header field is. Names and values become `String`s only when asked for, and the
/// fields the proxy acts on are recognised once, while parsing (`Known`).
public struct HTTP1Head: Sendable {
    /// Header fields the proxy reads or rewrites.
    public enum Known: UInt8, Sendable {
        case host, connection, contentLength, transferEncoding, upgrade, expect, authorization, cookie
        case keepAlive, proxyConnection, te, trailer, xForwardedFor, xForwardedProto, xForwardedHost

        /// Recognises a lowercase-or-not field name.
        static func recognise(_ name: UnsafeRawBufferPointer) -> Known? {
            func equals(_ expected: StaticString) -> Bool {
                guard name.count == expected.utf8CodeUnitCount else { return false }
                let lower = expected.utf8Start
                for index in 0..<name.count {
                    var byte = name[index]
                    if byte >= 0x41, byte <= 0x5A { byte |= 0x20 }
                    if byte != lower[index] { return false }
                }
                return true
            }
            switch name.count {
            case 2: return equals("te") ? .te : nil
            case 4: return equals("host") ? .host : nil
            case 6: return equals("cookie") ? .cookie : equals("expect") ? .expect : nil
            case 7: return equals("upgrade") ? .upgrade : equals("trailer") ? .trailer : nil
            case 10: return equals("connection") ? .connection : equals("keep-alive") ? .keepAlive : nil
            case 13: return equals("authorization") ? .authorization : nil
            case 14: return equals("content-length") ? .contentLength : nil
            case 15: return equals("x-forwarded-for") ? .xForwardedFor : nil
            case 16: return equals("proxy-connection") ? .proxyConnection : equals("x-forwarded-host") ? .xForwardedHost : nil
            case 17: return equals("transfer-encoding") ? .transferEncoding : equals("x-forwarded-proto") ? .xForwardedProto : nil
            default: return nil
            }
        }
    }

    /// Where one field is in `bytes` (offsets from its reader index).
    struct Field: Sendable {
        var known: Known?
        var nameStart: Int32
        var nameEnd: Int32
        var valueStart: Int32
        var valueEnd: Int32
        /// The whole line, terminator included.
        var lineStart: Int32
        var lineEnd: Int32
    }

    /// The start line, the header lines and the empty line that ends them, as received.
    let bytes: ByteBuffer
    let fields: [Field]
    /// `1` for HTTP/1.1 (and later 1.x), `0` for HTTP/1.0.
    public let minorVersion: Int
    /// Requests: where the method ends in `bytes` (it starts at 0). Responses: 0.
    let methodEnd: Int32
    /// Requests: where the request target is in `bytes`. Responses: 0.
    let targetStart: Int32
    let targetEnd: Int32
    /// Requests: the method. Responses: empty. (Made when asked for: a head carries
    /// no `String`s, so handing it around costs no reference counting.)
    public var method: String { string(0, methodEnd) }
    /// Requests: the request target. Responses: empty.
    public var target: String { string(targetStart, targetEnd) }
    /// Requests: the target in origin form (`/path?query`): an absolute-form target
    /// (`http://host/path`, whose authority the parser checked against `Host`) without its
    /// scheme and authority; any other target as it is.
    public var originTarget: String {
        let target = self.target
        guard target.utf8.first != UInt8(ascii: "/"), let scheme = target.range(of: "://") else { return target }
        let rest = target[scheme.upperBound...]
        guard let start = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[start] == "?" ? "/" + rest[start...] : String(rest[start...])
    }
    /// Responses: the status code. Requests: 0.
    public let status: Int
    /// Responses: where the status code starts in `bytes` (the status line is re-sent from there).
    let statusCodeStart: Int
    /// Where the first header line starts.
    let startLineEnd: Int

    public var fieldCount: Int { fields.count }

    /// Whether the method is `name` (methods are case-sensitive), without making a `String`.
    public func methodIs(_ name: StaticString) -> Bool {
        guard Int(methodEnd) == name.utf8CodeUnitCount else { return false }
        return bytes.withUnsafeReadableBytes { raw in
            memcmp(raw.baseAddress!, name.utf8Start, name.utf8CodeUnitCount) == 0
        }
    }

    /// The method is idempotent (RFC 9110 §9.2.2: GET, HEAD, PUT, DELETE, OPTIONS, TRACE):
    /// a request a proxy may send again after a connection failed under it.
    public var hasIdempotentMethod: Bool {
        methodIs("GET") || methodIs("HEAD") || methodIs("PUT") || methodIs("DELETE") || methodIs("OPTIONS") || methodIs("TRACE")
    }

    public func name(at index: Int) -> String { string(fields[index].nameStart, fields[index].nameEnd) }
    public func value(at index: Int) -> String { string(fields[index].valueStart, fields[index].valueEnd) }

    /// The first value of a known field.
    public func first(_ known: Known) -> String? {
        for field in fields where field.known == known { return string(field.valueStart, field.valueEnd) }
        return nil
    }

    /// The bytes of the first value of a known field, without making a `String` of them.
    func withFirstValue<Result>(_ known: Known, _ body: (UnsafeRawBufferPointer?) -> Result) -> Result {
        guard let field = fields.first(where: { $0.known == known }) else { return body(nil) }
        return bytes.withUnsafeReadableBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[Int(field.valueStart)..<Int(field.valueEnd)]))
        }
    }

    /// Where the first field of a kind is (an index of `fields`).
    func firstIndex(of known: Known) -> Int? {
        fields.firstIndex { $0.known == known }
    }

    /// Every value of a known field, in order.
    public func values(_ known: Known) -> [String] {
        var result: [String] = []
        for field in fields where field.known == known { result.append(string(field.valueStart, field.valueEnd)) }
        return result
    }

    public func contains(_ known: Known) -> Bool { fields.contains { $0.known == known } }

    /// Whether a comma-separated list field (`Connection`, `Transfer-Encoding`, ...) has
    /// this token, compared without case.
    public func hasToken(_ token: String, in known: Known) -> Bool {
        for field in fields where field.known == known {
            if Self.tokens(string(field.valueStart, field.valueEnd)).contains(where: { $0 == token }) { return true }
        }
        return false
    }

    /// The tokens of a list field value: split at commas, trimmed, lowercased.
    static func tokens(_ value: String) -> [String] {
        value.split(separator: ",").compactMap {
            let token = $0.trimmedOWS()
            return token.isEmpty ? nil : token.lowercased()
        }
    }

    /// The framing or routing header (`content-length`, `transfer-encoding`, `host`) that
    /// the `Connection` field at `index` names, if any: read from the bytes (no `String`s
    /// for the usual `keep-alive` or `close`).
    func framingHeaderNamed(byConnectionAt index: Int) -> String? {
        let field = fields[index]
        return bytes.withUnsafeReadableBytes { raw -> String? in
            var position = Int(field.valueStart)
            let end = Int(field.valueEnd)
            while position < end {
                var tokenEnd = position
                while tokenEnd < end, raw[tokenEnd] != UInt8(ascii: ",") { tokenEnd += 1 }
                var start = position, stop = tokenEnd
                while start < stop, raw[start] == 0x20 || raw[start] == 0x09 { start += 1 }
                while stop > start, raw[stop - 1] == 0x20 || raw[stop - 1] == 0x09 { stop -= 1 }
                let token = UnsafeRawBufferPointer(rebasing: raw[start..<stop])
                for name in ["content-length", "transfer-encoding", "host"] as [StaticString] where token.count == name.utf8CodeUnitCount {
                    let expected = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
                    if zip(token, expected).allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0) == $1 }) {
                        return String(decoding: expected, as: UTF8.self)
                    }
                }
                position = tokenEnd + 1
            }
            return nil
        }
    }

    /// A `Content-Length` value (`5`, or a list of equal values `5, 5`) read from the bytes;
    /// nil when it is not a number of at most 18 digits or the list disagrees.
    func contentLength(at index: Int) -> Int? {
        let field = fields[index]
        return bytes.withUnsafeReadableBytes { raw -> Int? in
            var result: Int?
            var current = 0, digits = 0
            var spaceAfterDigits = false
            for position in Int(field.valueStart)..<Int(field.valueEnd) {
                switch raw[position] {
                case 0x30...0x39:
                    guard !spaceAfterDigits, digits < 18 else { return nil }
                    current = current * 10 + Int(raw[position] - 0x30)
                    digits += 1
                case 0x20, 0x09:
                    if digits > 0 { spaceAfterDigits = true }
                case UInt8(ascii: ","):
                    guard digits > 0, result == nil || result == current else { return nil }
                    result = current
                    current = 0
                    digits = 0
                    spaceAfterDigits = false
                default:
                    return nil
                }
            }
            guard digits > 0, result == nil || result == current else { return nil }
            return current
        }
    }

    /// Keep-alive by the version's default and the `Connection` header.
    public var isKeepAlive: Bool {
        guard contains(.connection) else { return minorVersion >= 1 }
        if hasToken("close", in: .connection) { return false }
        return minorVersion >= 1 || hasToken("keep-alive", in: .connection)
    }

    /// `Connection: upgrade` with an `Upgrade` header.
    public var isUpgrade: Bool { contains(.upgrade) && hasToken("upgrade", in: .connection) }

    func string(_ start: Int32, _ end: Int32) -> String {
        bytes.getString(at: bytes.readerIndex + Int(start), length: Int(end - start)) ?? ""
    }

    func slice(_ start: Int, _ end: Int) -> ByteBuffer {
        bytes.getSlice(at: bytes.readerIndex + start, length: end - start) ?? ByteBuffer()
    }
}

extension Substring {
    /// Without the spaces and tabs around it.
    func trimmedOWS() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
