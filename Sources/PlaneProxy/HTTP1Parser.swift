import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// HTTP/1.x message framing (RFC 9112) as a state machine without I/O: bytes go in with
/// `append`, and `next()` hands out what they make: a head, body bytes, the end of the
/// message. Body bytes are slices of the input, never copies; a chunked body keeps its
/// chunk framing (the proxy forwards it as it came) unless `decodeChunks` is set.
///
/// It is strict where laxness lets two parsers disagree about where a message ends
/// (request smuggling, RFC 9112 §2.2, §3.2, §6.1, §7.1), so that what the proxy forwards is
/// exactly what it parsed: every line ends in CRLF (a bare LF is refused), header names must
/// be tokens with the colon right after them, values must not hold control characters,
/// folded lines are refused, a message with both `Content-Length` and `Transfer-Encoding`
/// or with conflicting lengths is refused, `chunked` may only be the last transfer coding
/// (of a request: it must be), `Connection` may not name `Content-Length`,
/// `Transfer-Encoding` or `Host`, and chunk extensions are bounded. A request must have one
/// valid `Host` (HTTP/1.1: exactly one; HTTP/1.0: at most one), a target in origin form, in
/// absolute form naming the same authority as `Host`, `*` for `OPTIONS`, or an authority for
/// `CONNECT`; and at most `maxHeaderCount` header lines.
struct HTTP1Parser {
    enum Kind: Sendable { case request, response }

    enum Event {
        case head(HTTP1Head)
        case body(ByteBuffer)
        case end
    }

    /// How the body of the current message ends.
    enum Framing: Equatable, Sendable {
        case none
        case length(Int)
        case chunked
        /// A response without length or chunking: its body ends when the connection does.
        case untilClose
    }

    /// What the end of the connection's input meant for the message in progress.
    enum InputEnd: Equatable {
        /// Between messages.
        case clean
        /// A body delimited by the close is complete: `next()` returns its `.end`.
        case completedMessage
        /// The message was cut off.
        case truncated
    }

    private enum State: Equatable {
        case head
        case length(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytes: Int)
        case untilClose
        /// The message is over; its `.end` is next.
        case ending
        /// After a `101`: the bytes are no longer HTTP (`takeRemaining()`).
        case switched
    }

    static let maxChunkLine = 4096
    /// Chunk extensions of one message together (each chunk line is also at most
    /// `maxChunkLine`): many tiny chunks with long extensions would otherwise make the proxy
    /// walk and forward far more framing than data.
    static let maxChunkExtensionBytes = 16 * 1024

    let kind: Kind
    let maxHeadBytes: Int
    /// `[proxy] max_header_count`: header lines of one head (and trailer lines of one body).
    let maxHeaderCount: Int
    /// Chunk extension bytes of the message in progress.
    private var chunkExtensionBytes = 0
    /// Trailer lines of the message in progress.
    private var trailerLines = 0
    private var buffer = ByteBuffer()
    private var state = State.head
    /// A head being received: how far it has been searched, where the current line starts.
    private var scanned = 0
    private var lineStart = 0
    /// The field list of the last head, reused for the next one: heads do not outlive
    /// their handling, so its storage is unshared again by then (no allocation per head).
    private var fieldStorage: [HTTP1Head.Field] = []
    /// The framing of the message in progress.
    private(set) var framing = Framing.none
    /// Responses: the answered request was `HEAD`, so the response has no body whatever
    /// its headers say. Set before the response arrives; cleared at its end.
    var answersHEAD = false
    /// Chunked bodies come out as their data only (for an HTTP/1.0 client).
    var decodeChunks = false

    init(kind: Kind, maxHeadBytes: Int, maxHeaderCount: Int = 100) {
        self.kind = kind
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
    }

    /// Bytes received but not handed out yet.
    var bufferedBytes: Int { buffer.readableBytes }

    /// Between messages, with or without bytes of the next one.
    var isBetweenMessages: Bool { state == .head }

    /// After a `101`.
    var hasSwitchedProtocols: Bool { state == .switched }

    /// Reads up to this size are copied rather than kept (see `append`).
    static let copiedReadLimit = 4096

    mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            if bytes.readableBytes <= Self.copiedReadLimit {
                // A small read is copied into the parser's own storage, so that the reader
                // gets its buffer back unshared: the TLS handler decrypts every read into one
                // 32 KiB buffer, and a head slice still holding it would make the next read
                // copy all of it (that copy was a tenth of the proxy's TLS time).
                buffer.clear()
                buffer.writeImmutableBuffer(bytes)
            } else {
                buffer = bytes
            }
        } else {
            // What was handed out goes first. Without this a peer whose every read ends
            // inside a message (pipelined requests, a stream of informational responses)
            // would make the buffer keep every byte the connection ever received.
            buffer.discardReadBytes()
            var bytes = bytes
            buffer.writeBuffer(&bytes)
        }
    }

    /// Bytes of memory the buffer holds (what was received, handed out or not).
    var bufferCapacity: Int { buffer.capacity }

    /// Everything received and not handed out (the first bytes after a protocol switch).
    mutating func takeRemaining() -> ByteBuffer {
        defer { buffer = ByteBuffer() }
        return buffer
    }

    mutating func inputEnded() -> InputEnd {
        switch state {
        case .head: return buffer.readableBytes == 0 && scanned == 0 ? .clean : .truncated
        case .untilClose:
            state = .ending
            return .completedMessage
        case .ending, .switched: return .clean
        default: return .truncated
        }
    }

    /// The next event the received bytes make, nil when more bytes are needed.
    mutating func next() throws(ProxyError) -> Event? {
        while true {
            switch state {
            case .head:
                guard let head = try nextHead() else { return nil }
                return .head(head)
            case .length(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let count = min(remaining, buffer.readableBytes)
                state = count == remaining ? .ending : .length(remaining: remaining - count)
                return .body(buffer.readSlice(length: count)!)
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .body(buffer.readSlice(length: buffer.readableBytes)!)
            case .ending:
                state = .head
                framing = .none
                answersHEAD = false
                return .end
            case .chunkSize, .chunkData, .chunkDataEnd, .trailers:
                if let event = try nextChunkedPart() { return event }
                if state != .ending { return nil }
            case .switched:
                return nil
            }
        }
    }

    // MARK: Heads

    private mutating func nextHead() throws(ProxyError) -> HTTP1Head? {
        if scanned == 0 {
            // Empty lines before a request line are ignored (RFC 9112 §2.2).
            while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), byte == 0x0D || byte == 0x0A {
                buffer.moveReaderIndex(forwardBy: 1)
            }
        }
        guard buffer.readableBytes > 0 else { return nil }
        guard let end = findHeadEnd() else {
            if buffer.readableBytes > maxHeadBytes { throw Self.tooLarge(kind) }
            return nil
        }
        if end > maxHeadBytes { throw Self.tooLarge(kind) }
        scanned = 0
        lineStart = 0
        let bytes = buffer.readSlice(length: end)!
        fieldStorage.removeAll(keepingCapacity: true)
        let head = try Self.parseHead(bytes, kind: kind, fields: &fieldStorage, maxHeaderCount: maxHeaderCount)
        try startBody(of: head)
        return head
    }

    /// The length of the head with its empty line, once it is all there.
    private mutating func findHeadEnd() -> Int? {
        var scanned = self.scanned
        var lineStart = self.lineStart
        let end: Int? = buffer.withUnsafeReadableBytes { raw in
            var index = scanned
            while let lf = Self.lineFeed(in: raw, from: index) {
                if lf == lineStart || (lf == lineStart + 1 && raw[lineStart] == 0x0D) { return lf + 1 }
                lineStart = lf + 1
                index = lf + 1
            }
            scanned = raw.count
            return nil
        }
        self.scanned = scanned
        self.lineStart = lineStart
        return end
    }

    /// The index of the first LF in `raw[from...]` (`memchr`: a word or more at a time).
    static func lineFeed(in raw: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard from < raw.count, let base = raw.baseAddress, let found = memchr(base + from, 0x0A, raw.count - from) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    private static func tooLarge(_ kind: Kind) -> ProxyError {
        ProxyError(.headTooLarge, kind == .request ? "The request head is larger than [proxy] max_header_bytes." : "The backend's response head is larger than [proxy] max_header_bytes.",
                   limit: "proxy.max_header_bytes")
    }

    private static func tooManyFields(_ kind: Kind, _ limit: Int) -> ProxyError {
        ProxyError(.headTooLarge, (kind == .request ? "The request has" : "The backend's response has") + " more than \(limit) header lines ([proxy] max_header_count).",
                   limit: "proxy.max_header_count")
    }

    private static func malformed(_ kind: Kind, _ what: String) -> ProxyError {
        ProxyError(.malformedMessage, (kind == .request ? "Malformed request: " : "Malformed response from the backend: ") + what)
    }

    /// Parses a whole head (start line, header lines, empty line).
    /// `fields` is empty storage for the field list.
    static func parseHead(_ bytes: ByteBuffer, kind: Kind, fields: inout [HTTP1Head.Field], maxHeaderCount: Int = .max) throws(ProxyError) -> HTTP1Head {
        typealias Field = HTTP1Head.Field
        let result: Result<HTTP1Head, ProxyError> = bytes.withUnsafeReadableBytes { raw in
            // Lines: [start, contentEnd) without the CRLF, next line at `after`; nil at the end
            // of the bytes, contentEnd -1 for a line ended by a bare LF.
            func line(from start: Int) -> (contentEnd: Int, after: Int)? {
                guard let index = lineFeed(in: raw, from: start) else { return nil }
                guard index > start, raw[index - 1] == 0x0D else { return (-1, index + 1) }
                return (index - 1, index + 1)
            }
            func bareLF() -> ProxyError { malformed(kind, "a line ends with a bare LF (lines end with CRLF).") }
            guard let first = line(from: 0) else { return .failure(malformed(kind, "no start line.")) }
            guard first.contentEnd >= 0 else { return .failure(bareLF()) }
            var methodEnd = 0, targetStart = 0, targetEnd = 0, status = 0, minor = 0, statusCodeStart = 0
            let startEnd = first.contentEnd
            switch kind {
            case .request:
                // method SP request-target SP HTTP/1.x
                var index = 0
                while index < startEnd, isTokenByte(raw[index]) { index += 1 }
                guard index > 0, index < startEnd, raw[index] == 0x20 else { return .failure(malformed(kind, "the request line is not 'METHOD target HTTP/1.1'.")) }
                methodEnd = index
                index += 1
                targetStart = index
                while index < startEnd, raw[index] > 0x20, raw[index] != 0x7F { index += 1 }
                guard index > targetStart, index < startEnd, raw[index] == 0x20 else { return .failure(malformed(kind, "the request line is not 'METHOD target HTTP/1.1'.")) }
                targetEnd = index
                switch version(raw, from: index + 1, to: startEnd) {
                case .some(let value): minor = value
                case .none: return .failure(malformed(kind, "the request line is not 'METHOD target HTTP/1.1'."))
                }
                if minor < 0 { return .failure(ProxyError(.unsupportedVersion, "Only HTTP/1.0 and HTTP/1.1 are spoken here.")) }
            case .response:
                // HTTP/1.x SP 3DIGIT [SP reason]
                guard startEnd >= 12, raw[8] == 0x20, let value = version(raw, from: 0, to: 8), value >= 0,
                      (startEnd == 12 || raw[12] == 0x20) else { return .failure(malformed(kind, "the status line is not 'HTTP/1.1 200 OK'.")) }
                minor = value
                for index in 9..<12 {
                    guard raw[index] >= 0x30, raw[index] <= 0x39 else { return .failure(malformed(kind, "the status code is not three digits.")) }
                    status = status * 10 + Int(raw[index] - 0x30)
                }
                for index in 12..<startEnd where isControl(raw[index]) { return .failure(malformed(kind, "the reason phrase holds a control character.")) }
                statusCodeStart = 9
            }
            if fields.capacity < 12 { fields.reserveCapacity(12) }
            var position = first.after
            while let (contentEnd, after) = line(from: position) {
                guard contentEnd >= 0 else { return .failure(bareLF()) }
                if contentEnd == position { break }  // the empty line
                guard fields.count < maxHeaderCount else { return .failure(tooManyFields(kind, maxHeaderCount)) }
                let first = raw[position]
                if first == 0x20 || first == 0x09 { return .failure(malformed(kind, "a folded header line (obsolete line folding is not accepted).")) }
                var index = position
                while index < contentEnd, isTokenByte(raw[index]) { index += 1 }
                guard index > position, index < contentEnd, raw[index] == 0x3A else {
                    return .failure(malformed(kind, "a header line is not 'Name: value' (no space is allowed before the colon)."))
                }
                let nameEnd = index
                index += 1
                while index < contentEnd, raw[index] == 0x20 || raw[index] == 0x09 { index += 1 }
                let valueStart = index
                var valueEnd = index
                while index < contentEnd {
                    let byte = raw[index]
                    if isControl(byte) { return .failure(malformed(kind, "a header value holds a control character.")) }
                    index += 1
                    if byte != 0x20, byte != 0x09 { valueEnd = index }
                }
                let known = HTTP1Head.Known.recognise(UnsafeRawBufferPointer(rebasing: raw[position..<nameEnd]))
                fields.append(Field(known: known, nameStart: Int32(position), nameEnd: Int32(nameEnd), valueStart: Int32(valueStart), valueEnd: Int32(valueEnd),
                                    lineStart: Int32(position), lineEnd: Int32(after)))
                position = after
            }
            return .success(HTTP1Head(bytes: bytes, fields: fields, minorVersion: minor, methodEnd: Int32(methodEnd), targetStart: Int32(targetStart),
                                      targetEnd: Int32(targetEnd), status: status,
                                      statusCodeStart: statusCodeStart, startLineEnd: first.after))
        }
        return try result.get()
    }

    /// `HTTP/1.x` in `raw[from..<to]`: x (0 for 1.0, 1 for 1.1 and later 1.x), -1 for
    /// another major version, nil when it is not a version.
    private static func version(_ raw: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        guard to - from == 8, raw[from] == 0x48, raw[from + 1] == 0x54, raw[from + 2] == 0x54, raw[from + 3] == 0x50, raw[from + 4] == 0x2F,
              raw[from + 6] == 0x2E, (0x30...0x39).contains(raw[from + 5]), (0x30...0x39).contains(raw[from + 7]) else { return nil }
        guard raw[from + 5] == 0x31 else { return -1 }
        return raw[from + 7] == 0x30 ? 0 : 1
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        // One bit per byte value below 128: a shift and a mask instead of a chain of compares.
        switch byte {
        case 0..<64: (tokenBytesBelow64 >> UInt64(byte)) & 1 == 1
        case 64..<128: (tokenBytesFrom64 >> UInt64(byte - 64)) & 1 == 1
        default: false
        }
    }

    /// tchar (`!#$%&'*+-.^_`|~`, digits, letters) as bit masks over 0–63 and 64–127
    /// (`HTTP1ParserTests` checks them against the grammar).
    static let tokenBytesBelow64: UInt64 = 0x03FF_6CFA_0000_0000
    static let tokenBytesFrom64: UInt64 = 0x57FF_FFFF_C7FF_FFFE

    /// A control character other than tab (NUL, CR, LF, DEL, ...).
    static func isControl(_ byte: UInt8) -> Bool { (byte < 0x20 && byte != 0x09) || byte == 0x7F }

    // MARK: Bodies

    /// Decides the framing of the message whose head was just parsed (RFC 9112 §6.3), and
    /// refuses heads another parser could read differently.
    private mutating func startBody(of head: HTTP1Head) throws(ProxyError) {
        var length: Int?
        var codings: [String] = []
        var hasTransferEncoding = false
        var hosts = 0
        for index in head.fields.indices {
            switch head.fields[index].known {
            case .contentLength:
                guard let value = head.contentLength(at: index) else { throw Self.malformed(kind, "Content-Length is not a number (or its values disagree).") }
                if let length, length != value { throw Self.malformed(kind, "conflicting Content-Length values.") }
                length = value
            case .transferEncoding:
                hasTransferEncoding = true
                codings += HTTP1Head.tokens(head.value(at: index))
            case .host:
                hosts += 1
            case .connection:
                // A hop-by-hop list naming a framing header would make the proxy drop it.
                if let named = head.framingHeaderNamed(byConnectionAt: index) {
                    throw Self.malformed(kind, "Connection names \(named), a header that frames or routes the message.")
                }
            default:
                break
            }
        }
        chunkExtensionBytes = 0
        if hasTransferEncoding {
            guard length == nil else { throw Self.malformed(kind, "both Content-Length and Transfer-Encoding.") }
            // chunked may be applied once, as the last coding (RFC 9112 §6.1).
            if let index = codings.firstIndex(of: "chunked"), index != codings.count - 1 {
                throw Self.malformed(kind, "a Transfer-Encoding with chunked before its end (\(codings.joined(separator: ", "))).")
            }
        }
        switch kind {
        case .request:
            try Self.checkTarget(of: head, hosts: hosts)
            if hasTransferEncoding {
                guard codings.last == "chunked" else { throw Self.malformed(kind, "a Transfer-Encoding that does not end in chunked.") }
                framing = .chunked
            } else {
                framing = length.map { .length($0) } ?? .none
            }
        case .response:
            if head.status == 101 {
                state = .switched
                framing = .none
                return
            }
            if head.status < 200 {
                state = .head  // informational: the real response follows
                return
            }
            if answersHEAD || head.status == 204 || head.status == 304 {
                framing = .none
            } else if hasTransferEncoding {
                framing = codings.last == "chunked" ? .chunked : .untilClose
            } else {
                framing = length.map { .length($0) } ?? .untilClose
            }
        }
        switch framing {
        case .none, .length(0): state = .ending
        case .length(let count): state = .length(remaining: count)
        case .chunked: state = .chunkSize
        case .untilClose: state = .untilClose
        }
    }

    /// A request's `Host` and target (RFC 9112 §3.2): HTTP/1.1 needs exactly one `Host`,
    /// HTTP/1.0 at most one, and its value must be a host with an optional port. The target
    /// is origin form (`/path`), absolute form (`http://host/path`, whose authority must be
    /// `Host`'s), `*` (only `OPTIONS`) or, for `CONNECT` (which the proxy answers 405), an
    /// authority.
    static func checkTarget(of head: HTTP1Head, hosts: Int) throws(ProxyError) {
        guard hosts <= 1 else { throw malformed(.request, "more than one Host header.") }
        guard hosts == 1 || head.minorVersion == 0 else { throw malformed(.request, "an HTTP/1.1 request without a Host header.") }
        let result: ProxyError? = head.bytes.withUnsafeReadableBytes { raw in
            var hostValue: UnsafeRawBufferPointer?
            if let field = head.fields.first(where: { $0.known == .host }) {
                let value = UnsafeRawBufferPointer(rebasing: raw[Int(field.valueStart)..<Int(field.valueEnd)])
                guard isAuthority(value, allowEmpty: true) else { return malformed(.request, "the Host header is not a host[:port].") }
                hostValue = value
            }
            let target = UnsafeRawBufferPointer(rebasing: raw[Int(head.targetStart)..<Int(head.targetEnd)])
            if target.first == UInt8(ascii: "/") { return nil }
            if target.count == 1, target.first == UInt8(ascii: "*") {
                return head.methodIs("OPTIONS") ? nil : malformed(.request, "the target * is only for OPTIONS.")
            }
            if head.methodIs("CONNECT") { return nil }
            // Absolute form: scheme "://" authority [path-abempty] [? query].
            guard let schemeEnd = absoluteFormAuthorityStart(target) else {
                return malformed(.request, "the request target is not a path (/...), an absolute URL or *.")
            }
            var authorityEnd = schemeEnd
            while authorityEnd < target.count, target[authorityEnd] != UInt8(ascii: "/"), target[authorityEnd] != UInt8(ascii: "?") { authorityEnd += 1 }
            let authority = UnsafeRawBufferPointer(rebasing: target[schemeEnd..<authorityEnd])
            guard isAuthority(authority, allowEmpty: false) else { return malformed(.request, "the absolute target's authority is not a host[:port] (no user info).") }
            guard let hostValue, authority.count == hostValue.count,
                  zip(authority, hostValue).allSatisfy({ lowercase($0) == lowercase($1) }) else {
                return malformed(.request, "the absolute target's authority and the Host header disagree.")
            }
            return nil
        }
        if let result { throw result }
    }

    /// Where the authority starts in an `http://` or `https://` target (scheme in any case).
    private static func absoluteFormAuthorityStart(_ target: UnsafeRawBufferPointer) -> Int? {
        for (scheme, length) in [("http://", 7), ("https://", 8)] where target.count > length {
            if zip(target.prefix(length), scheme.utf8).allSatisfy({ lowercase($0) == $1 }) { return length }
        }
        return nil
    }

    /// `host[:port]`: a registered name or IPv4 address (RFC 3986 unreserved, sub-delims and
    /// percent signs), or an IPv6 literal in brackets, then at most five port digits.
    static func isAuthority(_ value: UnsafeRawBufferPointer, allowEmpty: Bool) -> Bool {
        if value.isEmpty { return allowEmpty }
        var index = 0
        if value[0] == UInt8(ascii: "[") {
            guard let close = value.firstIndex(of: UInt8(ascii: "]")), close > 1 else { return false }
            for byte in value[1..<close] where !(isHexDigit(byte) || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")) { return false }
            index = close + 1
        } else {
            while index < value.count, value[index] != UInt8(ascii: ":") {
                guard isRegisteredNameByte(value[index]) else { return false }
                index += 1
            }
            guard index > 0 else { return false }
        }
        guard index < value.count else { return true }
        guard value[index] == UInt8(ascii: ":") else { return false }
        let port = value[(index + 1)...]
        return port.count <= 5 && port.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }

    /// unreserved / sub-delims / "%" (RFC 3986 reg-name).
    private static func isRegisteredNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"),
             UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="): true
        default: false
        }
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    /// Walks chunk framing. Without `decodeChunks` everything walked comes out as one
    /// slice, framing included; with it, only chunk data comes out.
    private mutating func nextChunkedPart() throws(ProxyError) -> Event? {
        // Bytes walked past the reader index and not handed out yet.
        var walked = 0
        func take(_ buffer: inout ByteBuffer, _ walked: inout Int) -> Event? {
            guard walked > 0 else { return nil }
            defer { walked = 0 }
            return .body(buffer.readSlice(length: walked)!)
        }
        loop: while true {
            let available = buffer.readableBytes - walked
            switch state {
            case .chunkSize:
                guard let (contentEnd, after) = lineAt(walked) else {
                    if available > Self.maxChunkLine { throw Self.malformed(kind, "a chunk size line is too long.") }
                    break loop
                }
                guard contentEnd >= 0 else { throw Self.malformed(kind, "a chunk size line ends with a bare LF.") }
                guard let (size, extensionBytes) = chunkSize(from: walked, to: contentEnd) else { throw Self.malformed(kind, "a chunk size is not hexadecimal.") }
                chunkExtensionBytes += extensionBytes
                guard chunkExtensionBytes <= Self.maxChunkExtensionBytes else {
                    throw Self.malformed(kind, "the chunk extensions of one message are longer than \(Self.maxChunkExtensionBytes) bytes.")
                }
                walked = after - buffer.readerIndex
                if size == 0 { trailerLines = 0 }
                state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard available > 0 else { break loop }
                let count = min(remaining, available)
                state = count == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - count)
                if decodeChunks {
                    buffer.moveReaderIndex(forwardBy: walked)
                    return .body(buffer.readSlice(length: count)!)
                }
                walked += count
            case .chunkDataEnd:
                guard available > 0 else { break loop }
                let byte = buffer.getInteger(at: buffer.readerIndex + walked, as: UInt8.self) ?? 0
                if byte == 0x0A {
                    throw Self.malformed(kind, "a chunk ends with a bare LF.")
                } else if byte == 0x0D {
                    guard available > 1 else { break loop }
                    guard buffer.getInteger(at: buffer.readerIndex + walked + 1, as: UInt8.self) == 0x0A else { throw Self.malformed(kind, "a chunk does not end with CRLF.") }
                    walked += 2
                } else {
                    throw Self.malformed(kind, "a chunk is longer than its size.")
                }
                state = .chunkSize
            case .trailers(let bytes):
                guard let (contentEnd, after) = lineAt(walked) else {
                    if bytes + available > maxHeadBytes { throw Self.malformed(kind, "the trailer section is too large.") }
                    break loop
                }
                guard contentEnd >= 0 else { throw Self.malformed(kind, "a trailer line ends with a bare LF.") }
                let lineLength = after - (buffer.readerIndex + walked)
                walked += lineLength
                if contentEnd == after - lineLength {
                    state = .ending
                    break loop
                }
                if bytes + lineLength > maxHeadBytes { throw Self.malformed(kind, "the trailer section is too large.") }
                // Trailers go on as they came, so they must not hold what another parser could
                // take for the end of the message (a bare CR, say).
                let contentStart = after - lineLength
                let base = buffer.readerIndex
                // nil: not a field; else whether it names a field that frames, routes or
                // controls the connection, which a trailer must not carry (RFC 9110 §6.5.1):
                // a recipient that merged it into the head would frame or route differently.
                let forbidden = buffer.withUnsafeReadableBytes { raw -> Bool? in
                    let line = raw[(contentStart - base)..<(contentEnd - base)]
                    guard !line.contains(where: Self.isControl) else { return nil }
                    // `Name: value`, as a header line (no folding, a token right before the colon).
                    guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex,
                          line[line.startIndex..<colon].allSatisfy(Self.isTokenByte) else { return nil }
                    let name = UnsafeRawBufferPointer(rebasing: line[line.startIndex..<colon])
                    switch HTTP1Head.Known.recognise(name) {
                    case .contentLength, .transferEncoding, .host, .connection, .trailer, .te, .upgrade, .keepAlive, .proxyConnection: return true
                    default: return false
                    }
                }
                guard let forbidden else { throw Self.malformed(kind, "a trailer line is not 'Name: value' or holds a control character.") }
                if forbidden { throw Self.malformed(kind, "a trailer field that frames or routes the message (Content-Length, Transfer-Encoding, Host, or a connection option).") }
                trailerLines += 1
                guard trailerLines <= maxHeaderCount else { throw Self.tooManyFields(kind, maxHeaderCount) }
                state = .trailers(bytes: bytes + lineLength)
            default:
                break loop
            }
        }
        if decodeChunks {
            buffer.moveReaderIndex(forwardBy: walked)
            return nil
        }
        return take(&buffer, &walked)
    }

    /// The line starting `offset` bytes past the reader index: where its content ends
    /// (before the CRLF; -1 when the line ends with a bare LF) and where the next line
    /// starts (absolute indices), or nil before its LF arrived.
    private func lineAt(_ offset: Int) -> (contentEnd: Int, after: Int)? {
        let start = buffer.readerIndex + offset
        let view = buffer.readableBytesView.dropFirst(offset)
        guard let lf = view.firstIndex(of: 0x0A) else { return nil }
        let absolute = buffer.readerIndex + (lf - buffer.readableBytesView.startIndex)
        guard absolute > start, buffer.getInteger(at: absolute - 1, as: UInt8.self) == 0x0D else { return (-1, absolute + 1) }
        return (absolute - 1, absolute + 1)
    }

    /// `chunk-size [BWS ";" chunk-ext]` between `offset` (past the reader index) and `end`
    /// (absolute): the size and how many bytes of extension follow it.
    private func chunkSize(from offset: Int, to end: Int) -> (size: Int, extensionBytes: Int)? {
        var index = buffer.readerIndex + offset
        var size = 0
        var digits = 0
        while index < end, let byte = buffer.getInteger(at: index, as: UInt8.self) {
            let value: Int
            switch byte {
            case 0x30...0x39: value = Int(byte - 0x30)
            case 0x41...0x46: value = Int(byte - 0x41 + 10)
            case 0x61...0x66: value = Int(byte - 0x61 + 10)
            default: value = -1
            }
            if value < 0 { break }
            digits += 1
            guard digits <= 15 else { return nil }
            size = size * 16 + value
            index += 1
        }
        guard digits > 0 else { return nil }
        // Only whitespace and an extension may follow; no control characters.
        var sawExtension = false
        let extensionStart = index
        while index < end, let byte = buffer.getInteger(at: index, as: UInt8.self) {
            if byte == UInt8(ascii: ";") { sawExtension = true }
            if Self.isControl(byte) || (!sawExtension && byte != 0x20 && byte != 0x09) { return nil }
            index += 1
        }
        return (size, index - extensionStart)
    }
}
