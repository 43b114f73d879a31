import NIOCore
@testable import PlaneProxy
import PlaneTestSupport
import Testing

/// The proxy's HTTP/1.x framing, without I/O: heads, the three body framings, pipelining,
/// bytes arriving one at a time, and the inputs that must be refused.
struct HTTP1ParserTests {
    /// Everything `bytes` make, fed in pieces of `step` bytes; body bytes joined per message.
    enum Item: Equatable {
        case head(String)
        case body(String)
        case end
    }

    func parse(_ text: String, kind: HTTP1Parser.Kind = .request, step: Int = .max, decodeChunks: Bool = false, answersHEAD: Bool = false,
               maxHeadBytes: Int = 4096) throws(ProxyError) -> (items: [Item], parser: HTTP1Parser) {
        var parser = HTTP1Parser(kind: kind, maxHeadBytes: maxHeadBytes)
        parser.decodeChunks = decodeChunks
        parser.answersHEAD = answersHEAD
        var items: [Item] = []
        let bytes = Array(text.utf8)
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + min(step, bytes.count))
            parser.append(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
            while let event = try parser.next() {
                switch event {
                case .head(let head): items.append(.head(kind == .request ? "\(head.method) \(head.target) 1.\(head.minorVersion)" : "\(head.status) 1.\(head.minorVersion)"))
                case .body(let buffer):
                    let text = String(buffer: buffer)
                    if case .body(let previous) = items.last { items[items.count - 1] = .body(previous + text) } else { items.append(.body(text)) }
                case .end: items.append(.end)
                }
                if parser.hasSwitchedProtocols { break }
            }
        } while offset < bytes.count
        return (items, parser)
    }

    @Test(arguments: [1, 3, 7, Int.max])
    func requestsWithEachFramingInAnyPieces(step: Int) throws {
        let text = "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n"
            + "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            + "\r\n"  // a stray empty line before a request is allowed
            + "PUT /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
            + "OPTIONS * HTTP/1.1\r\nHost: y:8080\r\n\r\n"
            + "GET http://Y:8080/abs?q HTTP/1.1\r\nHost: y:8080\r\n\r\n"
        let (items, parser) = try parse(text, step: step)
        #expect(items == [.head("GET /a?b=c 1.1"), .end,
                          .head("POST /up 1.1"), .body("hello"), .end,
                          .head("PUT /c 1.0"), .body("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"), .end,
                          .head("OPTIONS * 1.1"), .end, .head("GET http://Y:8080/abs?q 1.1"), .end])
        #expect(parser.isBetweenMessages && parser.bufferedBytes == 0)
        let decoded = try parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n", step: step, decodeChunks: true)
        #expect(decoded.items == [.head("POST / 1.1"), .body("hello0123456789"), .end])
    }

    /// The token bit masks say exactly what RFC 9110's tchar says, for every byte value.
    @Test func tokenBytesAreTheGrammarsTchar() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(HTTP1Parser.isTokenByte(byte) == tchar.contains(byte), "byte \(byte)")
        }
    }

    /// A small read is copied, so the reader (the TLS handler reuses one 32 KiB buffer for
    /// every read) gets its storage back unshared; a large one is kept as it came.
    @Test func smallReadsAreCopiedLargeOnesKept() throws {
        func storage(_ buffer: inout ByteBuffer) -> UnsafeMutableRawPointer? {
            buffer.withUnsafeMutableReadableBytes { $0.baseAddress }
        }
        for (size, shared) in [(200, false), (HTTP1Parser.copiedReadLimit + 1, true)] {
            var parser = HTTP1Parser(kind: .request, maxHeadBytes: 1 << 20)
            var read = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "x", count: size))\r\n\r\n")
            let before = storage(&read)
            parser.append(read)
            guard case .head(let head)? = try parser.next() else { Issue.record("no head"); return }
            // Writing to a shared buffer copies it first (and moves it).
            #expect((storage(&read) != before) == shared, "read of \(size) bytes")
            #expect(head.target == "/")
        }
    }

    /// A peer whose every read ends inside a message (a client pipelining requests, a
    /// backend sending informational responses or small chunks without end) must not make
    /// the parser keep what it already handed out: the memory stays that of one read and
    /// the part of a message waiting for its rest, however long the connection lasts. (It
    /// kept all of it: a real proxy grew by the bytes of such a connection, 650 MB in 8 s
    /// of a backend's `103`s.)
    @Test(arguments: [
        (HTTP1Parser.Kind.request, "GET / HTTP/1.1\r\nHost: a.plane.test\r\nX-Pad: ppppppppppppppppppppppppppppppppppppp\r\n\r\n"),
        (.response, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"),
        (.response, "3\r\nabc\r\n"),
    ])
    func memoryStaysBoundedWhenReadsEndInsideMessages(kind: HTTP1Parser.Kind, message: String) throws {
        var parser = HTTP1Parser(kind: kind, maxHeadBytes: 8192)
        if message.hasPrefix("3") {
            parser.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
            guard case .head? = try parser.next() else { Issue.record("no head"); return }
        }
        var messages = 0
        var largest = 0
        // 200 reads of 7 bytes less than 64 KiB each: about 13 MB, every read cut mid-message.
        for read in EndlessStream(repeating: Array(message.utf8), readSize: 65_536 - 7).prefix(200) {
            parser.append(read)
            while let event = try parser.next() {
                // (Chunks pass as they came: one body event per read.)
                if case .head = event { messages += 1 }
                if case .body = event { messages += 1 }
            }
            #expect(parser.bufferedBytes < message.utf8.count)
            largest = max(largest, parser.bufferCapacity)
        }
        #expect(messages >= (message.hasPrefix("3") ? 200 : 100_000))
        #expect(largest <= 2 * 65_536, "the parser's buffer grew to \(largest) bytes")
    }

    @Test func headFieldsAreFoundWithoutCaseAndTrimmed() throws {
        var parser = HTTP1Parser(kind: .request, maxHeadBytes: 4096)
        parser.append(ByteBuffer(string: "GET / HTTP/1.1\r\nHOST:  FooBar.plane.test:4040 \r\nConnection: Keep-Alive, Upgrade\r\nupgrade: websocket\r\n"
                                     + "Cookie: a=1\r\nCookie: b=2\r\nX-Other: \r\n\r\n"))
        guard case .head(let head) = try parser.next() else { Issue.record("no head"); return }
        #expect(head.first(.host) == "FooBar.plane.test:4040")
        #expect(head.values(.cookie) == ["a=1", "b=2"])
        #expect(head.isUpgrade && head.isKeepAlive)
        #expect(head.fieldCount == 6 && head.name(at: 5) == "X-Other" && head.value(at: 5).isEmpty)
        // The method is compared as bytes, exactly (methods are case-sensitive).
        #expect(head.methodIs("GET") && !head.methodIs("GE") && !head.methodIs("GETS") && !head.methodIs("get") && !head.methodIs("HEAD"))
        var old = HTTP1Parser(kind: .request, maxHeadBytes: 4096)
        old.append(ByteBuffer(string: "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
        guard case .head(let first) = try old.next(), case .end = try old.next(), case .head(let second) = try old.next() else { Issue.record("no heads"); return }
        #expect(!first.isKeepAlive && !second.isKeepAlive)
    }

    @Test func responsesEndByLengthChunksOrClose() throws {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            + "HTTP/1.1 204 No Content\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            + "HTTP/1.0 200 OK\r\n\r\nuntil the end"
        var (items, parser) = try parse(text, kind: .response, step: 5)
        #expect(items == [.head("100 1.1"), .head("200 1.1"), .body("ok"), .end, .head("204 1.1"), .end,
                          .head("200 1.1"), .body("2\r\nok\r\n0\r\n\r\n"), .end, .head("200 1.0"), .body("until the end")])
        #expect(parser.framing == .untilClose && parser.inputEnded() == .completedMessage)
        guard case .end = try parser.next() else { Issue.record("no end after the close"); return }
        // The answer to HEAD has no body whatever its length says; a 101 ends HTTP.
        let head = try parse("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", kind: .response, answersHEAD: true)
        #expect(head.items == [.head("200 1.1"), .end])
        let switched = try parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\u{1}\u{2}x", kind: .response)
        var rest = switched.parser
        #expect(switched.items == [.head("101 1.1")] && rest.hasSwitchedProtocols && rest.takeRemaining().readableBytes == 3)
        // Cut off in the middle of a body.
        var cut = try parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", kind: .response).parser
        #expect(cut.inputEnded() == .truncated)
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",  // space before the colon
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obsolete line folding
        "GET / HTTP/1.1\r\nHost: x\r\nX: a\u{7}b\r\n\r\n",  // control character in a value
        "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",  // bare CR
        "GET  / HTTP/1.1\r\n\r\n",  // two spaces
        "GET / HTTP/1.1 \r\n\r\n",
        "\u{1}\u{2}GARBAGE \r\n\r\n",
        "GET / FTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",  // smuggling
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",  // chunk longer than its size
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",  // size overflow
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\r\n",  // a trailer line a lax parser reads as the end
        // RFC 9112 §2.2: lines end with CRLF, in the head, chunk sizes, chunk data and trailers.
        "GET / HTTP/1.1\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n",
        // RFC 9110 §6.5.1: no framing, routing or connection fields in trailers.
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Ok: 1\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHOST: other.plane.test\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n",
        // §6.1: chunked only once and last; a request's codings must end in it.
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        // §7.6.1: a Connection header that would make a proxy drop a framing or routing header.
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close, transfer-encoding\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n",
        // §3.2: one Host (HTTP/1.1 must have one), a valid one, agreeing with an absolute target.
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET http://b.plane.test:81/ HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET http://user@b.plane.test/ HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET http:/b.plane.test/ HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET ftp://b.plane.test/ HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET relative HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: b.plane.test\r\n\r\n",
    ])
    func malformedRequestsAreRefused(text: String) {
        #expect(throws: ProxyError.self) { _ = try parse(text) }
        #expect(throws: ProxyError.self) { _ = try parse(text, step: 1) }
    }

    @Test func limitsAndVersions() throws {
        let large = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 5000))\r\n\r\n"
        #expect { _ = try parse(large) } throws: { ($0 as? ProxyError)?.code == .headTooLarge }
        // Refused before the whole head arrived, without waiting for its end.
        #expect { _ = try parse(String(large.prefix(4500))) } throws: { ($0 as? ProxyError)?.code == .headTooLarge }
        #expect { _ = try parse("GET / HTTP/2.0\r\n\r\n") } throws: { ($0 as? ProxyError)?.code == .unsupportedVersion }
        #expect(try parse("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc").items == [.head("GET / 1.1"), .body("abc"), .end])
        // Same values repeated are one length; a response with both headers is refused (a 502),
        // as are responses another parser could frame differently.
        for response in ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                         "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n",
                         "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n",
                         "HTTP/1.1 2x0 OK\r\n\r\n"] {
            #expect(throws: ProxyError.self, "\(response)") { _ = try parse(response, kind: .response) }
        }
        // A coding after chunked ends a response by the close (RFC 9112 §6.3).
        #expect(try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", kind: .response).parser.framing == .untilClose)
        // Header lines beyond max_header_count: the head is too large (431 / 502), named by its limit.
        let many = "GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "A: b\r\n", count: 99) + "\r\n"
        #expect(try parse(many).items == [.head("GET / 1.1"), .end])
        #expect { _ = try parse("GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "A: b\r\n", count: 100) + "\r\n") } throws: {
            ($0 as? ProxyError)?.code == .headTooLarge && ($0 as? ProxyError)?.limit == "proxy.max_header_count"
        }
        #expect { _ = try parse("HTTP/1.1 200 OK\r\n" + String(repeating: "A: b\r\n", count: 101) + "\r\n", kind: .response) } throws: {
            ($0 as? ProxyError)?.limit == "proxy.max_header_count"
        }
        let trailers = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + String(repeating: "T: 1\r\n", count: 101) + "\r\n"
        #expect { _ = try parse(trailers, maxHeadBytes: 8192) } throws: { ($0 as? ProxyError)?.limit == "proxy.max_header_count" }
        // Chunk extensions: at most 16 KiB per message, however they are spread.
        let extensions = (0..<40).map { _ in "1;e=\(String(repeating: "x", count: 500))\r\na\r\n" }.joined()
        #expect { _ = try parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + extensions + "0\r\n\r\n") } throws: {
            ($0 as? ProxyError)?.message.contains("chunk extensions") == true
        }
        let fewExtensions = (0..<20).map { _ in "1;e=\(String(repeating: "x", count: 500))\r\na\r\n" }.joined()
        #expect(try parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + fewExtensions + "0\r\n\r\n").items.last == .end)
        // CONNECT's authority form parses (the handler answers 405); HTTP/1.0 may omit Host.
        #expect(try parse("CONNECT b.plane.test:443 HTTP/1.1\r\nHost: b.plane.test:443\r\n\r\n").items == [.head("CONNECT b.plane.test:443 1.1"), .end])
        #expect(try parse("GET / HTTP/1.0\r\n\r\n").items == [.head("GET / 1.0"), .end])
        #expect(try parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").items == [.head("GET / 1.1"), .end])
        // An absolute target is routed and forwarded in origin form.
        for (target, origin) in [("http://b.plane.test/a/b?c", "/a/b?c"), ("HTTPS://b.plane.test", "/"), ("http://b.plane.test?q=1", "/?q=1"), ("/x", "/x"), ("*", "*")] {
            var parser = HTTP1Parser(kind: .request, maxHeadBytes: 4096)
            parser.append(ByteBuffer(string: "\(target == "*" ? "OPTIONS" : "GET") \(target) HTTP/1.1\r\nHost: b.plane.test\r\n\r\n"))
            guard case .head(let head) = try parser.next() else { Issue.record("no head for \(target)"); continue }
            #expect(head.originTarget == origin, "\(target)")
        }
    }

    @Test func headsAreRewrittenForTheBackendAndTheClient() throws {
        func head(_ text: String, kind: HTTP1Parser.Kind) throws -> HTTP1Head {
            var parser = HTTP1Parser(kind: kind, maxHeadBytes: 4096)
            parser.append(ByteBuffer(string: text))
            guard case .head(let head) = try parser.next() else { throw ProxyError(.malformedMessage, "no head") }
            return head
        }
        let request = try head("POST /_plane_backend=foobar/x HTTP/1.1\r\nHost: foobar.plane.test:4040\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\n"
                               + "Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\nExpect: 100-continue\r\n"
                               + "Transfer-Encoding: chunked\r\nCookie: a=b  \r\n\r\n", kind: .request)
        var out = ByteBuffer()
        ForwardedHeaders.writeUpstreamRequest(request, target: "/x", clientAddress: "127.0.0.9", scheme: "https", upgrade: false, into: &out)
        #expect(String(buffer: out) == "POST /x HTTP/1.1\r\nHost: foobar.plane.test:4040\r\nTransfer-Encoding: chunked\r\nCookie: a=b\r\n"
                + "X-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: foobar.plane.test:4040\r\n\r\n")
        let upgrade = try head("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", kind: .request)
        out.clear()
        ForwardedHeaders.writeUpstreamRequest(upgrade, target: "/ws", clientAddress: nil, scheme: "http", upgrade: true, into: &out)
        #expect(String(buffer: out) == "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n")

        let response = try head("HTTP/1.0 200 Fine Thanks\r\nConnection: close\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", kind: .response)
        out.clear()
        ForwardedHeaders.writeDownstreamResponse(response, connection: .none, into: &out)
        #expect(String(buffer: out) == "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n")
        let chunked = try head("HTTP/1.1 404\r\nTransfer-Encoding: chunked\r\n\r\n", kind: .response)
        out.clear()
        ForwardedHeaders.writeDownstreamResponse(chunked, connection: .close, keepTransferEncoding: false, into: &out)
        #expect(String(buffer: out) == "HTTP/1.1 404\r\nConnection: close\r\n\r\n")
    }

    /// Heads are written into memory reserved once (`requestCapacity`/`responseCapacity`):
    /// the worst case for that bound is many short lines and X-Forwarded-For and Host values
    /// that are written twice.
    @Test func rewrittenHeadsFitTheCapacityReservedForThem() throws {
        var text = "GET /a HTTP/1.1\r\nHost: h\r\n"
        for index in 0..<200 { text += index % 2 == 0 ? "a:\r\n" : "X-Forwarded-For: \(index)\r\n" }
        text += "\r\n"
        var parser = HTTP1Parser(kind: .request, maxHeadBytes: 8192, maxHeaderCount: 1000)
        parser.append(ByteBuffer(string: text))
        guard case .head(let request) = try parser.next() else { Issue.record("no head"); return }
        let capacity = ForwardedHeaders.requestCapacity(request, target: "/a", clientAddress: "127.0.0.1", scheme: "https")
        var out = ByteBufferAllocator().buffer(capacity: capacity)
        ForwardedHeaders.writeUpstreamRequest(request, target: "/a", clientAddress: "127.0.0.1", scheme: "https", upgrade: false, into: &out)
        let written = String(buffer: out)
        #expect(out.readableBytes <= capacity)
        #expect(written.hasPrefix("GET /a HTTP/1.1\r\nHost: h\r\na:\r\na:\r\n"))
        let forwarded = (0..<200).filter { $0 % 2 == 1 }.map(String.init).joined(separator: ", ")
        #expect(written.hasSuffix("X-Forwarded-For: \(forwarded), 127.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n\r\n"))

        var responseText = "HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n"
        for _ in 0..<300 { responseText += "b:\r\n" }
        responseText += "\r\n"
        var responses = HTTP1Parser(kind: .response, maxHeadBytes: 8192, maxHeaderCount: 1000)
        responses.append(ByteBuffer(string: responseText))
        guard case .head(let response) = try responses.next() else { Issue.record("no head"); return }
        var head = ByteBufferAllocator().buffer(capacity: ForwardedHeaders.responseCapacity(response))
        ForwardedHeaders.writeDownstreamResponse(response, connection: .upgrade, into: &head)
        #expect(head.readableBytes <= ForwardedHeaders.responseCapacity(response))
        #expect(String(buffer: head).hasSuffix("b:\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"))
    }

    /// The parser reuses its field list for the next head; a head still held keeps its own.
    @Test func aHeadKeptWhileTheNextIsParsedKeepsItsFields() throws {
        var parser = HTTP1Parser(kind: .request, maxHeadBytes: 4096)
        parser.append(ByteBuffer(string: "GET /1 HTTP/1.1\r\nHost: one\r\nCookie: c=1\r\n\r\nGET /2 HTTP/1.1\r\nHost: two\r\n\r\n"))
        guard case .head(let first) = try parser.next(), case .end = try parser.next(),
              case .head(let second) = try parser.next() else { Issue.record("no heads"); return }
        #expect(first.first(.host) == "one" && first.first(.cookie) == "c=1" && first.fieldCount == 2)
        #expect(second.first(.host) == "two" && second.fieldCount == 1)
    }

    /// Mutated and randomly split messages: the parser hands out events or throws, it never
    /// traps (a trap would end the drone with every connection on it), and what it hands
    /// out never exceeds what went in.
    @Test(arguments: [HTTP1Parser.Kind.request, .response])
    func randomInputNeverTraps(kind: HTTP1Parser.Kind) {
        let seeds = kind == .request
            ? ["POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
               "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n"]
            : ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 100 Continue\r\n\r\n",
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest"]
        var random = SplitMix64(seed: kind == .request ? 1 : 2)
        let alphabet: [UInt8] = Array("\r\n:; \t0aF-/".utf8) + [0, 0x7F, 0xFF]
        for round in 0..<3000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            for _ in 0..<Int(random.next() % 4) {
                let index = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes[index] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                case 1: bytes.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: index)
                default: bytes.remove(at: index)
                }
            }
            var parser = HTTP1Parser(kind: kind, maxHeadBytes: 64 + Int(random.next() % 200))
            parser.decodeChunks = random.next() % 2 == 0
            parser.answersHEAD = random.next() % 5 == 0
            var offset = 0, handedOut = 0
            feeding: while offset < bytes.count {
                let end = min(bytes.count, offset + 1 + Int(random.next() % 40))
                parser.append(ByteBuffer(bytes: bytes[offset..<end]))
                offset = end
                do {
                    while let event = try parser.next() {
                        if case .head(let head) = event { handedOut += head.bytes.readableBytes }
                        if case .body(let body) = event { handedOut += body.readableBytes }
                        if parser.hasSwitchedProtocols { break feeding }
                    }
                } catch {
                    break feeding
                }
            }
            _ = parser.inputEnded()
            #expect(handedOut <= offset, "round \(round): handed out \(handedOut) of \(offset) bytes")
        }
    }
}
